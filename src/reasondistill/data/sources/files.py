"""Readers for JSON lines, CSV and Parquet files: raw rows, nothing coerced.

A file that cannot be read at all (missing, empty, another format) is a DataError naming
the file; a bad line inside a good file becomes a RowProblem on that row, so the loader can
raise it or count it. CSV cells stay the exact text of the file (``00010101`` stays
``00010101``); Parquet cells keep their Arrow types (an int stays an int, never ``7.0``).
"""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from reasondistill.data.sources.base import (
    FIELD_COUNT,
    INVALID_JSON,
    NOT_AN_OBJECT,
    NOT_UTF8,
    Row,
    RowProblem,
)
from reasondistill.errors import ConfigError, DataError, did_you_mean

BOM = b"\xef\xbb\xbf"
FORMAT_NAMES = {"jsonl": "JSON lines", "csv": "CSV", "parquet": "Parquet"}


@dataclass
class Table:
    """The columns a file declares (header, schema, or the first JSON object's keys) and
    its rows, read lazily."""

    columns: list[str]
    rows: Iterator[Row]


def existing_file(path: str | None, source: str) -> Path:
    """``data.path`` as a readable, non-empty file, or a clear error."""
    if path is None:
        raise ConfigError(f"data.source {source!r} reads a file: set data.path to it")
    file = Path(path).expanduser()
    if not file.exists():
        raise DataError("file not found", file=str(path))
    if file.is_dir():
        raise DataError(f"is a folder; data.source {source!r} needs data.path to name a file",
                        file=str(path))
    if file.stat().st_size == 0:
        raise DataError("file is empty", file=str(path))
    return file


def split_file(path: str, split: str, source: str, *, suffixes: tuple[str, ...]) -> Path:
    """``data.path`` as a file, or for a folder its file for ``data.split`` (``test.jsonl``).

    A file is used as it is: ``data.split`` only picks a file inside a folder."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        return existing_file(path, source)
    for suffix in suffixes:
        if (folder / f"{split}{suffix}").is_file():
            return existing_file(str(folder / f"{split}{suffix}"), source)
    splits = sorted({p.stem for suffix in suffixes for p in folder.glob(f"*{suffix}")})
    raise DataError(f"no {split}{suffixes[0]} for data.split {split!r} in this folder"
                    f"{did_you_mean(split, splits)}; splits here: {', '.join(splits) or '(none)'}",
                    file=str(path))


def sniff(file: Path) -> str | None:
    """What the file's first bytes look like: "parquet", "jsonl", "csv", or None."""
    head = _head(file)
    if head.startswith(b"PAR1"):
        return "parquet"
    if b"\x00" in head:  # binary: no text format, whatever commas its bytes hold
        return None
    text = head.removeprefix(BOM).lstrip()
    if text[:1] in (b"{", b"["):
        return "jsonl"
    first_line = text.split(b"\n", 1)[0]
    if b"," in first_line or b"\t" in first_line:
        return "csv"
    return None


def _head(file: Path) -> bytes:
    with file.open("rb") as handle:
        return handle.read(4096)


def wrong_format_hint(file: Path, expected: str) -> str:
    """'; it looks like CSV: set data.source: csv' when the file is clearly another format."""
    looks = sniff(file)
    if looks is None or looks == expected:
        return ""
    return f"; it looks like {FORMAT_NAMES[looks]}: set data.source: {looks}"


# --- JSON lines -----------------------------------------------------------------------------

def read_jsonl(file: Path) -> Table:
    """One JSON object per line (blank lines skipped), or a JSON array of objects."""
    if _head(file).removeprefix(BOM).lstrip()[:1] == b"[":
        return _read_json_array(file)
    rows = _jsonl_rows(file)
    first = next(rows, None)
    if first is None:
        raise DataError("file is empty (no JSON lines)", file=str(file))
    if first.problem is not None:
        prefix = "" if first.problem.reason == NOT_UTF8 else "not JSON lines: "
        raise DataError(prefix + first.problem.detail + wrong_format_hint(file, "jsonl"),
                        file=str(file), row=first.number)
    return Table(list(first.values), itertools.chain([first], rows))


def _jsonl_rows(file: Path) -> Iterator[Row]:
    with file.open("rb") as handle:
        offset = 0
        for index, raw in enumerate(handle):
            start, offset = offset, offset + len(raw)
            if index == 0 and raw.startswith(BOM):
                raw, start = raw[len(BOM):], start + len(BOM)
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                yield Row(index, problem=RowProblem(
                    NOT_UTF8, f"byte {raw[error.start]:#04x} at file offset "
                    f"{start + error.start} is not UTF-8 (save the file as UTF-8)"))
                continue
            yield _json_row(index, line, f"line {index + 1}")


