"""``reasondistill demo``: the whole trace-distillation job on the embedded defaults.

SmolLM2-135M-Instruct on two families of the built-in puzzle suite (numerals and equations):
evaluate the base model on held-out puzzles, train a LoRA adapter on teacher traces, evaluate
again, and report what changed per type and per family (accuracy with its 95% interval, and
parse rate, before → after). Sized so that the gain is larger than chance on 2 CPU cores in
under 20 minutes; every stage is resumable, so rerunning continues where it stopped.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

DEMO_CONFIG = Path(__file__).with_name("demo.yaml")


def before_after_table(before: dict, after: dict) -> Table:
    table = Table(title="what training changed (held-out puzzles; accuracy with its 95% "
                  "interval)", title_justify="left")
    for column in ("type", "n", "accuracy before", "accuracy after", "parse before",
                   "parse after"):
        table.add_column(column, justify="left" if column == "type" else "right")
    types = sorted(set(before["by_type"]) | set(after["by_type"]))
    for name in types + ["overall"]:
        b, a = _block(before, name), _block(after, name)
        table.add_row(name, str(a.get("n", "")), _with_ci(b), _with_ci(a),
                      _pct(b.get("parse_rate")), _pct(a.get("parse_rate")),
                      end_section=name == types[-1])
    return table


def clear_gains(before: dict, after: dict) -> list[str]:
    """The types whose accuracy after training lies wholly above the base model's 95%
    interval: the gains this sample size can tell from chance."""
    return [name for name in sorted(after["by_type"])
            if _block(before, name).get("ci") and _block(after, name).get("ci")
            and _block(after, name)["ci"][0] > _block(before, name)["ci"][1]]


def with_families(summary: dict, families) -> dict:
    """``summary`` plus one pooled row per puzzle family that spans several types
    (``equation_numeric`` = its ``_deduce`` and ``_guess`` types): a family's gain is judged
    on all its held-out puzzles, with the interval of the pooled count."""
    from reasondistill.evaluate.metrics import accuracy_block

    pooled = {}
    for family in families or ():
        members = [block for name, block in summary["by_type"].items()
                   if name.startswith(family + "_")]
        if len(members) > 1:
            pooled[f"{family} (all types)"] = accuracy_block(
                sum(b["correct"] for b in members), sum(b["n"] for b in members))
    return {**summary, "by_type": {**summary["by_type"], **pooled}}


def _block(summary: dict, name: str) -> dict:
    if name == "overall":
        return {**summary, "ci": summary.get("accuracy_ci")}
    return summary["by_type"].get(name, {})


def _with_ci(block: dict) -> str:
    if block.get("accuracy") is None:
        return "–"
    low, high = block.get("ci") or (None, None)
    interval = f" [{low:.0%}, {high:.0%}]" if low is not None else ""
    return f"{block['accuracy']:.0%}{interval}"


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
    console.rule(f"3/5 train ({' → '.join(p.capitalize() for p in cfg.train.phases)})")
    if not (run_dir / FINAL_ADAPTER / "adapter_config.json").is_file():
        run_training(cfg, resume=run_dir.exists(), console=console)
    console.rule("4/5 evaluate the adapter")
    after = run_eval(cfg, adapter=run_dir / FINAL_ADAPTER, out_dir=run_dir / "eval" / "after",
                     console=console)
    console.rule("5/5 report")
    md_path, html_path = write_report([run_dir], run_dir)
    families = cfg.data.puzzles.families if cfg.data.source == "puzzles" else None
    before, after = with_families(before, families), with_families(after, families)
    console.print(before_after_table(before, after))
    gains = clear_gains(before, after)
    console.print("gains beyond the base model's 95% interval: "
                  + (", ".join(gains) if gains else "none"), highlight=False)
    minutes = (time.perf_counter() - started) / 60
    console.print(f"report: {md_path} and {html_path}  ({minutes:.1f} min)")
