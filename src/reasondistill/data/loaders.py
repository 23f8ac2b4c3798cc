"""``load_examples(cfg)``: any configured source → validated Examples, with every drop counted.

Each source (``data/sources``) yields numbered raw rows and converts one row at a time; this
module applies the rules that are the same for all of them: a row that cannot be used is an
error naming its file, row and field, or, with ``data.on_bad_row: drop``, a drop counted
under its reason; ids must be unique; ``data.limit`` keeps the first N usable rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from reasondistill.config import DataConfig
from reasondistill.data.example import Example
from reasondistill.data.sources import aqua, gsm8k, hf
from reasondistill.data.sources.base import DUPLICATE_ID, Row, RowProblem, Source
from reasondistill.data.sources.columns import ColumnMapper
from reasondistill.data.sources.files import (
    Table,
    existing_file,
    read_csv,
    read_jsonl,
    read_parquet,
)
from reasondistill.errors import DataError


@dataclass
class LoadResult:
    examples: list[Example]
    rows_read: int  # rows looked at (blank lines aside), usable or not
    drops: Counter = field(default_factory=Counter)  # reason → rows dropped
    source: str = ""  # where the rows came from: a file path, a dataset id and split, ...
    warnings: list[str] = field(default_factory=list)  # worth showing, not worth failing on


def load_examples(cfg: DataConfig) -> LoadResult:
    """Read ``cfg``'s source into Examples (see the module docstring for the rules)."""
    return collect(SOURCES[cfg.source](cfg), on_bad_row=cfg.on_bad_row, limit=cfg.limit)


def collect(source: Source, *, on_bad_row: str = "error", limit: int | None = None) \
        -> LoadResult:
    """Run a source's rows through its conversion, the bad-row policy, the id check, the limit."""
    result = LoadResult([], 0, Counter(), source.description, list(source.warnings))
    first_row_of: dict[str, int] = {}
    for row in source.rows:
        if limit is not None and len(result.examples) >= limit:
            break
        result.rows_read += 1
        try:
            example = _convert(source, row)
            if example.id in first_row_of:
                raise RowProblem(DUPLICATE_ID, f"id {example.id!r} is already used by row "
                                 f"{first_row_of[example.id]}", field="id")
        except RowProblem as problem:
            if on_bad_row == "error":
                raise DataError(f"{problem.detail} (set data.on_bad_row: drop to skip such "
                                "rows and count them)", file=source.description,
                                row=row.number, field=problem.field) from None
            result.drops[problem.reason] += 1
            continue
        first_row_of[example.id] = row.number
        result.examples.append(example)
    if not result.examples:
        raise DataError(_nothing_usable(result), file=source.description)
    return result


def _convert(source: Source, row: Row) -> Example:
    if row.problem is not None:
        raise row.problem
    return source.convert(row)


def _nothing_usable(result: LoadResult) -> str:
    if not result.rows_read:
        return "no data rows"
    reasons = ", ".join(f"{reason}: {n}" for reason, n in result.drops.most_common())
    return f"no usable rows: all {result.rows_read} rows were dropped ({reasons})"


# --- sources --------------------------------------------------------------------------------

def _table(read: Callable[[Path], Table]) -> Callable[[DataConfig], Source]:
    """jsonl / csv / parquet: the file at ``data.path``, mapped through ``data.columns``."""

    def open_source(cfg: DataConfig) -> Source:
        file = existing_file(cfg.path, cfg.source)
        table = read(file)
        mapper = ColumnMapper(cfg.columns, table.columns, file=str(file), id_prefix=file.stem)
        return Source(str(file), table.rows, mapper, mapper.warnings)

    return open_source


def _puzzles(cfg: DataConfig) -> Source:
    """The built-in puzzle suite: generated, so every row already is an Example."""
    from reasondistill.data.puzzles import generate_puzzles

    p = cfg.puzzles
    examples = generate_puzzles(n=p.n, seed=p.seed, families=p.families, level=p.level,
                                style=p.trace_style)
    rows = (Row(index, example) for index, example in enumerate(examples))
    return Source(f"puzzles (n={p.n}, seed={p.seed})", rows, _as_example)


def _as_example(row: Row) -> Example:
    return row.values if isinstance(row.values, Example) else Example.from_dict(row.values)


SOURCES: dict[str, Callable[[DataConfig], Source]] = {
    "jsonl": _table(read_jsonl),
    "csv": _table(read_csv),
    "parquet": _table(read_parquet),
    "hf": hf.open_source,
    "gsm8k": gsm8k.open_source,
    "aqua": aqua.open_source,
    "puzzles": _puzzles,
}
