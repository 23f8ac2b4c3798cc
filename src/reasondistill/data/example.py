"""The one record type every stage passes along.

Answers are always strings: a bit string ``00010101`` must stay ``00010101`` and a label
``7`` must never become ``7.0``, because the grader compares strings first.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Example:
    """One problem: its prompt, a teacher trace (may be empty), the authoritative answer."""

    id: str
    prompt: str
    answer: str
    trace: str = ""
    type: str = "default"
    difficulty: str = "default"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("id", "prompt", "answer", "trace", "type", "difficulty"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise TypeError(f"Example.{name} must be a str, got {type(value).__name__}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> Example:
        known = {k: row[k] for k in ("id", "prompt", "answer", "trace", "type", "difficulty")
                 if k in row}
        return cls(**known, meta=dict(row.get("meta") or {}))


def is_missing(value: Any) -> bool:
    """None, NaN, or a blank string: a value a row cannot be used with."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def as_answer_string(value: Any) -> str:
    """Turn a raw cell into an answer string without losing how it was written.

    Strings are kept as they are (``"00010101"``). Integral floats that a CSV/Parquet reader
    produced from an integer column (``7.0``) become ``"7"``; other numbers use ``repr``-exact
    ``str``. Booleans are refused by the caller's validation, not silently turned into text.
    """
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    try:  # numpy scalars
        import numbers

        if isinstance(value, numbers.Integral):
            return str(int(value))
        if isinstance(value, numbers.Real) and float(value).is_integer():
            return str(int(value))
    except Exception:  # pragma: no cover - defensive
        pass
    return str(value)
