"""``reasondistill demo``: the main job on the embedded defaults.

Until the training stage lands, the demo runs the data stage on the embedded default
(SmolLM2-135M-Instruct's tokenizer and the built-in puzzle suite) and prints its report.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

DEMO_CONFIG = Path(__file__).with_name("demo.yaml")


def run_demo(config: Path | None, overrides: list[str], console: Console) -> None:
    from reasondistill.config import load_config
    from reasondistill.models import load_tokenizer
    from reasondistill.prepare import prepare_data
    from reasondistill.reporting import print_data_report

    cfg = load_config(config or DEMO_CONFIG, overrides)
    console.rule("reasondistill demo: data stage")
    tokenizer = load_tokenizer(cfg.model.name, trust_remote_code=cfg.model.trust_remote_code)
    prepared = prepare_data(cfg.data, cfg.format, tokenizer)
    print_data_report(prepared.report, console)
