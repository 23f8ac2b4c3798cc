"""What a latent run will do, printed before training (and by ``train --dry-run``)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def print_distillation_plan(distillation, console: Console) -> None:
    summary = distillation.summary()
    table = Table(title="latent distillation", title_justify="left", show_header=False)
    table.add_row("objective", " + ".join(f"{w:g}·L_{n}" for n, w in distillation.objective.weights))
    table.add_row("teacher", type(distillation.teacher).__name__)
    table.add_row("layer pairs (student→teacher)", distillation.layer_map.describe())
    projection = summary["projection"]
    table.add_row("projection", f"{projection[0]}→{projection[1]} per pair, "
                  f"{summary['projection_parameters']:,} parameters" if projection else "none (same size)")
    table.add_row("aligned tokens per row", f"{summary['aligned_tokens_per_row']:.1f}")
    if summary["teacher_drops"]:
        table.add_row("rows dropped on the teacher side",
                      ", ".join(f"{k}: {v}" for k, v in summary["teacher_drops"].items()))
    console.print(table)
