"""Atomic files everywhere: every place the package writes a file is either one of the
``reasondistill.io`` writers (temp file + fsync + rename, or a whole-line fsync'd append whose
torn last line readers skip) or writes inside a temp location that is renamed into place.

The static check lists each raw write in ``src/`` with the reason it is safe, so a new raw
write fails here until someone says why it cannot leave half a file.
"""

import os
import re
from pathlib import Path

import pytest

from reasondistill.io import append_json_line, atomic_write_text, read_records

SRC = Path(__file__).parents[1] / "src" / "reasondistill"
RAW_WRITE = re.compile(r"\.write_text\(|\.write_bytes\(|open\([^)]*[\"'][wax]b?[\"']|"
                       r"\.save_pretrained\(|save_file\(|torch\.save\(|\.savefig\(|ZipFile\(")

# file → what each raw write in it writes, and why a crash cannot leave half of it
SAFE_RAW_WRITES = {
    "io.py": "the atomic writers themselves (mkstemp, fsync, os.replace; O_APPEND + fsync)",
    "models.py": "the embedded model's conversion, inside build_directory_atomically's temp "
                 "directory, renamed onto the cache directory with its marker last",
    "train/adapters.py": "an adapter saved into <name>.tmp, then renamed onto <name>",
    "export.py": "the zip and the merged model are built under temp names, then renamed",
    "distill/cache.py": "a shard is written as .tmp, fsync'd, renamed; the index is atomic and "
                        "lists only renamed shards; the tokenizer goes to a temp dir first",
    "distill/projections.py": "into a checkpoint (complete only once trainer_state.json "
                              "parses and this file exists) or an adapter's .tmp directory",
    "evaluate/plots.py": "a figure rendered into a BytesIO, written by atomic_write_bytes",
    "evaluate/runner.py": "predictions.jsonl: whole fsync'd batches appended; on resume "
                          "PredictionLog.repair rewrites it atomically without a torn tail",
}


def raw_writes() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in SRC.rglob("*.py"):
        for line in path.read_text(encoding="utf-8").splitlines():
            if RAW_WRITE.search(line) and not line.lstrip().startswith("#"):
                found.setdefault(path.relative_to(SRC).as_posix(), []).append(line.strip())
    return found


def test_every_raw_write_in_the_package_is_accounted_for():
    found = raw_writes()
    unexplained = {name: lines for name, lines in found.items() if name not in SAFE_RAW_WRITES}
    assert not unexplained, (
        "raw file writes outside reasondistill.io; use atomic_write_* / append_json_line, or "
        f"add the file to SAFE_RAW_WRITES with the reason it is safe: {unexplained}")
    stale = set(SAFE_RAW_WRITES) - set(found)
    assert not stale, f"SAFE_RAW_WRITES lists files that no longer write raw: {stale}"


def test_a_failed_atomic_write_leaves_the_old_file(tmp_path, monkeypatch):
    target = atomic_write_text(tmp_path / "config.yaml", "old: 1\n")

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(target, "new: 2\n")
    assert target.read_text() == "old: 1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]  # no temp file left


def test_a_torn_last_line_is_skipped_and_a_torn_middle_line_is_an_error(tmp_path):
    from reasondistill.errors import DataError

    log = tmp_path / "metrics.jsonl"
    append_json_line(log, {"step": 1})
    append_json_line(log, {"step": 2})
    with log.open("ab") as handle:
        handle.write(b'{"step": 3, "lo')
    assert read_records(log) == [{"step": 1}, {"step": 2}]
    with log.open("ab") as handle:
        handle.write(b'\n{"step": 4}\n')
    with pytest.raises(DataError, match="metrics.jsonl, row 3"):
        read_records(log)
