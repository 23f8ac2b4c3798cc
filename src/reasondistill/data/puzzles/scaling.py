"""Rules of the form ``out = c * f(x)`` with a secret constant ``c`` on a decimal grid.

Gravity (``d = (g/2) * t^2``) and unit conversion (``out = k * in``) are both this rule;
every printed output is rounded half-up to 2 decimals. Rounding means the examples only
bound ``c`` to an interval, so the solver lists every grid value the examples allow and
refuses (:class:`Ambiguous`) when those values disagree on the query.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from reasondistill.data.puzzles.common import Ambiguous, PromptError, cents, on_grid, split_prompt

HALF_CENT = Decimal("0.005")
Feature = Callable[[Decimal], Decimal]


def consistent_constants(pairs: list[tuple[Decimal, Decimal]], feature: Feature,
                         step: Decimal) -> list[Decimal]:
    """Every multiple ``c`` of ``step`` with ``cents(c * feature(x)) == y`` for all pairs."""
    low = max((y - HALF_CENT) / feature(x) for x, y in pairs)
    high = min((y + HALF_CENT) / feature(x) for x, y in pairs)
    first = (low / step).to_integral_value(ROUND_FLOOR)
    last = (high / step).to_integral_value(ROUND_CEILING)
    grid = [step * i for i in range(int(first), int(last) + 1)]
    return [c for c in grid if c > 0 and all(cents(c * feature(x)) == y for x, y in pairs)]


def pinned_constant(pairs: list[tuple[Decimal, Decimal]], query: Decimal, feature: Feature,
                    step: Decimal) -> tuple[Decimal, tuple[Decimal, Decimal]]:
    """The constant the trace uses and the example it is read from.

    The trace reads ``c`` off the example with the largest feature (the least rounding
    noise); that must be a value every example allows, and every allowed value must give
    the same answer for the query.
    """
    allowed = consistent_constants(pairs, feature, step)
    if len({cents(c * feature(query)) for c in allowed}) != 1:
        raise Ambiguous(f"{len(allowed)} constants fit the examples and disagree on the query")
    anchor = max(pairs, key=lambda pair: feature(pair[0]))
    constant = on_grid(anchor[1] / feature(anchor[0]), step)
    if constant not in allowed:
        raise Ambiguous("the constant read off the largest example does not fit the others")
    return constant, anchor


def constant_steps(numerator: Decimal, denominator: Decimal, constant: Decimal,
                   step: Decimal) -> list[str]:
    """The ``stepwise`` lines that read ``constant`` as ``numerator / denominator``: long
    division to one decimal past the grid, then rounding to it (:mod:`.stepwise`). They must
    land on the constant :func:`pinned_constant` chose, which reads the same quotient."""
    from reasondistill.data.puzzles.stepwise import decimals, div_steps, round_steps

    places = decimals(step)
    divided, quotient = div_steps(numerator, denominator, places + 1)
    rounding, read = round_steps(quotient, places)
    if read != constant:
        raise AssertionError(f"long division gives {read}, the solver {constant}")
    return [*divided, *rounding]


def parse_pairs(prompt: str, example_line: re.Pattern, output_group: int, query: re.Pattern,
                family: str) -> tuple[list[tuple[Decimal, Decimal]], Decimal]:
    """``([(x, y), ...], query x)`` from a prompt whose example lines match ``example_line``
    (x in group 1, y in ``output_group``) and whose query matches ``query`` (x in group 1)."""
    parts = split_prompt(prompt)
    pairs = []
    for line in parts.example_lines:
        match = example_line.fullmatch(line)
        if match is None:
            raise PromptError(f"not a {family} example: {line!r}")
        pairs.append((Decimal(match[1]), Decimal(match[output_group])))
    asked = query.fullmatch(parts.query)
    if asked is None:
        raise PromptError(f"not a {family} query: {parts.query!r}")
    return pairs, Decimal(asked[1])
