"""Unit conversion: ``out = in * k`` with a secret factor ``k`` (3 decimals at most).

The solver reads ``k = out/in`` off the example with the largest input, applies it to the
query and checks it on the example with the smallest input (the ``stepwise`` style writes the
division and the product digit by digit, :mod:`.stepwise`); :mod:`.scaling` rejects draws
whose rounded outputs leave more than one answer possible.
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

NAME = "unit_conversion"
LEVELS = (1, 2, 3)
STYLES = ("compact", "stepwise")
VARIANTS = ("",)
K_STEP = Decimal("0.001")
UNITS = ("m", "kg", "s", "L", "km")
STORY = "a secret unit conversion is applied to measurements."
ASK = "convert the following measurement"
EXAMPLE_LINE = re.compile(r"(\d+\.\d+) (\w+) becomes (\d+\.\d+)")
QUERY = re.compile(r"(\d+\.\d+) (\w+)")


@dataclass(frozen=True)
class Level:
    examples: int
    in_range: tuple[str, str, str]  # low, high, step
    k_range: tuple[str, str, str]


LEVEL_SPECS = {
    1: Level(3, ("5.0", "60.0", "0.1"), ("0.50", "3.00", "0.01")),
    2: Level(4, ("1.00", "100.00", "0.01"), ("0.300", "3.000", "0.001")),
    3: Level(5, ("0.50", "200.00", "0.01"), ("0.100", "9.000", "0.001")),
}


def identity(x: Decimal) -> Decimal:
    return x


def draw(rng: random.Random, level: int, variant: str = "") -> Draft:
    spec = LEVEL_SPECS[level]
    k = random_decimal(rng, *spec.k_range)
    unit = rng.choice(UNITS)
    values = distinct_draws(rng, spec.in_range, spec.examples + 1)
    lines = [f"{x} {unit} becomes {cents(x * k)}" for x in values[:-1]]
    prompt = render_prompt(rng, STORY, lines, ASK, f"{values[-1]} {unit}")
    return Draft(prompt, str(cents(values[-1] * k)), f"k = {k}")


def parse(prompt: str) -> tuple[list[tuple[Decimal, Decimal]], Decimal]:
    return parse_pairs(prompt, EXAMPLE_LINE, 3, QUERY, "unit conversion")


def solve_from_prompt(prompt: str, style: str = "compact") -> tuple[str, str]:
    pairs, x = parse(prompt)
    k, (x0, y0) = pinned_constant(pairs, x, identity, K_STEP)
    x1 = min(pairs)[0]
    answer = str(cents(x * k))
    if style == "stepwise":
        trace = stepwise_lines(k, x0, y0, x)
    else:
        trace = [f"k = out/in = {y0}/{x0} = {k}", f"Query: {x}*{k} = {answer}"]
    trace.append(check_line(f"{x1}*{k} = {cents(x1 * k)} as given", answer))
    return "\n".join(trace), answer


def stepwise_lines(k: Decimal, x0: Decimal, y0: Decimal, x: Decimal) -> list[str]:
    """``k`` by long division to one decimal past its grid, rounded; the query's product
    digit by digit, rounded to cents."""
    product_lines, product = decimal_mul_steps(x, k)
    rounded_lines, result = round_steps(product, 2)
    return [f"k = out/in, read off the largest input: {y0}/{x0}",
            *constant_steps(y0, x0, k, K_STEP),
            f"k = {k}", f"Query: {x}*{k}", *product_lines, *rounded_lines, f"Result {result}"]
