"""AQuA-RAT: algebra word problems with five options (A–E) and a written rationale.

The files (``dev.json``, ``test.json``) hold one JSON object per line:
``{"question", "options": ["A)32400", ...], "rationale", "correct": "A"}``. The prompt lists
the options under the question, the answer is the option letter, and the trace is the
rationale without its closing "Answer: X"-like line (the format contract re-boxes the label,
so a second, unboxed verdict would only teach the student to answer twice).
"""

from __future__ import annotations

import re
from functools import partial

from reasondistill.config import DataConfig
from reasondistill.data.example import Example
from reasondistill.data.sources.base import (
    Row,
    RowProblem,
    Source,
    check_columns,
    extra_columns,
    required_text,
)
from reasondistill.data.sources.files import read_jsonl, split_file
from reasondistill.errors import ConfigError

KEYS = ("question", "options", "rationale", "correct")
OPTION = re.compile(r"^\s*\(?([A-E])\)\s*(.*)$", re.DOTALL)
NOT_AN_OPTION = "answer is not one of the options"

_WORDS = r"(?:the|so|hence|thus|therefore|correct|right|final|answer|ans|option|choice|is|will|be)"
_LETTER = r"\(?(?-i:[A-E])"
# A whole last line that only states the verdict: "Answer: C", "ANSWER:E", "Option B",
# "The answer is (D).", "D is the correct choice", "Answer: D) 109 rolls".
ANSWER_LINE = re.compile(
    rf"^\W*(?:{_WORDS}\b\W*)*{_LETTER}(?:\)[^\n]*|\b\W*(?:{_WORDS}\b\W*)*)$", re.IGNORECASE)
# A verdict closing a line of working: "... x = 250 m. Answer D", "... =5% Answer :A".
ANSWER_TAIL = re.compile(
    rf"[\s.,;(]*\b(?:(?:the|so|hence|thus|therefore|correct|right|final)\s+)*"
    rf"(?:answer|ans|option|choice)\b\W*(?:(?:is|option|=)\b\W*)*{_LETTER}\)?\W*$",
    re.IGNORECASE)


def strip_answer_line(rationale: str) -> str:
    """The rationale without its final verdict ("Answer: C"), right-stripped."""
    text = rationale.rstrip()
    head, _, last = text.rpartition("\n")
    if ANSWER_LINE.match(last.strip()):
        return head.rstrip()
    tail = ANSWER_TAIL.search(last)
    if tail and last[: tail.start()].strip():
        return (head + "\n" if head else "") + last[: tail.start()].rstrip()
    return text


def prompt_with_options(question: str, options: list[str]) -> str:
    return question.rstrip() + "\n\nOptions:\n" + "\n".join(_option_text(o) for o in options)


def _option_text(option: str) -> str:
    match = OPTION.match(option)
    return f"{match.group(1)}) {match.group(2).strip()}" if match else option.strip()


def convert_row(row: Row, *, label: str) -> Example:
    values = row.values
    question = required_text(values.get("question"), "question", "prompt")
    options = values.get("options")
    if not isinstance(options, list) or not options or \
            not all(isinstance(o, str) for o in options):
        raise RowProblem("options are not a list of strings",
                         f"options must be a list of strings, got {options!r:.60}",
                         field="options")
    answer = required_text(values.get("correct"), "correct", "answer").strip()
    letters = [m.group(1) for m in map(OPTION.match, options) if m]
    if letters and answer not in letters:
        raise RowProblem(NOT_AN_OPTION, f"answer {answer!r} is not one of the option letters "
                         f"{letters}", field="correct")
    rationale = values.get("rationale")
    return Example(
        id=f"aqua-{label}-{row.index}",
        prompt=prompt_with_options(question, options),
        answer=answer,
        trace=strip_answer_line(rationale) if isinstance(rationale, str) else "",
        type="aqua",
        meta={"options": options, **extra_columns(values, KEYS)},
    )


def open_source(cfg: DataConfig) -> Source:
    if cfg.path is None:
        raise ConfigError("data.source 'aqua' needs data.path: an AQuA-RAT .json file, or a "
                          "folder holding dev.json / test.json (use data.split to pick one)")
    file = split_file(cfg.path, cfg.split, "aqua", suffixes=(".json", ".jsonl"))
    table = read_jsonl(file)
    check_columns(table.columns, KEYS, file=str(file), what="an AQuA-RAT file")
    return Source(str(file), table.rows, partial(convert_row, label=file.stem))
