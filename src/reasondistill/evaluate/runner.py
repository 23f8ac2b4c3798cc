"""The eval stage: examples → prompts → generations → scored rows → ``summary.json``.

Rows go to ``predictions.jsonl`` as each batch finishes, so a killed evaluation loses at most
one batch; a rerun into the same folder skips the problems already there (a torn last line
is dropped and the file rewritten). ``settings.json`` records what produced the rows, and a
rerun with different settings is refused rather than mixed in. ``summary.json`` is always
computed from every row in ``predictions.jsonl``.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from reasondistill.config import DataConfig, RunConfig, changed_keys
from reasondistill.data.example import Example
from reasondistill.errors import ConfigError, DataError, ReasondistillError
from reasondistill.io import atomic_write_json, atomic_write_text
from reasondistill.paths import inside, run_relative

PREDICTIONS, SUMMARY, SETTINGS = "predictions.jsonl", "summary.json", "settings.json"
FILE_SOURCES = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"}


# --------------------------------------------------------------------------- which problems


def data_config_for(data: DataConfig | str | Path) -> DataConfig:
    """A :class:`DataConfig` as given, or one for a data file (its suffix picks the reader)."""
    if isinstance(data, DataConfig):
        return data
    path = Path(data)
    if not path.is_file():
        raise DataError("data file not found" if not path.exists() else "is not a file",
                        file=str(data))
    source = FILE_SOURCES.get(path.suffix.lower())
    if source is None:
        raise DataError(f"unknown data file type {path.suffix!r}; use one of "
                        f"{', '.join(FILE_SOURCES)} (or a config's eval.data)", file=str(data))
    return DataConfig(source=source, path=str(path))


def default_eval_data(cfg: RunConfig) -> DataConfig:
    """``eval.data``, else held-out rows of the training source: its ``test`` split, or for
    the puzzle suite a fresh seed."""
    if cfg.eval.data is not None:
        return cfg.eval.data
    data = cfg.data
    if data.source == "puzzles":
        puzzles = data.puzzles.model_copy(update={"seed": data.puzzles.seed + 1})
        return data.model_copy(update={"puzzles": puzzles, "limit": None})
    if data.source in ("jsonl", "csv", "parquet") and data.path and Path(data.path).is_file():
        raise ConfigError(f"data.path {data.path!r} is a single file with no test split; set "
                          "eval.data in the config or pass --data")
    return data.model_copy(update={"split": "test", "limit": None})


def select_examples(examples: Sequence[Example], *, limit: int | None = None,
                    sample: int | None = None, seed: int = 0) -> list[Example]:
    """The first ``limit`` examples, then a seeded, type-stratified ``sample`` of them
    (every type keeps its share, rounded by largest remainder; input order is kept)."""
    from reasondistill.data.split import train_test_split

    chosen = list(examples[:limit] if limit is not None else examples)
    if sample is not None and sample < len(chosen):
        chosen = train_test_split(chosen, sample, seed=seed, stratify_by="type")[1]
    return chosen


def load_eval_examples(cfg: RunConfig, data: DataConfig | str | Path | None = None, *,
                       limit: int | None = None, sample: int | None = None,
                       seed: int = 0) -> tuple[list[Example], str]:
    """``(examples, source description)`` for an evaluation."""
    from reasondistill.data.loaders import load_examples

    data_cfg = data_config_for(data) if data is not None else default_eval_data(cfg)
    loaded = load_examples(data_cfg)
    limit = limit if limit is not None else cfg.eval.limit
    return select_examples(loaded.examples, limit=limit, sample=sample, seed=seed), loaded.source


# --------------------------------------------------------------------------- the row log


class PredictionLog:
    """``predictions.jsonl``: appended a batch at a time, read back on resume.

    A problem counts as done when all its ``samples`` rows are present; rows of a problem
    that is not (a torn write) are dropped, and so is a torn last line, by rewriting the
    file atomically before anything new is appended.
    """

    def __init__(self, path: Path, samples: int = 1) -> None:
        self.path, self.samples = Path(path), samples

    def rows(self) -> list[dict[str, Any]]:
        from reasondistill.io import read_records

        return read_records(self.path) if self.path.is_file() else []

    def repair(self) -> list[dict[str, Any]]:
        """The complete rows, after making the file hold exactly them."""
        rows = self.rows()
        counts = Counter(str(r.get("id")) for r in rows)
        complete = [r for r in rows if counts[str(r.get("id"))] >= self.samples]
        torn = self.path.is_file() and not self.path.read_bytes().endswith(b"\n") \
            and self.path.stat().st_size > 0
        if len(complete) != len(rows) or torn:
            atomic_write_text(self.path, "".join(_line(r) for r in complete))
        return complete

    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write("".join(_line(r) for r in rows))
            handle.flush()
            os.fsync(handle.fileno())


def _line(row: dict[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False) + "\n"


def check_settings(out_dir: Path, settings: dict[str, Any], has_rows: bool, *,
                   what: str = "predictions") -> None:
    """Refuse to add rows made with other settings to an existing output folder."""
    path = out_dir / SETTINGS
    if has_rows and path.is_file():
        before = json.loads(path.read_text(encoding="utf-8"))
        changed = changed_keys(before, settings)
        if changed:
            raise ReasondistillError(
                f"{out_dir} holds {what} made with other settings ({'; '.join(changed)}); "
                "use another --out, or delete that folder to start over"
            )
    atomic_write_json(path, settings)


# --------------------------------------------------------------------------- rows


def prediction_row(example: Example, generation, *, rel_tol: float,
                   integer_tolerance: bool = False,
                   sample_index: int | None = None) -> dict[str, Any]:
    """One line of ``predictions.jsonl``."""
    from reasondistill.evaluate.metrics import score_prediction

    row = {"id": example.id, "type": example.type, "difficulty": example.difficulty,
           "label": example.answer, "prompt": example.prompt, "output": generation.text}
    row.update(score_prediction(generation.text, example.answer, rel_tol=rel_tol,
                                integer_tolerance=integer_tolerance))
    row.update(n_generated_tokens=generation.n_generated_tokens,
               truncated=generation.truncated, confidence=generation.confidence)
    if sample_index is not None:
        row["sample_index"] = sample_index
    return row


def generate_rows(backend, examples: Sequence[Example], prompts: Sequence[str], log,
                  *, rel_tol: float, integer_tolerance: bool = False, samples: int,
                  progress: bool = True) -> int:
    """Generate, score and append rows batch by batch; returns the tokens generated."""
    from tqdm.auto import tqdm

    tokens, started = 0, time.perf_counter()
    with tqdm(total=len(examples), unit="problem", desc="eval", disable=not progress) as bar:
        for batch in backend.iter_generate(prompts):
            rows = []
            for index, generations in batch:
                for k, generation in enumerate(generations):
                    rows.append(prediction_row(examples[index], generation, rel_tol=rel_tol,
                                               integer_tolerance=integer_tolerance,
                                               sample_index=k if samples > 1 else None))
                    tokens += generation.n_generated_tokens
            log.append(rows)
            bar.update(len(batch))
            bar.set_postfix(tok_s=f"{tokens / max(time.perf_counter() - started, 1e-9):.0f}")
    return tokens


# --------------------------------------------------------------------------- the stage


def eval_settings(cfg: RunConfig, model_name: str, adapter: str | None,
                  source: str, *, out_dir: str | Path | None = None) -> dict[str, Any]:
    """What decides the rows' content; a resumed evaluation must match it.

    The adapter is recorded by :func:`~reasondistill.paths.run_relative` to the run
    (``adapter``) when ``out_dir`` lies inside the run directory, whose place then names the
    run; elsewhere as given, so two runs' adapters evaluated into one ``--out`` differ."""
    in_run = out_dir is None or inside(out_dir, cfg.output_dir) is not None
    return {
        "model": model_name,
        "adapter": (run_relative(adapter, cfg.output_dir) if in_run else str(adapter))
        if adapter else None,
        "data": source, "max_new_tokens": cfg.eval.max_new_tokens,
        "temperature": cfg.eval.temperature, "num_samples": cfg.eval.num_samples,
        "rel_tol": cfg.eval.rel_tol, "integer_tolerance": cfg.eval.integer_tolerance,
        "format": cfg.format.model_dump(mode="json"),
    }


