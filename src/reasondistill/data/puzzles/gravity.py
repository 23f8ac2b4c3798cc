"""Gravity: ``d = 0.5 * g * t^2`` with a secret ``g``; the examples give (t, d).

The solver reads ``g = 2d/t^2`` off the example with the largest t, applies it to the
query and checks it on the example with the smallest t (the ``stepwise`` style writes each
square, product and the division digit by digit, :mod:`.stepwise`); :mod:`.scaling` rejects
draws whose rounded distances leave more than one answer possible.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from decimal import Decimal

from reasondistill.data.puzzles.common import (
    Draft,
    cents,
    check_line,
    distinct_draws,
    random_decimal,
    render_prompt,
)
from reasondistill.data.puzzles.scaling import constant_steps, parse_pairs, pinned_constant
from reasondistill.data.puzzles.stepwise import decimal_mul_steps, round_steps

NAME = "gravity"
LEVELS = (1, 2, 3)
STYLES = ("compact", "stepwise")
VARIANTS = ("",)
G_STEP = Decimal("0.01")
STORY = "the gravitational constant has been secretly changed. Objects fall d = 0.5*g*t^2."
ASK = "determine the falling distance for this time"
EXAMPLE_LINE = re.compile(r"For t = (\d+\.\d+)s, distance = (\d+\.\d+) m")
QUERY = re.compile(r"t = (\d+\.\d+)s")


@dataclass(frozen=True)
class Level:
    examples: int
    t_range: tuple[str, str, str]  # low, high, step
    g_range: tuple[str, str]


LEVEL_SPECS = {
    1: Level(3, ("1.0", "5.0", "0.1"), ("4.00", "20.00")),
    2: Level(4, ("0.50", "6.00", "0.01"), ("4.00", "20.00")),
    3: Level(5, ("0.50", "10.00", "0.01"), ("1.00", "30.00")),
}


def half_square(t: Decimal) -> Decimal:
    return t * t / 2


def distance(g: Decimal, t: Decimal) -> Decimal:
    return cents(g * half_square(t))


def draw(rng: random.Random, level: int, variant: str = "") -> Draft:
    spec = LEVEL_SPECS[level]
    g = random_decimal(rng, *spec.g_range, str(G_STEP))
    times = distinct_draws(rng, spec.t_range, spec.examples + 1)
    lines = [f"For t = {t}s, distance = {distance(g, t)} m" for t in times[:-1]]
    prompt = render_prompt(rng, STORY, lines, ASK, f"t = {times[-1]}s")
    return Draft(prompt, str(distance(g, times[-1])), f"g = {g}")


def parse(prompt: str) -> tuple[list[tuple[Decimal, Decimal]], Decimal]:
    return parse_pairs(prompt, EXAMPLE_LINE, 2, QUERY, "gravity")


def solve_from_prompt(prompt: str, style: str = "compact") -> tuple[str, str]:
    pairs, t = parse(prompt)
    g, (t0, d0) = pinned_constant(pairs, t, half_square, G_STEP)
    t1 = min(pairs)[0]  # checked on another example than the one g is read from
    answer = str(distance(g, t))
    if style == "stepwise":
        trace = stepwise_lines(g, t0, d0, t)
    else:
        trace = [
            "g = 2*d/t^2",
            f"t = {t0}, t^2 = {t0 * t0}",
            f"g = 2*{d0}/{t0 * t0} = {g}",
            f"t = {t}, t^2 = {t * t}",
            f"d = 0.5*{g}*{t * t} = {answer}",
        ]
    trace.append(check_line(f"t = {t1} gives 0.5*{g}*{t1 * t1} = {distance(g, t1)} as given",
                            answer))
    return "\n".join(trace), answer


def stepwise_lines(g: Decimal, t0: Decimal, d0: Decimal, t: Decimal) -> list[str]:
    """``g = 2d/t^2`` off the largest example (square, doubling, long division to one
    decimal past g's grid, rounding), then ``d = 0.5*g*t^2`` for the query, all digit by
    digit."""
    square_lines, square = decimal_mul_steps(t0, t0)
    double_lines, double = decimal_mul_steps(d0, Decimal(2))
    query_square_lines, query_square = decimal_mul_steps(t, t)
    product_lines, product = decimal_mul_steps(g, query_square)
    half_lines, half = decimal_mul_steps(product, Decimal("0.5"))
    rounded_lines, result = round_steps(half, 2)
    return [f"g = 2*d/t^2, read off the largest t: t = {t0}, d = {d0}",
            f"t^2 = {t0}*{t0}", *square_lines, f"2*d = {d0}*2", *double_lines,
            f"g = {double}/{square}", *constant_steps(double, square, g, G_STEP), f"g = {g}",
            f"Query t = {t}: t^2 = {t}*{t}", *query_square_lines,
            f"g*t^2 = {g}*{query_square}", *product_lines,
            f"d = 0.5*{product}", *half_lines, *rounded_lines, f"Result {result}"]