def _json_row(index: int, text: str, where: str) -> Row:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        return Row(index, problem=RowProblem(
            INVALID_JSON, f"{where} is not valid JSON: {error.msg} (column {error.colno})"))
    return _object_row(index, value, where)


def _object_row(index: int, value, where: str) -> Row:
    if not isinstance(value, dict):
        return Row(index, problem=RowProblem(
            NOT_AN_OBJECT, f"{where} is a JSON {type(value).__name__}, not an object"))
    return Row(index, value)


def _read_json_array(file: Path) -> Table:
    try:
        items = json.loads(file.read_bytes().removeprefix(BOM).decode("utf-8"))
    except UnicodeDecodeError as error:
        raise DataError(f"byte at file offset {error.start} is not UTF-8", file=str(file)) \
            from None
    except json.JSONDecodeError as error:
        raise DataError(f"not valid JSON: {error.msg} (line {error.lineno}, column "
                        f"{error.colno})", file=str(file)) from None
    if not isinstance(items, list) or not items:
        raise DataError("expected a JSON array of objects, or one JSON object per line",
                        file=str(file))
    rows = [_object_row(i, item, f"item {i + 1}") for i, item in enumerate(items)]
    columns = next((list(r.values) for r in rows if r.problem is None), [])
    return Table(columns, iter(rows))


# --- CSV ------------------------------------------------------------------------------------

def read_csv(file: Path) -> Table:
    """A CSV with a header row. Every cell is kept as the exact text in the file."""
    hint = wrong_format_hint(file, "csv")
    if hint:
        raise DataError("not a CSV file" + hint, file=str(file))
    if b"\x00" in _head(file):  # the csv module would read binary bytes as column names
        raise DataError("not a CSV file: it holds binary data (NUL bytes), not text",
                        file=str(file))
    handle = file.open(encoding="utf-8-sig", errors="surrogateescape", newline="")
    reader = csv.reader(handle)
    try:
        columns = _csv_header(file, reader)
    except BaseException:
        handle.close()
        raise
    return Table(columns, _csv_rows(file, handle, reader, columns))


def _csv_header(file: Path, reader) -> list[str]:
    try:
        with _wide_csv_fields():
            header = next(reader, None)
    except csv.Error as error:
        raise DataError(f"line {reader.line_num}: not valid CSV: {error}", file=str(file)) \
            from None
    if header is None or not any(cell.strip() for cell in header):
        raise DataError("file is empty (no header row)", file=str(file))
    columns = [cell.strip() for cell in header]
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise DataError(f"the header names column(s) {', '.join(map(repr, repeated))} more "
                        "than once", file=str(file))
    return columns


def _csv_rows(file: Path, handle, reader, columns: list[str]) -> Iterator[Row]:
    with handle, _wide_csv_fields():
        index = 0
        try:
            for cells in reader:
                if not cells:
                    continue  # a blank line
                yield _csv_row(index, cells, columns, reader.line_num)
                index += 1
        except csv.Error as error:
            raise DataError(f"line {reader.line_num}: not valid CSV: {error}",
                            file=str(file), row=index + 1) from None


def _csv_row(index: int, cells: list[str], columns: list[str], line: int) -> Row:
    if len(cells) != len(columns):
        return Row(index, problem=RowProblem(
            FIELD_COUNT, f"line {line} has {len(cells)} fields, the header has {len(columns)}"))
    for column, cell in zip(columns, cells):
        bad = next((ch for ch in cell if "\udc80" <= ch <= "\udcff"), None)
        if bad is not None:  # surrogateescape's stand-in for an undecodable byte
            return Row(index, problem=RowProblem(
                NOT_UTF8, f"line {line}: byte {ord(bad) - 0xDC00:#04x} is not UTF-8 "
                "(save the file as UTF-8)", field=column))
    return Row(index, dict(zip(columns, cells)))


@contextmanager
def _wide_csv_fields():
    """Lift the csv module's 128 KiB field limit (long traces exceed it) while reading."""
    previous = csv.field_size_limit(2**31 - 1)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


# --- Parquet --------------------------------------------------------------------------------

def read_parquet(file: Path) -> Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(file)
    except (pa.ArrowException, OSError) as error:
        raise DataError(f"not a Parquet file ({error}){wrong_format_hint(file, 'parquet')}",
                        file=str(file)) from None
    return Table(list(parquet.schema_arrow.names), _parquet_rows(parquet))


def _parquet_rows(parquet) -> Iterator[Row]:
    try:
        index = 0
        for batch in parquet.iter_batches(batch_size=4096):
            for values in batch.to_pylist():
                yield Row(index, values)
                index += 1
    finally:
        parquet.close()
