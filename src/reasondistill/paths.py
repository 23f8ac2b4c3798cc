"""How reports, summaries and settings files name a path."""

from __future__ import annotations

from pathlib import Path


def inside(path: str | Path, directory: str | Path) -> Path | None:
    """``path`` relative to ``directory`` when it lies within it (``.`` for the directory
    itself), else None. Both are resolved first, so spelling and symlinks do not matter."""
    try:
        return Path(path).resolve().relative_to(Path(directory).resolve())
    except ValueError:
        return None


def run_relative(path: str | Path, run_dir: str | Path) -> str:
    """``path`` as a record in ``run_dir`` writes it, naming no folder of the machine that
    made it, so the record stays true when the directory is copied, moved or shared:

    * a path inside ``run_dir`` (its adapter, an evaluation): relative to ``run_dir``, with
      ``/`` separators (``adapter``, ``eval/after``; ``.`` for ``run_dir`` itself);
    * a path outside it (an input: a data file, a base model, another run's adapter): as the
      user gave it, in the config or on the command line, never resolved to an absolute path
      (an absolute path appears only where the user wrote one).
    """
    relative = inside(path, run_dir)
    return str(path) if relative is None else relative.as_posix()
