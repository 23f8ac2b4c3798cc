"""The one exception type the CLI turns into a clear message and exit code 2.

Every user-facing failure (bad file, bad row, bad config key) raises ``ReasondistillError``
with a message that names *where* the problem is, so the CLI never shows a traceback for
bad input.
"""

from __future__ import annotations


class ReasondistillError(Exception):
    """A problem with the user's input or environment, explained in one message."""


class DataError(ReasondistillError):
    """Bad input data. ``location`` names the file, row and field when known."""

    def __init__(self, message: str, *, file: str | None = None, row: int | None = None,
                 field: str | None = None) -> None:
        self.file, self.row, self.field = file, row, field
        parts = []
        if file is not None:
            parts.append(str(file))
        if row is not None:
            parts.append(f"row {row}")
        if field is not None:
            parts.append(f"field {field!r}")
        self.location = ", ".join(parts)
        super().__init__(f"{self.location}: {message}" if parts else message)


class ConfigError(ReasondistillError):
    """A bad configuration file or key."""


def closest(name: str, options) -> str | None:
    """The option closest to ``name`` (for 'did you mean ...?' hints), or None."""
    import difflib

    matches = difflib.get_close_matches(str(name), [str(o) for o in options], n=1, cutoff=0.5)
    return matches[0] if matches else None


def did_you_mean(name: str, options) -> str:
    """' (did you mean 'x'?)' or '' — appended to unknown-name errors."""
    hit = closest(name, options)
    return f" (did you mean {hit!r}?)" if hit else ""
