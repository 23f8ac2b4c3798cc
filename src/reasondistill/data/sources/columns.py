"""``data.columns``: which column of a table feeds each Example field.

A column mapped to another name than its default must exist (the error suggests the closest
one). The defaults are forgiving, also when written out as they are in a run's resolved
``config.yaml`` (which therefore loads back to the same run): no ``type``/``difficulty``
column gives "default", no ``trace``
column gives empty traces plus a warning (the format stage would then drop every row, so the
report says why). Columns the mapping does not use travel along in ``Example.meta``.
"""

from __future__ import annotations

from collections.abc import Sequence

from reasondistill.config import ColumnMap
from reasondistill.data.example import Example
from reasondistill.data.sources.base import Row, cell_text, extra_columns, required_text
from reasondistill.errors import DataError, did_you_mean

FIELDS = ("id", "prompt", "trace", "answer", "type", "difficulty")
ALWAYS_REQUIRED = ("prompt", "answer")


class ColumnMapper:
    """Row → Example through a :class:`ColumnMap`; checks the columns once, up front."""

    def __init__(self, columns: ColumnMap, available: Sequence[str], *, file: str,
                 id_prefix: str) -> None:
        self.id_prefix = id_prefix
        self.warnings: list[str] = []
        self.column: dict[str, str] = {}  # Example field → source column
        listed = ", ".join(map(str, available)) or "(none)"
        for name in FIELDS:
            wanted = getattr(columns, name)
            if wanted is None:
                continue
            if wanted in available:
                self.column[name] = wanted
            elif name in ALWAYS_REQUIRED or wanted != ColumnMap.model_fields[name].default:
                raise DataError(
                    f"column {wanted!r} (data.columns.{name}) not found"
                    f"{did_you_mean(wanted, available)}; columns in the file: {listed}",
                    file=file, field=wanted)
            elif name == "trace":
                self.warnings.append(
                    f"{file}: no {wanted!r} column, so every trace is empty; name the trace "
                    f"column with data.columns.trace{did_you_mean(wanted, available)} "
                    f"(columns: {listed})")
        self.used = set(self.column.values())

    def __call__(self, row: Row) -> Example:
        values = row.values

        def raw(name: str):
            return values.get(self.column[name]) if name in self.column else None

        def optional(name: str, default: str) -> str:
            if name not in self.column:
                return default
            return cell_text(raw(name), self.column[name]).strip() or default

        def required(name: str) -> str:
            return required_text(raw(name), self.column[name], name)

        return Example(
            id=required("id").strip() if "id" in self.column
            else f"{self.id_prefix}-{row.index}",
            prompt=required("prompt"),
            answer=required("answer").strip(),
            trace=cell_text(raw("trace"), self.column["trace"]) if "trace" in self.column
            else "",  # verbatim: the format contract decides what whitespace to keep
            type=optional("type", "default"),
            difficulty=optional("difficulty", "default"),
            meta=extra_columns(values, self.used),
        )
