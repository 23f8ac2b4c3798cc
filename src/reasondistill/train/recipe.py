"""The recipe, as the method's steps: data → student and LoRA → teacher and objective →
phases (Train → Nudge) → adapters. Each step reads only its own config section.

Run directory (``output_dir``)::

    config.yaml          the resolved config (reproduce the run from its own folder)
    data_report.json     what the data stage kept and dropped
    metrics.jsonl        loss (and each objective term), lr, grad norm, tokens/s per logging step
    checkpoints/<phase>/ Trainer checkpoints, for --resume
    adapter-train/       the adapter after phase 1, Train (PEFT format)
    adapter-nudge/       the adapter after phase 2, Nudge
    adapter/             the final adapter (a copy of the last phase's)
    train_summary.json   rows, steps, tokens and minutes per phase (and, distilling, the
                         layer similarity student ↔ teacher before and after training)
    distill_plan.json    distilling: layer map, projections, aligned tokens per row
    distill_balance.json distilling: the objective's balancing factors, measured at step 1
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.console import Console

from reasondistill.config import RunConfig, changed_keys, dump_config, load_config
from reasondistill.distill.projections import FILENAME as PROJECTIONS_FILE
from reasondistill.errors import ReasondistillError
from reasondistill.io import atomic_write_json, atomic_write_text
from reasondistill.train.adapters import (
    FINAL_ADAPTER,
    latest_checkpoint,
    load_adapter_weights,
    phase_adapter,
    save_adapter,
)
from reasondistill.train.arguments import tensorboard_callback, training_arguments, use_bf16
from reasondistill.train.distributed import is_main_process, world_size
from reasondistill.train.phases import PhasePlan, effective_batch, phase_table, plan_phases

BALANCE_FILE = "distill_balance.json"  # the objective's balancing factors (distill.balance)


def run_training(cfg: RunConfig, *, resume: bool = False, dry_run: bool = False,
                 console: Console | None = None, callbacks=()) -> dict | None:
    """Run (or with ``dry_run`` only plan) the whole recipe; returns the train summary.

    ``callbacks`` are extra ``TrainerCallback``s added to every phase. A phase stopped
    before its last step (a callback, a signal) leaves its checkpoints and no adapter;
    ``resume=True`` continues it.
    """
    main = is_main_process()
    console = (console or Console()) if main else Console(quiet=True)
    run_dir = Path(cfg.output_dir)

    # 1. data: load, validate, format, tokenize; which rows each phase trains on
    tokenizer, prepared = prepare_rows(cfg, console)
    phases = plan_phases(cfg.train, prepared.examples)
    console.print(phase_table(cfg.train, phases, world_size()))
    if dry_run:
        print_plan(cfg, prepared, tokenizer, console)
        return None
    cached_teacher = open_run_directory(cfg, prepared, tokenizer, resume=resume, main=main,
                                        console=console)

    # 2. the student: base weights in this machine's dtype, LoRA on the planned targets
    bf16 = use_bf16(cfg.train)
    model, tokenizer = load_student(cfg.model, cfg.lora, seed=cfg.train.seed, bf16=bf16,
                                    console=console)

    # 3. the teacher and the objective (distilling only)
    distillation = None
    if cfg.distill.enabled:
        distillation = setup_teacher(cfg.distill, cfg.format, model, tokenizer, prepared,
                                     cached_teacher, run_dir=run_dir, resume=resume,
                                     main=main, console=console)
    similarity = LayerSimilarity(cfg, model, tokenizer, prepared, distillation, main, console)
    similarity.measure("before", phase=phases[0].name, reuse=resume)

    # 4. the phases, each a Trainer run that resumes from its own checkpoints
    rows_by_id = {e.id: row for e, row in zip(prepared.examples, prepared.tokenized.rows)}
    summaries = []
    for index, phase in enumerate(phases):
        done = run_dir / phase_adapter(phase.name)
        if resume and (done / "adapter_config.json").exists():
            console.print(f"phase {phase.name} already finished; loading {done}")
            load_adapter_weights(model, done)
            if distillation:
                distillation.projections.load(done)
            continue
        console.rule(f"phase {index + 1}/{len(phases)}: {phase.name}")
        summary = run_phase(cfg.train, cfg.tracking, run_dir, model, tokenizer, phase,
                            rows_by_id, resume=resume, bf16=bf16, console=console,
                            callbacks=callbacks, distillation=distillation)
        summaries.append(summary)
        if not summary["completed"]:
            console.print(f"[yellow]phase {phase.name} stopped at step {summary['steps']}[/]; "
                          "rerun with --resume to continue")
            return {"phases": summaries, "interrupted": True}
        if main:
            save_adapter(model, done)

    # 5. the final adapter and the summary
    summary = {"phases": summaries, "bf16": bf16,
               "effective_batch": effective_batch(cfg.train, world_size()),
               "train_minutes": round(sum(s["minutes"] for s in summaries), 3)}
    if distillation and distillation.objective.scales:
        summary["balance"] = dict(distillation.objective.scales)
    after = similarity.measure("after", phase=phases[-1].name)
    if after is not None:
        summary["similarity"] = {"before": similarity.before, "after": after}
    if main:
        save_adapter(model, run_dir / FINAL_ADAPTER)
        atomic_write_json(run_dir / "train_summary.json", summary)
    console.print(f"[bold green]done[/]: adapter in {run_dir / FINAL_ADAPTER}")
    return summary


# --------------------------------------------------------------------------- the steps


def prepare_rows(cfg: RunConfig, console: Console):
    """Step 1: the tokenizer and the prepared rows, with the data report printed."""
    from reasondistill.models import load_tokenizer
    from reasondistill.prepare import prepare_data
    from reasondistill.reporting import print_data_report

    tokenizer = load_tokenizer(cfg.model.name, trust_remote_code=cfg.model.trust_remote_code)
    prepared = prepare_data(cfg.data, cfg.format, tokenizer)
    print_data_report(prepared.report, console)
    if not prepared.examples:
        raise ReasondistillError("no training rows left after the data stage (see drops above)")
    return tokenizer, prepared


def print_plan(cfg: RunConfig, prepared, tokenizer, console: Console) -> None:
    """``--dry-run``: the LoRA coverage (from a weightless model) and, distilling, the layer
    map, projections, aligned tokens and teacher-cache size."""
    from reasondistill.lora import plan_lora_targets, render_coverage_table
    from reasondistill.models import build_meta_model

    plan = plan_lora_targets(build_meta_model(cfg.model), cfg.lora.families,
                             cfg.lora.target_modules, rank=cfg.lora.r)
    console.print(render_coverage_table(plan), soft_wrap=True, markup=False, highlight=False)
    if cfg.distill.enabled:
        from reasondistill.distill.report import print_dry_run_plan

        print_dry_run_plan(cfg, prepared, tokenizer, console)


def open_run_directory(cfg: RunConfig, prepared, tokenizer, *, resume: bool, main: bool,
                       console: Console):
    """Refuse to overwrite a finished run, check a teacher cache before any weights load
    (returns it, or None), and write the resolved config and the data report."""
    run_dir = Path(cfg.output_dir)
    if not resume and (run_dir / FINAL_ADAPTER).exists():
        raise ReasondistillError(f"{run_dir} already holds a finished run; pass --resume to "
                                 "continue it or choose another output_dir")
    if resume and (run_dir / "config.yaml").is_file():
        refuse_another_config(run_dir / "config.yaml", cfg)
    cached_teacher = None
    if cfg.distill.enabled and cfg.distill.teacher.cache:
        from reasondistill.distill.cache import open_for_run

        cached_teacher = open_for_run(cfg, prepared, tokenizer, console)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.yaml", dump_config(cfg))
        atomic_write_json(run_dir / "data_report.json", prepared.report)
        if not resume:  # a fresh run: nothing of an earlier, unfinished one is reused
            for stale in ("metrics.jsonl", BALANCE_FILE):
                (run_dir / stale).unlink(missing_ok=True)
    return cached_teacher


# what shapes the adapter; eval, tracking and generate may change between a run and its resume
RESUME_SECTIONS = ("model", "data", "format", "lora", "train", "distill")


def refuse_another_config(stored: Path, cfg: RunConfig) -> None:
    """``--resume`` continues the run that ``stored`` describes, or nothing: a checkpoint
    trained under other settings would silently mix two runs. Names every key that differs."""
    before = load_config(stored).model_dump(mode="json")
    now = cfg.model_dump(mode="json")
    changed = changed_keys({s: before[s] for s in RESUME_SECTIONS},
                           {s: now[s] for s in RESUME_SECTIONS})
    if changed:
        raise ReasondistillError(
            f"{stored.parent} was trained with another config, so --resume would mix two runs "
            f"({'; '.join(changed)}); use the original settings, or another output_dir")


def load_student(model_cfg, lora_cfg, *, seed: int, bf16: bool, console: Console):
    """Step 2: the base model in the run's dtype with its LoRA adapter (seeded init), and the
    coverage table of what the adapter touches."""
    from transformers import set_seed

    from reasondistill.lora import apply_lora, render_coverage_table
    from reasondistill.models import load_model

    model, tokenizer = load_model(model_cfg, dtype="bfloat16" if bf16 else "float32")
    set_seed(seed)  # the LoRA init is random: same seed, same adapter
    model, plan = apply_lora(model, lora_cfg)
    console.print(render_coverage_table(plan), soft_wrap=True, markup=False, highlight=False)
    return model, tokenizer


def setup_teacher(distill_cfg, format_cfg, model, tokenizer, prepared, cached_teacher, *,
                  run_dir: Path, resume: bool, main: bool, console: Console):
    """Step 3: the teacher (online or cached), the alignments, the projections and the
    objective — with a resumed run's balancing factors."""
    from reasondistill.distill.report import print_distillation_plan
    from reasondistill.distill.setup import prepare_distillation

    distillation = prepare_distillation(distill_cfg, format_cfg, model, tokenizer, prepared,
                                        teacher_source=cached_teacher)
    print_distillation_plan(distillation, console)
    if resume and (run_dir / BALANCE_FILE).is_file():  # the factors of the first step
        distillation.objective.scales.update(json.loads((run_dir / BALANCE_FILE).read_text()))
    if main:
        atomic_write_json(run_dir / "distill_plan.json", distillation.summary())
    return distillation


