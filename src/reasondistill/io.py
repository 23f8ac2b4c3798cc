"""Atomic file writes and append-only JSONL: a reader (or a crash) never sees a half-written
file, and at most a torn last line of a log, which the reader skips.

Each function writes to a temporary file in the destination's own directory (so the final
``os.replace`` is a rename within one filesystem, which POSIX makes atomic) and then
replaces the destination in one step.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from reasondistill.errors import DataError


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (parent directories are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp makes the file owner-only; give it the mode a plain open() would.
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | Path, obj: Any, *, indent: int = 2) -> Path:
    """Write ``obj`` as JSON (UTF-8, trailing newline) to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def append_json_line(path: str | Path, obj: Any) -> Path:
    """Append ``obj`` as one JSON line to ``path`` in a single ``write`` on an ``O_APPEND``
    descriptor, then fsync: concurrent appenders never interleave within the line, and a
    crash leaves at most a torn last line (which JSONL readers here skip)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(obj, ensure_ascii=False) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, data)
        while written < len(data):  # a short write (rare: signals, full disk) finishes here
            written += os.write(fd, data[written:])
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Records of a JSONL file (what :func:`append_json_line` writes). A torn *last* line (a
    run killed mid-write) is skipped; a bad line anywhere else is an error naming the file
    and line."""
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            if number == len(lines):
                break
            raise DataError(f"not valid JSON: {error.msg}", file=str(path), row=number) from None
        if not isinstance(record, dict):
            raise DataError("expected a JSON object", file=str(path), row=number)
        records.append(record)
    return records
