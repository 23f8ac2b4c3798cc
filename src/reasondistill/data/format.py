"""The format contract: how an :class:`Example` becomes the chat a student learns from.

    user      = prompt + grader suffix
    assistant = trace (its own \\boxed{} spans and stray think tags removed, right-stripped)
                + "\\n</think>\\n\\boxed{ANSWER}"

The opening ``<think>`` comes from the chat template's generation prompt, so the completion
the student learns is exactly what it must produce at evaluation time. The trace's own boxed
answer is dropped and the authoritative label re-boxed, so the student learns the procedure
while anchored to the right answer.

For every row ``tracedistill==0.2.0`` handles correctly the output is byte-identical to its
``build_records``; the differences are fixes: balanced boxes for answers with braces, no
second think block from tags inside a trace, and counted (never silent) drops.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from reasondistill.boxed import box, strip_boxed
from reasondistill.data.example import Example

DEFAULT_PROMPT_SUFFIX = (
    "\nPlease put your final answer inside `\\boxed{}`. For example: `\\boxed{your answer}`"
)
THINK_TAG = re.compile(r"</?think>")

DROP_SHORT_TRACE = "trace shorter than min_trace_chars"


class RowDropped(Exception):
    """This example cannot be turned into a record; ``reason`` is counted in reports."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class FormatSpec:
    prompt_suffix: str = DEFAULT_PROMPT_SUFFIX
    min_trace_chars: int = 5
    answer_only: bool = False  # baseline: no reasoning, just "</think>\n\boxed{ANSWER}"


def clean_trace(trace: str) -> str:
    """The trace as it goes into a record: no boxes, no think tags, no trailing space.

    Both are removed until none is left, because removing one can join the pieces of
    another (``<thi<think>nk>``, ``<\\boxed{x}/think>``).
    """
    text = trace
    while True:
        cleaned = THINK_TAG.sub("", strip_boxed(text))
        if cleaned == text:
            return cleaned.rstrip()
        text = cleaned


def user_message(prompt: str, spec: FormatSpec = FormatSpec()) -> dict[str, str]:
    """The user turn, shared by training and evaluation so both see the same prompt."""
    return {"role": "user", "content": prompt + spec.prompt_suffix}


def assistant_completion(example: Example, spec: FormatSpec = FormatSpec()) -> str:
    if spec.answer_only:
        return "</think>\n" + box(example.answer)
    trace = clean_trace(example.trace)
    if len(trace.strip()) < spec.min_trace_chars:
        raise RowDropped(DROP_SHORT_TRACE)
    return trace + "\n</think>\n" + box(example.answer)


def build_record(example: Example, spec: FormatSpec = FormatSpec()) -> dict:
    """``{"messages": [user, assistant]}`` for one example; raises :class:`RowDropped`."""
    return {
        "messages": [
            user_message(example.prompt, spec),
            {"role": "assistant", "content": assistant_completion(example, spec)},
        ]
    }


@dataclass
class FormattedSet:
    """Records and the examples they came from (parallel lists), plus counted drops."""

    records: list[dict] = field(default_factory=list)
    examples: list[Example] = field(default_factory=list)
    drops: Counter = field(default_factory=Counter)


def build_records(examples, spec: FormatSpec = FormatSpec()) -> FormattedSet:
    out = FormattedSet()
    for example in examples:
        try:
            record = build_record(example, spec)
        except RowDropped as drop:
            out.drops[drop.reason] += 1
            continue
        out.records.append(record)
        out.examples.append(example)
    return out