def _upgrade_absolute_adapter(out_dir: Path, settings: dict[str, Any],
                              adapter: str | None) -> None:
    """A ``settings.json`` written before adapters were recorded relative to the run holds
    the adapter's absolute path; the same adapter is rewritten in today's form, so that
    evaluation resumes instead of being refused."""
    path = out_dir / SETTINGS
    if adapter is None or not path.is_file():
        return
    before = json.loads(path.read_text(encoding="utf-8"))
    old = before.get("adapter")
    if (isinstance(old, str) and old != settings["adapter"] and Path(old).is_absolute()
            and Path(old) == Path(adapter).resolve()):
        atomic_write_json(path, {**before, "adapter": settings["adapter"]})


def run_eval(cfg: RunConfig, *, model_name: str | None = None, adapter: str | Path | None = None,
             data: DataConfig | str | Path | None = None, out_dir: str | Path,
             limit: int | None = None, sample: int | None = None,
             console: Console | None = None, progress: bool = True,
             backend=None) -> dict[str, Any]:
    """Evaluate ``model_name`` (default ``cfg.model.name``) + ``adapter`` on the eval data and
    write ``predictions.jsonl``, ``settings.json`` and ``summary.json`` into ``out_dir``.

    ``backend`` (an object with ``tokenizer`` and ``iter_generate``) replaces loading one.
    Returns the summary.
    """
    from reasondistill.evaluate.metrics import summarize
    from reasondistill.prepare import format_spec
    from reasondistill.tokenize import render_prompt

    console = console or Console(stderr=True)
    out_dir = Path(out_dir)
    model_cfg = cfg.model.model_copy(update={"name": model_name or cfg.model.name})
    adapter = str(adapter) if adapter is not None else None
    examples, source = load_eval_examples(cfg, data, limit=limit, sample=sample,
                                          seed=cfg.train.seed)
    samples = cfg.eval.num_samples
    log = PredictionLog(out_dir / PREDICTIONS, samples)
    done = {str(r.get("id")) for r in log.repair()}
    settings = eval_settings(cfg, model_cfg.name, adapter, source, out_dir=out_dir)
    _upgrade_absolute_adapter(out_dir, settings, adapter)
    check_settings(out_dir, settings, bool(done))
    todo = [e for e in examples if e.id not in done]
    console.print(f"eval: {len(examples)} problems from {source}"
                  + (f" ({len(examples) - len(todo)} already in {log.path})" if done else ""))
    if todo:
        if backend is None:
            from reasondistill.evaluate.generate import make_backend

            backend = make_backend(cfg.eval, model_cfg, adapter=adapter, seed=cfg.train.seed)
        spec = format_spec(cfg.format)
        prompts = [render_prompt(backend.tokenizer, e.prompt, spec,
                                 enable_thinking=cfg.format.enable_thinking) for e in todo]
        generate_rows(backend, todo, prompts, log, rel_tol=cfg.eval.rel_tol,
                      integer_tolerance=cfg.eval.integer_tolerance, samples=samples,
                      progress=progress)
    summary = summarize(log.rows())
    atomic_write_json(out_dir / SUMMARY, summary)
    print_summary(summary, console)
    console.print(f"wrote {out_dir / SUMMARY}")
    return summary


