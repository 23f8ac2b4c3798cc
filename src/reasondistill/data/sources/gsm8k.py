"""GSM8K: grade-school math word problems with worked solutions.

A solution reads ``"... 48/2 = <<48/2=24>>24 clips in May.\\n...\\n#### 72"``. The trace is
the solution without its ``<<a*b=c>>`` calculator notes and its ``#### N`` line; the answer
is N without thousands separators. The number of calculator notes is the difficulty, and
bucketed it is the type, so a Nudge phase can target the long problems.
"""

from __future__ import annotations

import re
from functools import partial

from reasondistill.config import DataConfig
from reasondistill.data.example import Example
from reasondistill.data.sources import hf
from reasondistill.data.sources.base import (
    Row,
    RowProblem,
    Source,
    check_columns,
    extra_columns,
    required_text,
)
from reasondistill.data.sources.files import read_jsonl, split_file
from reasondistill.errors import ConfigError, DataError

HUB_ID, HUB_CONFIG = "openai/gsm8k", "main"
KEYS = ("question", "answer")
CALCULATOR_NOTE = re.compile(r"<<[^<>]*>>")
FINAL_LINE = re.compile(r"^####[ \t]*(.*?)\s*$", re.MULTILINE)
NO_FINAL_LINE = "no '#### answer' line"


def parse_solution(solution: str) -> tuple[str, str, int]:
    """``(trace, answer, calculator steps)`` of a GSM8K solution.

    Raises ValueError when there is no non-empty ``#### N`` line."""
    finals = list(FINAL_LINE.finditer(solution))
    if not finals or not finals[-1].group(1):
        raise ValueError("the solution has no final '#### <answer>' line")
    final = finals[-1]
    working = solution[: final.start()]
    trace = CALCULATOR_NOTE.sub("", working).rstrip()
    return trace, final.group(1).replace(",", ""), len(CALCULATOR_NOTE.findall(working))


def step_type(steps: int) -> str:
    """The type bucket of a solution with ``steps`` calculator notes (0 notes still means at
    least one step of working, so it shares the lowest bucket)."""
    if steps <= 2:
        return "steps_1-2"
    return "steps_3-4" if steps <= 4 else "steps_5+"


def convert_row(row: Row, *, label: str) -> Example:
    values = row.values
    question = required_text(values.get("question"), "question", "prompt")
    solution = required_text(values.get("answer"), "answer", "answer")
    try:
        trace, answer, steps = parse_solution(solution)
    except ValueError as error:
        raise RowProblem(NO_FINAL_LINE, str(error), field="answer") from None
    return Example(
        id=f"gsm8k-{label}-{row.index}", prompt=question, answer=answer, trace=trace,
        type=step_type(steps), difficulty=str(steps),
        meta=extra_columns(values, KEYS),
    )


def open_source(cfg: DataConfig) -> Source:
    if cfg.path is None:
        return _hub_source(cfg.split)
    file = split_file(cfg.path, cfg.split, "gsm8k", suffixes=(".jsonl",))
    table = read_jsonl(file)
    check_columns(table.columns, KEYS, file=str(file), what="a GSM8K file")
    return Source(str(file), table.rows, partial(convert_row, label=file.stem))


def _hub_source(split: str) -> Source:
    try:
        dataset = hf.load_dataset(HUB_ID, split=split, name=HUB_CONFIG)
    except DataError as error:
        raise ConfigError(
            f"data.source 'gsm8k' without data.path downloads {HUB_ID}, which failed: {error}\n"
            "Set data.path to a GSM8K .jsonl file, or to a folder holding train.jsonl and "
            "test.jsonl (data.split picks one)."
        ) from None
    return Source(f"{HUB_ID} (split {split})", hf.dataset_rows(dataset),
                  partial(convert_row, label=split))
