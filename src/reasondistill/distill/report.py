"""What a latent run will do, printed before training (and by ``train --dry-run``)."""

from __future__ import annotations

from pathlib import Path

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


def print_dry_run_plan(cfg, prepared, student_tokenizer, console: Console) -> None:
    """``train --dry-run`` with ``distill`` on: the layer map, the projection shapes, the
    aligned tokens per row and the teacher-cache size, from the models' configs alone (no
    weights load; the alignment runs on the prepared rows as training would)."""
    from reasondistill.distill.cache import (
        INDEX_FILE,
        CachedTeacher,
        describe_size,
        plan_cache,
        teacher_named,
        teacher_spec,
    )
    from reasondistill.distill.objective import Objective
    from reasondistill.distill.similarity import describe_rows
    from reasondistill.errors import ReasondistillError
    from reasondistill.models import load_model_config

    d = cfg.distill
    table = Table(title="latent distillation (dry run)", title_justify="left", show_header=False)
    objective = Objective.from_config(d)
    table.add_row("objective", " + ".join(f"{w:g}·L_{n}" for n, w in objective.weights)
                  + f" ({d.distance}, normalize: {d.normalize}; tokens: {d.tokens})")
    # the same choice of teacher as the cache's estimate (distill/cache.py estimate_for_run),
    # kept here so the plan is computed once and gives both the layer map and the size
    try:
        if teacher_named(cfg):
            spec, tokenizer = teacher_spec(cfg), None
        elif d.teacher.cache and (Path(d.teacher.cache) / INDEX_FILE).is_file():
            cached = CachedTeacher.open(d.teacher.cache, [e.id for e in prepared.examples])
            spec, tokenizer = cached.spec(), cached.tokenizer
        else:
            table.add_row("teacher", "known only by a cache that is not written yet "
                          f"({d.teacher.cache}): no layer map or size estimate yet")
            console.print(table)
            return
        plan = plan_cache(cfg, prepared, student_tokenizer, spec, tokenizer)
    except ReasondistillError as error:
        table.add_row("teacher", f"cannot be read yet ({error})")
        table.add_row("teacher cache size", "no size estimate yet (nor a layer map: both need "
                      "the teacher's config)")
        console.print(table)
        return
    student_size = int(load_model_config(cfg.model).get_text_config().hidden_size)
    learned = d.projection == "always" or student_size != spec.hidden_size
    aligned = [plan.alignments[i].n_groups for i in plan.kept]
    table.add_row("teacher", f"{spec.describe()} ({spec.num_blocks} blocks, hidden "
                  f"{spec.hidden_size}, {spec.dtype})")
    table.add_row("layer pairs (student→teacher)", plan.layer_map.describe())
    table.add_row("projection", f"{student_size}→{spec.hidden_size} per pair × {plan.n_pairs}, "
                  f"{plan.n_pairs * student_size * spec.hidden_size:,} parameters"
                  if learned else f"none (same size, {student_size})")
    table.add_row("aligned tokens per row",
                  f"{sum(aligned) / max(len(aligned), 1):.1f} (min {min(aligned, default=0)}, "
                  f"max {max(aligned, default=0)}) over {len(aligned)} rows")
    dropped = len(prepared.examples) - len(plan.kept)
    if dropped:
        table.add_row("rows dropped on the teacher side", str(dropped))
    table.add_row("teacher cache size", describe_size(plan).removeprefix("teacher cache: "))
    table.add_row("layer similarity", describe_rows(cfg))
    console.print(table)