def print_summary(summary: dict[str, Any], console: Console) -> None:
    """Accuracy with its 95% interval, parse rate and per-type accuracy, as one table."""

    def pct(value):
        return "—" if value is None else f"{value:.1%}"

    def with_ci(block):
        low, high = block["ci"]
        return f"{pct(block['accuracy'])} [{low:.0%}, {high:.0%}]"

    table = Table(title=f"eval: {summary['n']} rows", title_justify="left")
    for column in ("", "n", "accuracy [95% CI]"):
        table.add_column(column, justify="left" if not column else "right")
    overall = {"n": summary["n"], "accuracy": summary["accuracy"], "ci": summary["accuracy_ci"]}
    table.add_row("all", str(summary["n"]), with_ci(overall), end_section=True)
    for name, block in summary["by_type"].items():
        table.add_row(name, str(block["n"]), with_ci(block))
    console.print(table)
    console.print(f"parse rate {pct(summary['parse_rate'])}, format compliance "
                  f"{pct(summary['format_compliance'])}, truncated "
                  f"{pct(summary['truncation_rate'])}")


def resolve_adapter(cfg: RunConfig, adapter: str | Path | None, *, base: bool) -> Path | None:
    """The adapter to evaluate: the one given (an adapter or a run directory), else the run's
    ``<output_dir>/adapter`` when it exists, unless ``base`` asks for the bare model."""
    from reasondistill.export import find_adapter

    if adapter is not None:
        if base:
            raise ReasondistillError("--adapter and --base contradict each other; pass one")
        return find_adapter(Path(adapter))
    candidate = Path(cfg.output_dir) / "adapter"
    if not base and (candidate / "adapter_config.json").is_file():
        return find_adapter(candidate)
    return None
