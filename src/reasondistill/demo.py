"""``reasondistill demo``: the whole trace-distillation job on the embedded defaults.

SmolLM2-135M-Instruct and the built-in puzzle suite: evaluate the base model on held-out
puzzles, train a LoRA adapter with Train → Nudge, evaluate again, and report what changed per
type (accuracy and parse rate, before → after). Sized to finish on 2 CPU cores in about a
quarter of an hour; every stage is resumable, so rerunning continues where it stopped.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

DEMO_CONFIG = Path(__file__).with_name("demo.yaml")


def before_after_table(before: dict, after: dict) -> Table:
    table = Table(title="what training changed (held-out puzzles)", title_justify="left")
    for column in ("type", "n", "accuracy before", "accuracy after", "parse before",
                   "parse after"):
        table.add_column(column, justify="left" if column == "type" else "right")
    types = sorted(set(before["by_type"]) | set(after["by_type"]))
    for name in types + ["overall"]:
        b = before if name == "overall" else before["by_type"].get(name, {})
        a = after if name == "overall" else after["by_type"].get(name, {})
        table.add_row(name, str(a.get("n", "")), _pct(b.get("accuracy")), _pct(a.get("accuracy")),
                      _pct(b.get("parse_rate")), _pct(a.get("parse_rate")),
                      end_section=name == types[-1])
    return table


def _pct(value) -> str:
    return "–" if value is None else f"{value:.0%}"


def run_demo(config: Path | None, overrides: list[str], console: Console) -> None:
    from reasondistill.config import load_config
    from reasondistill.evaluate.report import write_report
    from reasondistill.evaluate.runner import run_eval
    from reasondistill.models import ensure_embedded
    from reasondistill.train.adapters import FINAL_ADAPTER
    from reasondistill.train.recipe import run_training

    cfg = load_config(config or DEMO_CONFIG, overrides)
    run_dir = Path(cfg.output_dir)
    started = time.perf_counter()
    if cfg.model.name == "smollm2-135m":
        console.rule("1/5 the embedded model")
        ensure_embedded()
    console.rule("2/5 evaluate the base model")
    before = run_eval(cfg, adapter=None, out_dir=run_dir / "eval" / "before", console=console)
    console.rule("3/5 train (Train → Nudge)")
    if not (run_dir / FINAL_ADAPTER / "adapter_config.json").is_file():
        run_training(cfg, resume=run_dir.exists(), console=console)
    console.rule("4/5 evaluate the adapter")
    after = run_eval(cfg, adapter=run_dir / FINAL_ADAPTER, out_dir=run_dir / "eval" / "after",
                     console=console)
    console.rule("5/5 report")
    md_path, html_path = write_report([run_dir], run_dir)
    console.print(before_after_table(before, after))
    minutes = (time.perf_counter() - started) / 60
    console.print(f"report: {md_path} and {html_path}  ({minutes:.1f} min)")
