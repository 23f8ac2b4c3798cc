"""What every puzzle family shares: the prompt layout, number formatting, the check line.

Each family writes its prompt through :func:`render_prompt` and its solver reads it back
through :func:`split_prompt`, so the solver sees exactly the text the student sees and
nothing of the hidden rule. Every trace ends with :func:`check_line`, whose last words are
the answer, so a reader (or a test) can take the answer from the trace alone.

A family module provides::

    NAME: str                  family name, the ``type`` prefix
    LEVELS: tuple[int, ...]    difficulty levels it can draw
    VARIANTS: tuple[str, ...]  ("",) or ("deduce", "guess"): the ``type`` suffixes
    STYLES: tuple[str, ...]    the trace styles it writes: "compact" (every family) and
                               "stepwise" (every line a step a small model can compute)
    draw(rng, level, variant) -> Draft          a prompt and the hidden rule's answer
    solve_from_prompt(prompt, style="compact") -> (trace, answer)
                               raises Ambiguous when the examples do not decide the answer;
                               the style changes the trace, never the answer
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

OPENINGS = (
    "In Alice's Wonderland",
    "Deep in Wonderland",
    "Down the rabbit hole in Wonderland",
    "In the Queen's corner of Wonderland",
)
EXAMPLES_HEADER = "Here are some examples:"
QUERY_PREFIX = "Now, "
ANSWER_MARKER = ", so the answer is "


class Ambiguous(Exception):
    """The examples do not decide the answer (the generator draws again)."""


class PromptError(ValueError):
    """A prompt that is not in the layout :func:`render_prompt` writes."""


@dataclass(frozen=True)
class Draft:
    """A drawn problem before solving: its prompt and what the hidden rule says."""

    prompt: str
    answer: str
    rule: str | dict  # the hidden rule (JSON-ready), kept in ``meta`` for inspection only


@dataclass(frozen=True)
class PromptParts:
    story: str
    example_lines: list[str]
    query: str


def render_prompt(rng: random.Random, story: str, example_lines: list[str], ask: str,
                  query: str) -> str:
    """``<opening>, <story>`` / examples header / one example per line / ``Now, <ask>: <query>``."""
    opening = rng.choice(OPENINGS)
    return "\n".join([f"{opening}, {story}", EXAMPLES_HEADER, *example_lines,
                      f"{QUERY_PREFIX}{ask}: {query}"])


def split_prompt(prompt: str) -> PromptParts:
    """The story line, the example lines and the query text of a rendered prompt."""
    lines = prompt.strip().splitlines()
    try:
        start = lines.index(EXAMPLES_HEADER) + 1
    except ValueError:
        raise PromptError(f"no {EXAMPLES_HEADER!r} line in the prompt") from None
    query_line = lines[-1]
    if not query_line.startswith(QUERY_PREFIX) or ": " not in query_line:
        raise PromptError(f"the last line is not a query line: {query_line!r}")
    examples = lines[start:-1]
    if not examples:
        raise PromptError("the prompt has no example lines")
    return PromptParts(" ".join(lines[: start - 1]), examples, query_line.split(": ", 1)[1])


def check_line(detail: str, answer: str) -> str:
    """The trace's last line: a verification, then the answer as its last words."""
    return f"Check: {detail}{ANSWER_MARKER}{answer}"


def answer_in_trace(trace: str) -> str:
    """The answer a trace ends at (the words after the marker on its last line)."""
    last = trace.rstrip().splitlines()[-1]
    if not last.startswith("Check: ") or ANSWER_MARKER not in last:
        raise PromptError(f"the trace does not end with a check line: {last!r}")
    return last.rsplit(ANSWER_MARKER, 1)[1]


def cents(value) -> Decimal:
    """``value`` rounded half-up to 2 decimals, exactly (no binary float noise)."""
    return Decimal(value).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def on_grid(value: Decimal, step: Decimal) -> Decimal:
    """``value`` rounded half-up to a multiple of ``step`` (a power of ten)."""
    return value.quantize(step, rounding=ROUND_HALF_UP)


def random_decimal(rng: random.Random, low: str, high: str, step: str) -> Decimal:
    """A uniform draw from the ``step`` grid between ``low`` and ``high`` inclusive."""
    lo, hi, st = Decimal(low), Decimal(high), Decimal(step)
    return lo + st * rng.randint(0, int((hi - lo) / st))


def distinct_draws(rng: random.Random, value_range: tuple[str, str, str], k: int) -> list[Decimal]:
    """``k`` different values from the grid ``(low, high, step)``."""
    low, high, step = (Decimal(v) for v in value_range)
    picks = rng.sample(range(int((high - low) / step) + 1), k)
    return [low + step * i for i in picks]