class LayerSimilarity:
    """Student ↔ teacher layer similarity on held-out rows, before the first phase and after
    the last (distilling, rank 0 only; :mod:`reasondistill.distill.similarity`)."""

    def __init__(self, cfg, model, tokenizer, prepared, distillation, main, console) -> None:
        self.before = None
        self.measured = None
        if distillation is None or not main:
            return
        from reasondistill.distill.similarity import similarity_rows
        from reasondistill.train.collate import choose_packing

        held_out = similarity_rows(cfg, prepared, tokenizer, distillation)
        self.measured = dict(cfg=cfg, model=model, tokenizer=tokenizer, prepared=prepared,
                             distillation=distillation, held_out=held_out,
                             packed=choose_packing(cfg.train.packing, model), console=console)

    def measure(self, when: str, *, phase: str, reuse: bool = False):
        """The measurement (also appended to metrics.jsonl), or None when not measuring
        (``after`` only once ``before`` exists)."""
        if self.measured is None or (when == "after" and self.before is None):
            return None
        from reasondistill.distill.similarity import record_similarity

        result = record_similarity(**self.measured, when=when, phase=phase,
                                   **({"reuse": reuse} if when == "before" else {}))
        if when == "before":
            self.before = result
        return result


def run_phase(train_cfg, tracking_cfg, run_dir: Path, model, tokenizer, phase: PhasePlan,
              rows_by_id: dict, *, resume: bool, bf16: bool, console: Console, callbacks=(),
              distillation=None) -> dict:
    """Step 4, one phase: its rows in stratified order, the collator, the Trainer with the
    objective and the teacher, resumed from the phase's newest complete checkpoint."""
    from reasondistill.data.sampling import OrderedSampler
    from reasondistill.train.callbacks import MetricsJsonl, SaveBalance, SaveProjections
    from reasondistill.train.collate import (
        DistillCollator,
        PackedCollator,
        PaddedCollator,
        choose_packing,
    )
    from reasondistill.train.trainer import DistillTrainer

    index_of = {row_id: i for i, row_id in enumerate(rows_by_id)} if distillation else {}
    if distillation:  # rows the teacher side could not align were dropped and counted
        kept = set(distillation.kept)
        phase = PhasePlan(phase.settings, [e for e in phase.examples if index_of[e.id] in kept])
    dataset = [{"input_ids": rows_by_id[e.id].input_ids, "labels": rows_by_id[e.id].labels,
                **({"row": index_of[e.id]} if distillation else {})}
               for e in phase.examples]
    packed = choose_packing(train_cfg.packing, model)
    lengths = [len(row["input_ids"]) for row in dataset]
    sampler = OrderedSampler([e.type for e in phase.examples],
                             effective_batch(train_cfg, world_size()),
                             seed=train_cfg.seed, stratify=train_cfg.stratify,
                             lengths=lengths if train_cfg.largest_batch_first else None,
                             micro_batch_size=train_cfg.per_device_batch_size,
                             padded=not packed)
    collator = PackedCollator() if packed else PaddedCollator(tokenizer.pad_token_id)
    if distillation:
        collator = DistillCollator(collator, distillation.alignments, distillation.teacher_rows)
    checkpoint_dir = run_dir / "checkpoints" / phase.name
    arguments = training_arguments(train_cfg, tracking_cfg, phase.settings, checkpoint_dir,
                                   bf16=bf16, run_name=run_dir.name)
    trainer = DistillTrainer(
        model=model, args=arguments, train_dataset=dataset, data_collator=collator,
        processing_class=tokenizer, sampler=sampler,
        neftune_alpha=phase.settings.neftune_noise_alpha,
        objective=distillation.objective if distillation else None,
        teacher=distillation.teacher if distillation else None,
    )
    trainer.add_callback(MetricsJsonl(run_dir / "metrics.jsonl", phase.name, trainer))
    tensorboard = tensorboard_callback(tracking_cfg, run_dir, phase.name,
                                       main_process=is_main_process())
    if tensorboard is not None:
        trainer.add_callback(tensorboard)
    learned = distillation is not None and distillation.projections.learned
    if learned:
        trainer.add_callback(SaveProjections(distillation.projections))
    if distillation and distillation.objective.balance == "initial":
        trainer.add_callback(SaveBalance(distillation.objective, run_dir / BALANCE_FILE))
    for callback in callbacks:
        trainer.add_callback(callback)
    checkpoint = (latest_checkpoint(checkpoint_dir, holding=PROJECTIONS_FILE if learned else None)
                  if resume else None)
    if checkpoint:
        console.print(f"resuming phase {phase.name} from {checkpoint}")
        if learned:
            distillation.projections.load(Path(checkpoint))
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.remove_neftune()
    return {"phase": phase.name, "rows": len(dataset), "steps": trainer.state.global_step,
            "completed": trainer.state.global_step >= trainer.state.max_steps,
            "train_loss": result.training_loss, "tokens": trainer.tokens_seen * world_size(),
            "minutes": round((time.perf_counter() - started) / 60, 3),
            "packed": packed}
