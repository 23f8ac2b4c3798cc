"""The command line: one command per stage (data, generate, cache, train, eval, report, export,
puzzles, sweep, demo).

Every command turns a :class:`ReasondistillError` into one red line on stderr and exit code 2;
a traceback means a bug in reasondistill, never bad input.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from reasondistill.errors import ReasondistillError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Distill a teacher's reasoning into a LoRA adapter on a student model.")
# Piped output (CI logs, files) gets wide tables instead of rich's 80-column default.
console = Console(stderr=True, width=None if sys.stderr.isatty() else 120)
out = Console(width=None if sys.stdout.isatty() else 120)

ConfigArg = typer.Argument(..., help="YAML run config", exists=False)
SetOpt = typer.Option(None, "--set", help="override a config key: --set train.seed=3")


def command(*args, **kwargs):
    """``app.command`` that turns user errors into a clear message and exit code 2."""

    def register(func):
        @functools.wraps(func)
        def wrapper(*a, **kw):
            try:
                return func(*a, **kw)
            except ReasondistillError as error:
                console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False,
                              soft_wrap=True)
                raise typer.Exit(2) from None

        return app.command(*args, **kwargs)(wrapper)

    return register


def _write_json(obj, target: str) -> None:
    from reasondistill.io import atomic_write_json

    if target == "-":
        out.print_json(json.dumps(obj))
    else:
        atomic_write_json(Path(target), obj)
        console.print(f"wrote {target}")


@command("data")
def data_command(
    config: Path | None = typer.Argument(None, help="YAML run config (default: embedded demo)"),
    set_: list[str] | None = SetOpt,
    json_out: str | None = typer.Option(None, "--json", help="also write the report as JSON "
                                           "to this path ('-' for stdout)"),
):
    """Load, validate, format and tokenize the data, and report what the trainer would get."""
    from reasondistill.config import load_config
    from reasondistill.models import load_tokenizer
    from reasondistill.prepare import prepare_data
    from reasondistill.reporting import print_data_report

    cfg = load_config(config, set_)
    tokenizer = load_tokenizer(cfg.model.name, trust_remote_code=cfg.model.trust_remote_code)
    prepared = prepare_data(cfg.data, cfg.format, tokenizer)
    print_data_report(prepared.report, out)
    if json_out:
        _write_json(prepared.report, json_out)


@command("train")
def train_command(
    config: Path = typer.Argument(..., help="YAML run config"),
    set_: list[str] | None = SetOpt,
    resume: bool = typer.Option(False, "--resume", help="continue from the run's checkpoints"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the data report, phases, LoRA "
                                 "coverage and step counts without loading weights"),
):
    """Train a LoRA adapter with the trace-distillation recipe (Train → Nudge)."""
    from reasondistill.config import load_config
    from reasondistill.train.distributed import (
        close_distributed,
        launch_engine,
        refuse_sharded_parameters,
    )
    from reasondistill.train.recipe import run_training

    refuse_sharded_parameters(launch_engine())  # FSDP / ZeRO-3: before any weights load
    try:
        run_training(load_config(config, set_), resume=resume, dry_run=dry_run, console=out)
    except BaseException:
        close_distributed(wait=False)  # a failed rank must not wait for the others
        raise
    close_distributed(wait=True)


@command("cache")
def cache_command(
    config: Path = typer.Argument(..., help="YAML run config (its distill section)"),
    set_: list[str] | None = SetOpt,
    out_dir: Path | None = typer.Option(None, "--out", help="cache directory (default: "
                                           "distill.teacher.cache, else <output_dir>/teacher-cache)"),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="rows per teacher "
                                             "forward (default: train.per_device_batch_size)"),
    shard_rows: int | None = typer.Option(None, "--shard-rows", min=1, help="rows per shard "
                                             "(default: about 256 MB per shard)"),
):
    """Run the teacher once and store what latent distillation reads (resumable); train
    with distill.teacher.cache: DIR to read it instead of running the teacher."""
    from reasondistill.config import load_config
    from reasondistill.distill.cache import write_cache

    write_cache(load_config(config, set_), out_dir, console=out, batch_size=batch_size,
                rows_per_shard=shard_rows)


@command("eval")
def eval_command(
    config: Path | None = typer.Argument(None, help="YAML run config (default: all defaults)"),
    model: str | None = typer.Option(None, "--model", help="base model (default: model.name)"),
    adapter: Path | None = typer.Option(None, "--adapter", help="adapter or run directory "
                                           "(default: <output_dir>/adapter when it exists)"),
    base: bool = typer.Option(False, "--base", help="evaluate the model without an adapter"),
    name: str | None = typer.Option(None, "--name", help="evaluation name (default: 'after' "
                                       "with an adapter, else 'before')"),
    data: Path | None = typer.Option(None, "--data", help="JSONL/CSV/Parquet file of problems "
                                        "(default: eval.data, else the training source's test split)"),
    out_dir: Path | None = typer.Option(None, "--out", help="default: <output_dir>/eval/<name>"),
    limit: int | None = typer.Option(None, "--limit", min=1, help="only the first N problems"),
    sample: int | None = typer.Option(None, "--sample", min=1,
                                         help="a seeded, type-stratified sample of N problems"),
    set_: list[str] | None = SetOpt,
):
    """Generate answers to held-out problems and score them as the grader does (resumable)."""
    from reasondistill.config import load_config
    from reasondistill.evaluate.runner import resolve_adapter, run_eval

    cfg = load_config(config, set_)
    adapter_dir = resolve_adapter(cfg, adapter, base=base)
    name = name or ("after" if adapter_dir else "before")  # the names `report` compares
    run_eval(cfg, model_name=model, adapter=adapter_dir, data=data,
             out_dir=out_dir or Path(cfg.output_dir) / "eval" / name, limit=limit,
             sample=sample, console=out)


@command("export")
def export_command(
    run_dir: Path = typer.Argument(..., help="a run directory or an adapter directory"),
    zip_out: Path | None = typer.Option(None, "--zip", help="write a Kaggle-style "
                                           "submission.zip here"),
    merge_out: Path | None = typer.Option(None, "--merge", help="write a merged full model "
                                             "directory here"),
    max_rank: int | None = typer.Option(None, "--max-rank", min=1,
                                           help="refuse adapters above this LoRA rank"),
    base_model: str | None = typer.Option(None, "--base-model", help="base model name to "
                                             "record (default: the run's model.name)"),
):
    """Package a trained adapter."""
    from reasondistill.export import (
        adapter_config,
        check_rank,
        find_adapter,
        write_merged_model,
        write_submission_zip,
    )

    adapter_dir = find_adapter(run_dir)
    model_name = base_model or _run_model_name(run_dir) or adapter_config(adapter_dir).get(
        "base_model_name_or_path")
    if not zip_out and not merge_out:
        check_rank(adapter_config(adapter_dir), max_rank, adapter_dir)
        out.print(f"adapter OK: {adapter_dir} (pass --zip or --merge to package it)")
    if zip_out:
        out.print(f"wrote {write_submission_zip(adapter_dir, zip_out, base_model=model_name, max_rank=max_rank)}")
    if merge_out:
        out.print(f"wrote {write_merged_model(adapter_dir, merge_out, model_name=model_name, max_rank=max_rank)}")


def _run_model_name(run_dir: Path) -> str | None:
    from reasondistill.config import load_config

    config_path = run_dir / "config.yaml"
    return load_config(config_path).model.name if config_path.is_file() else None


@command("report")
def report_command(
    run_dirs: list[Path] = typer.Argument(..., help="one or more run directories"),
    out_dir: Path | None = typer.Option(None, "--out", help="where to write report.md/.html "
                                           "(default: the run directory, or ./report for several)"),
):
    """Write report.md and report.html (with PNG plots) for one run or a comparison of runs."""
    from reasondistill.evaluate.report import write_report

    target = out_dir or (run_dirs[0] if len(run_dirs) == 1 else Path("report"))
    md_path, html_path = write_report(run_dirs, target)
    out.print(f"wrote {md_path} and {html_path}")


@command("puzzles")
def puzzles_command(
    n: int = typer.Option(5000, "--n", min=1, help="number of problems"),
    seed: int = typer.Option(0, "--seed"),
    out_path: Path = typer.Option(..., "--out", help="JSONL file to write"),
    families: list[str] | None = typer.Option(None, "--families", help="repeat or comma-separate"),
    level: int | None = typer.Option(None, "--level", min=1),
    trace_style: str = typer.Option("compact", "--trace-style",
                                    help="compact, or stepwise (every family but cryptarithm)"),
):
    """Generate the built-in reasoning puzzle suite as a JSONL dataset."""
    from collections import Counter

    from reasondistill.data.puzzles import generate_puzzles, write_jsonl

    names = [f.strip() for item in families or [] for f in item.split(",") if f.strip()] or None
    if trace_style not in ("compact", "stepwise"):
        raise ReasondistillError(f"--trace-style {trace_style!r}: choose compact or stepwise")
    examples = generate_puzzles(n, seed=seed, families=names, level=level, style=trace_style)
    write_jsonl(examples, out_path)
    counts = Counter(e.type for e in examples)
    out.print(f"wrote {len(examples)} problems to {out_path}: "
              + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))


@command("generate")
def generate_command(
    config: Path = typer.Argument(..., help="YAML run config (its data and generate sections)"),
    data: Path | None = typer.Option(None, "--data", help="JSONL/CSV/Parquet file of problems "
                                        "(default: the config's data section)"),
    out_dir: Path | None = typer.Option(None, "--out", help="default: generate.out, else "
                                           "<output_dir>/generated"),
    limit: int | None = typer.Option(None, "--limit", min=1, help="only the first N problems"),
    set_: list[str] | None = SetOpt,
):
    """Have a teacher write k candidate traces per problem and keep the verified ones
    (resumable): traces.jsonl is training data."""
    from reasondistill.config import load_config
    from reasondistill.traces import run_generate

    run_generate(load_config(config, set_), data=data, limit=limit, out_dir=out_dir,
                 console=out)


@command("sweep")
def sweep_command(
    sweep_file: Path = typer.Argument(..., help="YAML sweep file (base, set, arms, grid, seeds)"),
    print_commands: bool = typer.Option(False, "--print-commands", help="print each point "
                                        "as standalone commands instead of running it"),
    collect: bool = typer.Option(False, "--collect", help="run nothing: gather finished "
                                 "points into results.json and write the report"),
    only: str | None = typer.Option(None, "--only", help="run only the points whose name "
                                    "matches this regular expression"),
):
    """Run a grid of configs x seeds as resumable runs; results.json and a report."""
    from reasondistill.sweep import run_sweep

    run_sweep(sweep_file, console=out, print_commands=print_commands, collect=collect,
              only=only)


@command("demo")
def demo_command(
    config: Path | None = typer.Argument(None, help="override the embedded demo config"),
    set_: list[str] | None = SetOpt,
):
    """Run the main job on the embedded defaults (SmolLM2-135M-Instruct + the puzzle suite)."""
    from reasondistill.demo import run_demo

    run_demo(config, set_ or [], out)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
