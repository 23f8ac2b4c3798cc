"""What every source hands the loader: numbered raw rows and a row → Example conversion.

A conversion either returns an :class:`Example` or raises :class:`RowProblem`; the loader
then raises it as a :class:`~reasondistill.errors.DataError` or counts it as a drop, per
``data.on_bad_row``. Keeping that decision in one place is what makes "an error or a counted
drop, never a silent skip" hold for every source.

Numbering: ``Row.index`` counts from 0 like a Python index (generated ids use it);
messages say ``row index+1``, which for JSON lines is the line number.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from reasondistill.data.example import Example, as_answer_string, is_missing
from reasondistill.errors import DataError, did_you_mean

# Drop reasons: the keys of LoadResult.drops, shown in the data report.
EMPTY = "empty {field}"
INVALID_JSON = "invalid JSON"
NOT_AN_OBJECT = "row is not a JSON object"
NOT_UTF8 = "not UTF-8"
WRONG_TYPE = "value is not text or a number"
FIELD_COUNT = "wrong number of fields"
DUPLICATE_ID = "duplicate id"


class RowProblem(Exception):
    """This row cannot become an Example. ``reason`` is the drop key, ``detail`` the message."""

    def __init__(self, reason: str, detail: str | None = None, *,
                 field: str | None = None) -> None:
        super().__init__(detail or reason)
        self.reason, self.detail, self.field = reason, detail or reason, field


@dataclass(frozen=True)
class Row:
    """One raw row of a source, or the reason it could not be read."""

    index: int
    values: Any = None  # a mapping of column → raw cell (an Example for generated sources)
    problem: RowProblem | None = None  # set when the row could not even be read

    @property
    def number(self) -> int:
        return self.index + 1


@dataclass
class Source:
    """A readable source: where it is (for messages), its rows, how a row becomes an Example."""

    description: str
    rows: Iterable[Row]
    convert: Callable[[Row], Example]
    warnings: list[str] = field(default_factory=list)


def cell_text(value: Any, field: str) -> str:
    """A raw cell as text: strings as they are, numbers in their written form (``7`` not
    ``7.0``), missing cells as ``""``. Booleans, lists and mappings are refused."""
    if isinstance(value, str):
        return value
    if is_missing(value):
        return ""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as error:
            raise RowProblem(NOT_UTF8, f"byte {value[error.start]:#04x} at offset "
                             f"{error.start} of the value is not UTF-8", field=field) from None
    if isinstance(value, bool) or not _is_number(value):
        raise RowProblem(WRONG_TYPE, f"expected text or a number, got {type(value).__name__} "
                         f"{_short(value)}", field=field)
    return as_answer_string(value)


def required_text(value: Any, field: str, what: str | None = None) -> str:
    """Like :func:`cell_text`, but a missing, NaN or blank value is a row problem.

    ``field`` is the column (named in the message), ``what`` the Example field it feeds
    (named in the drop reason, so reasons read the same for every file)."""
    text = cell_text(value, field)
    if not text.strip():
        what = what or field
        shown = "missing" if value is None else "blank" if isinstance(value, str) else "NaN"
        raise RowProblem(EMPTY.format(field=what), f"{what} is {shown}", field=field)
    return text


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Number)  # int, float, Decimal, numpy scalars


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def extra_columns(values: dict, used) -> dict:
    """The cells no Example field took: they travel along in ``Example.meta``."""
    return {k: v for k, v in values.items() if k not in used}


def check_columns(available, needed, *, file: str, what: str) -> None:
    """A built-in source's fixed columns must all be there, or the file is not what it claims."""
    missing = [c for c in needed if c not in available]
    if missing:
        hints = "".join(did_you_mean(c, available) for c in missing)
        raise DataError(f"not {what}: missing column(s) {', '.join(map(repr, missing))}{hints};"
                        f" columns found: {', '.join(map(str, available)) or '(none)'}",
                        file=file, field=missing[0])
