"""Numeral: integers written in the Wonderland numeral system, which is Roman numerals.

The solver checks that every example is the Roman numeral of its number (so the trace
only claims what the examples show), then writes the query place by place.
"""

from __future__ import annotations

import random
import re

from reasondistill.data.puzzles.common import (
    Draft,
    PromptError,
    check_line,
    render_prompt,
    split_prompt,
)

NAME = "numeral"
LEVELS = (1, 2, 3)
STYLES = ("compact", "stepwise")
VARIANTS = ("",)
STORY = "numbers are secretly converted into a different numeral system."
ASK = "write this number in the Wonderland numeral system"
EXAMPLE_LINE = re.compile(r"(\d+) -> ([IVXLCDM]+)")

PLACES = (
    (1000, ("", "M", "MM", "MMM")),
    (100, ("", "C", "CC", "CCC", "CD", "D", "DC", "DCC", "DCCC", "CM")),
    (10, ("", "X", "XX", "XXX", "XL", "L", "LX", "LXX", "LXXX", "XC")),
    (1, ("", "I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX")),
)
# level -> (largest number, number of examples)
LEVEL_SPECS = {1: (39, 3), 2: (399, 4), 3: (3999, 5)}


def place_parts(number: int) -> list[tuple[int, str]]:
    """``1994`` -> ``[(1000, "M"), (900, "CM"), (90, "XC"), (4, "IV")]`` (zero places skipped)."""
    parts = []
    for unit, symbols in PLACES:
        digit = number // unit % 10
        if digit:
            parts.append((digit * unit, symbols[digit]))
    return parts


def roman(number: int) -> str:
    return "".join(symbols for _, symbols in place_parts(number))


def draw(rng: random.Random, level: int, variant: str = "") -> Draft:
    largest, count = LEVEL_SPECS[level]
    numbers = rng.sample(range(1, largest + 1), count + 1)
    lines = [f"{n} -> {roman(n)}" for n in numbers[:-1]]
    prompt = render_prompt(rng, STORY, lines, ASK, str(numbers[-1]))
    return Draft(prompt, roman(numbers[-1]), "Roman numerals")


def parse(prompt: str) -> tuple[list[tuple[int, str]], int]:
    parts = split_prompt(prompt)
    pairs = []
    for line in parts.example_lines:
        match = EXAMPLE_LINE.fullmatch(line)
        if match is None:
            raise PromptError(f"not a numeral example: {line!r}")
        pairs.append((int(match[1]), match[2]))
    if not parts.query.isdigit() or not 0 < int(parts.query) < 4000:
        raise PromptError(f"not a numeral query: {parts.query!r}")
    return pairs, int(parts.query)


# place -> (its one, five and ten symbols)
PLACE_SYMBOLS = {1000: ("M", "", ""), 100: ("C", "D", "M"), 10: ("X", "L", "C"),
                 1: ("I", "V", "X")}
PLACE_NAMES = {1000: "thousands", 100: "hundreds", 10: "tens", 1: "ones"}


def digit_steps(digit: int, unit: int) -> str:
    """One place of the ``stepwise`` style: the digit from the place's one/five/ten symbols."""
    one, five, ten = PLACE_SYMBOLS[unit]
    name = f"{PLACE_NAMES[unit]} digit {digit}"
    if digit == 0:
        return f"{name}: nothing"
    if digit <= 3:
        return f"{name}: {digit} times {one} = {one * digit}"
    if digit == 4:
        return f"{name}: 5 - 1, {one} before {five} = {one}{five}"
    if digit == 5:
        return f"{name}: {five}"
    if digit == 9:
        return f"{name}: 10 - 1, {one} before {ten} = {one}{ten}"
    return f"{name}: 5 + {digit - 5}, {five} then {digit - 5} times {one} = " \
           f"{five + one * (digit - 5)}"


def solve_from_prompt(prompt: str, style: str = "compact") -> tuple[str, str]:
    pairs, number = parse(prompt)
    for n, written in pairs:
        if roman(n) != written:
            raise PromptError(f"example {n} -> {written} is not a Roman numeral")
    parts = place_parts(number)
    answer = roman(number)
    if style == "stepwise":
        units = [unit for unit, _ in PLACES if unit <= number]
        trace = [f"{number}: " + ", ".join(f"{PLACE_NAMES[u]} digit {number // u % 10}"
                                           for u in units)]
        trace += [digit_steps(number // u % 10, u) for u in units]
    else:
        trace = [f"{number} = " + " + ".join(str(value) for value, _ in parts)]
        trace += [f"{value} = {symbols}" for value, symbols in parts]
    summed = " + ".join(f"{symbols} ({value})" for value, symbols in parts)
    trace.append(check_line(f"{summed} = {number}", answer))
    return "\n".join(trace), answer
