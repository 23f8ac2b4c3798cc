"""The trace-distillation recipe, step by step: data → phases → LoRA → Train → Nudge → adapters.

Run directory (``output_dir``)::

    config.yaml          the resolved config (reproduce the run from its own folder)
    data_report.json     what the data stage kept and dropped
    metrics.jsonl        loss, lr, grad norm, tokens/s per logging step and phase
    checkpoints/<phase>/ Trainer checkpoints, for --resume
    adapter-train/       the adapter after phase 1, Train (PEFT format)
    adapter-nudge/       the adapter after phase 2, Nudge
    adapter/             the final adapter (a copy of the last phase's)
    train_summary.json   rows, steps, tokens and minutes per phase (and, distilling, the
                         layer similarity student ↔ teacher before and after training)
    distill_balance.json distilling: the objective's balancing factors, measured at step 1
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from reasondistill.config import RunConfig, dump_config
from reasondistill.data.example import Example
from reasondistill.distill.projections import FILENAME as PROJECTIONS_FILE
from reasondistill.errors import ReasondistillError
from reasondistill.io import atomic_write_json, atomic_write_text
from reasondistill.train.phases import PhaseSettings, resolve_phase
from reasondistill.train.trainer import optimizer_steps

FINAL_ADAPTER = "adapter"
BALANCE_FILE = "distill_balance.json"  # the objective's balancing factors (distill.balance)


def phase_adapter(phase: str) -> str:
    """Directory of the adapter as it stood after ``phase`` (``adapter-train`` is phase 1's)."""
    return f"adapter-{phase}"


@dataclass
class PhasePlan:
    settings: PhaseSettings
    examples: list[Example]

    @property
    def name(self) -> str:
        return self.settings.name


def _state():
    """accelerate's process state. On a machine without CUDA it must be told so: a bare
    ``PartialState()`` under ``accelerate launch --multi_gpu`` on CPU sees one process."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def world_size() -> int:
    """Processes of this ``accelerate launch`` (1 for a plain run)."""
    return _state().num_processes


def is_main_process() -> bool:
    """Rank 0 of an ``accelerate launch`` (or a plain run) writes files and prints."""
    return _state().is_main_process


def close_distributed(*, wait: bool) -> None:
    """Tear the process group down, after waiting for every rank when ``wait``.

    A rank that exits while gloo's worker threads are alive aborts ("terminate called
    without an active exception"), which fails an ``accelerate launch`` run that trained fine.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def effective_batch(cfg: RunConfig) -> int:
    return cfg.train.per_device_batch_size * cfg.train.gradient_accumulation_steps * world_size()


def plan_phases(cfg: RunConfig, examples: list[Example]) -> list[PhasePlan]:
    """Which rows each phase trains on: all rows for a one-phase run, else the
    Train → Nudge split (hard rows in both, fresh easy rows reserved for the nudge)."""
    names = cfg.train.phases
    if "nudge" in names and "train" in names:
        from reasondistill.data.split import two_phase_split

        phase1, phase2 = two_phase_split(examples, cfg.train.hard_types, seed=cfg.train.seed)
        rows = {"train": phase1, "nudge": phase2}
    elif names == ["nudge"]:
        hard = set(cfg.train.hard_types)
        rows = {"nudge": [e for e in examples if e.type in hard]}
    else:
        rows = {name: examples for name in names}
    return [PhasePlan(resolve_phase(name, getattr(cfg.train, name)), rows[name]) for name in names]


def phase_table(cfg: RunConfig, phases: list[PhasePlan]) -> Table:
    from collections import Counter

    eff = effective_batch(cfg)
    table = Table(title=f"phases (effective batch {eff} = {cfg.train.per_device_batch_size} "
                        f"per device × {cfg.train.gradient_accumulation_steps} accumulation × "
                        f"{world_size()} processes)", title_justify="left")
    for column in ("phase", "rows", "types", "optimizer steps", "lr", "schedule", "warmup",
                   "clip", "NEFTune α"):
        table.add_column(column)
    for phase in phases:
        s = phase.settings
        types = Counter(e.type for e in phase.examples)
        table.add_row(
            phase.name, str(len(phase.examples)),
            ", ".join(f"{t} {n}" for t, n in sorted(types.items())),
            str(optimizer_steps(len(phase.examples), eff, s.num_train_epochs, s.max_steps)),
            f"{s.learning_rate:g}", s.lr_scheduler_type, str(s.warmup_steps),
            "off" if s.max_grad_norm <= 0 else f"{s.max_grad_norm:g}", f"{s.neftune_noise_alpha:g}",
        )
    return table


def use_packing(cfg: RunConfig, model) -> bool:
    """Packed rows where the model allows them and the packed attention passes its contract
    check (:mod:`reasondistill.speedups`); padded rows otherwise."""
    from reasondistill.speedups import usable
    from reasondistill.train.collate import supports_packing

    if cfg.train.packing == "auto":
        return supports_packing(model) and usable("packed_attention", model)
    if cfg.train.packing and not supports_packing(model):
        raise ReasondistillError(
            f"train.packing is true but {type(model).__name__} has state-space/recurrent "
            "layers that would carry state across packed sequences; use packing: auto")
    return bool(cfg.train.packing) and usable("packed_attention", model)


def _use_bf16(cfg: RunConfig) -> bool:
    from reasondistill.models import bf16_supported

    if cfg.train.bf16 == "auto":
        return bf16_supported()
    return bool(cfg.train.bf16)


def _training_args(cfg: RunConfig, phase: PhaseSettings, checkpoint_dir: Path, bf16: bool):
    from transformers import TrainingArguments

    # TensorBoard gets its own callback (tensorboard_callback), writing where a user looks
    report_to = [r for r in cfg.tracking.report_to if r not in ("none", "tensorboard")] or "none"
    return TrainingArguments(
        output_dir=str(checkpoint_dir),
        per_device_train_batch_size=cfg.train.per_device_batch_size,
        gradient_accumulation_steps=cfg.train.gradient_accumulation_steps,
        learning_rate=phase.learning_rate,
        lr_scheduler_type=phase.lr_scheduler_type,
        warmup_steps=phase.warmup_steps,
        max_grad_norm=phase.clip_norm,
        num_train_epochs=phase.num_train_epochs,
        max_steps=phase.max_steps or -1,
        adam_beta2=0.95,
        weight_decay=0.0,
        logging_steps=cfg.train.logging_steps,
        save_strategy="steps",
        save_steps=cfg.train.save_steps,
        save_total_limit=2,
        bf16=bf16,
        seed=cfg.train.seed,
        report_to=report_to,
        run_name=cfg.tracking.run_name or f"{Path(cfg.output_dir).name}-{phase.name}",
        remove_unused_columns=False,
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,
        use_cpu=not _cuda_available(),
        **_checkpointing_arg(TrainingArguments, cfg.train.gradient_checkpointing),
    )


def tensorboard_callback(cfg: RunConfig, phase: str):
    """TensorBoard events in ``<output_dir>/tensorboard/<phase>/`` (the Trainer's own default,
    ``checkpoints/<phase>/runs/<date>_<host>/``, is where nobody looks), or None."""
    if "tensorboard" not in cfg.tracking.report_to or not is_main_process():
        return None
    from torch.utils.tensorboard import SummaryWriter
    from transformers.integrations import TensorBoardCallback

    return TensorBoardCallback(SummaryWriter(log_dir=str(Path(cfg.output_dir) / "tensorboard" / phase)))


def _checkpointing_arg(arguments_class, enabled: bool) -> dict:
    """Activation checkpointing under the name this transformers reads (5.25 renamed
    ``gradient_checkpointing`` to ``activation_checkpointing`` and warns on the old one)."""
    import dataclasses

    names = {field.name for field in dataclasses.fields(arguments_class)}
    key = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    return {key: enabled}


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def latest_checkpoint(directory: Path, *, holding: str | None = None) -> str | None:
    """The Trainer's newest checkpoint in ``directory`` (``get_last_checkpoint``); with
    ``holding``, the newest one that also holds that file (a file our callback writes after
    the Trainer's own save, which a kill could have cut off)."""
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

    if not directory.is_dir():
        return None
    newest = get_last_checkpoint(str(directory))
    if newest is None or holding is None or (Path(newest) / holding).is_file():
        return newest
    steps = sorted((int(p.name.rsplit("-", 1)[1]), p) for p in directory.glob(
        f"{PREFIX_CHECKPOINT_DIR}-*") if p.name.rsplit("-", 1)[1].isdigit())
    complete = [p for _, p in steps if (p / holding).is_file()]
    return str(complete[-1]) if complete else None


def save_adapter(model, target: Path) -> None:
    """Write the adapter into a temp dir, then swap it in, so a crash never leaves half."""
    from reasondistill.distill.projections import attached

    temp = target.with_name(target.name + ".tmp")
    shutil.rmtree(temp, ignore_errors=True)
    # only the student's adapter (a self-teacher's adapter is loaded beside it)
    model.save_pretrained(str(temp), selected_adapters=[model.active_adapter])
    projections = attached(model)
    if projections is not None:
        projections.save(temp)
    shutil.rmtree(target, ignore_errors=True)
    temp.rename(target)


def load_adapter_weights(model, adapter_dir: Path) -> None:
    from peft import load_peft_weights, set_peft_model_state_dict

    set_peft_model_state_dict(model, load_peft_weights(str(adapter_dir), device="cpu"))


def run_phase(cfg: RunConfig, model, tokenizer, phase: PhasePlan, rows_by_id: dict,
              *, resume: bool, bf16: bool, console: Console, callbacks=(),
              distillation=None) -> dict:
    from reasondistill.data.sampling import OrderedSampler
    from reasondistill.train.callbacks import MetricsJsonl, SaveBalance, SaveProjections
    from reasondistill.train.collate import DistillCollator, PackedCollator, PaddedCollator
    from reasondistill.train.trainer import DistillTrainer

    run_dir = Path(cfg.output_dir)
    index_of = {row_id: i for i, row_id in enumerate(rows_by_id)} if distillation else {}
    if distillation:  # rows the teacher side could not align were dropped and counted
        kept = set(distillation.kept)
        phase = PhasePlan(phase.settings, [e for e in phase.examples if index_of[e.id] in kept])
    dataset = [{"input_ids": rows_by_id[e.id].input_ids, "labels": rows_by_id[e.id].labels,
                **({"row": index_of[e.id]} if distillation else {})}
               for e in phase.examples]
    packed = use_packing(cfg, model)
    lengths = [len(row["input_ids"]) for row in dataset]
    sampler = OrderedSampler([e.type for e in phase.examples], effective_batch(cfg),
                             seed=cfg.train.seed, stratify=cfg.train.stratify,
                             lengths=lengths if cfg.train.largest_batch_first else None,
                             micro_batch_size=cfg.train.per_device_batch_size,
                             padded=not packed)
    collator = PackedCollator() if packed else PaddedCollator(tokenizer.pad_token_id)
    if distillation:
        collator = DistillCollator(collator, distillation.alignments, distillation.teacher_rows)
    checkpoint_dir = run_dir / "checkpoints" / phase.name
    trainer = DistillTrainer(
        model=model, args=_training_args(cfg, phase.settings, checkpoint_dir, bf16),
        train_dataset=dataset, data_collator=collator, processing_class=tokenizer,
        sampler=sampler, neftune_alpha=phase.settings.neftune_noise_alpha,
        objective=distillation.objective if distillation else None,
        teacher=distillation.teacher if distillation else None,
    )
    trainer.add_callback(MetricsJsonl(run_dir / "metrics.jsonl", phase.name, trainer))
    tensorboard = tensorboard_callback(cfg, phase.name)
    if tensorboard is not None:
        trainer.add_callback(tensorboard)
    if distillation and distillation.projections.learned:
        trainer.add_callback(SaveProjections(distillation.projections))
    if distillation and distillation.objective.balance == "initial":
        trainer.add_callback(SaveBalance(distillation.objective, run_dir / BALANCE_FILE))
    for callback in callbacks:
        trainer.add_callback(callback)
    learned = distillation is not None and distillation.projections.learned
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


def run_training(cfg: RunConfig, *, resume: bool = False, dry_run: bool = False,
                 console: Console | None = None, callbacks=()) -> dict | None:
    """Run (or with ``dry_run`` only plan) the whole recipe; returns the train summary.

    ``callbacks`` are extra ``TrainerCallback``s added to every phase. A phase stopped
    before its last step (a callback, a signal) leaves its checkpoints and no adapter;
    ``resume=True`` continues it.
    """
    from reasondistill.lora import apply_lora, plan_lora_targets, render_coverage_table
    from reasondistill.models import build_meta_model, load_model, load_tokenizer
    from reasondistill.prepare import prepare_data
    from reasondistill.reporting import print_data_report

    console = console or Console()
    main = is_main_process()
    if not main:
        console = Console(quiet=True)
    run_dir = Path(cfg.output_dir)
    tokenizer = load_tokenizer(cfg.model.name, trust_remote_code=cfg.model.trust_remote_code)
    prepared = prepare_data(cfg.data, cfg.format, tokenizer)
    print_data_report(prepared.report, console)
    if not prepared.examples:
        raise ReasondistillError("no training rows left after the data stage (see drops above)")
    phases = plan_phases(cfg, prepared.examples)
    console.print(phase_table(cfg, phases))
    if dry_run:
        plan = plan_lora_targets(build_meta_model(cfg.model), cfg.lora.families,
                                 cfg.lora.target_modules, rank=cfg.lora.r)
        console.print(render_coverage_table(plan), soft_wrap=True, markup=False, highlight=False)
        if cfg.distill.enabled:  # layer map, projections, aligned tokens, cache size
            from reasondistill.distill.report import print_dry_run_plan

            print_dry_run_plan(cfg, prepared, tokenizer, console)
        return None

    if not resume and (run_dir / FINAL_ADAPTER).exists():
        raise ReasondistillError(f"{run_dir} already holds a finished run; pass --resume to "
                                 "continue it or choose another output_dir")
    cached_teacher = None
    if cfg.distill.enabled and cfg.distill.teacher.cache:  # checked before any weights load
        from reasondistill.distill.cache import open_for_run

        cached_teacher = open_for_run(cfg, prepared, tokenizer, console)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.yaml", dump_config(cfg))
        atomic_write_json(run_dir / "data_report.json", prepared.report)
        if not resume:  # a fresh run: nothing of an earlier, unfinished one is reused
            for stale in ("metrics.jsonl", BALANCE_FILE):
                (run_dir / stale).unlink(missing_ok=True)

    bf16 = _use_bf16(cfg)
    model, tokenizer = load_model(cfg.model, dtype="bfloat16" if bf16 else "float32")
    from transformers import set_seed

    set_seed(cfg.train.seed)  # the LoRA init is random: same seed, same adapter
    model, plan = apply_lora(model, cfg.lora)
    console.print(render_coverage_table(plan), soft_wrap=True, markup=False, highlight=False)
    rows_by_id = {e.id: row for e, row in zip(prepared.examples, prepared.tokenized.rows)}
    distillation = None
    if cfg.distill.enabled:
        from reasondistill.distill.report import print_distillation_plan
        from reasondistill.distill.setup import prepare_distillation

        distillation = prepare_distillation(cfg.distill, cfg.format, model, tokenizer, prepared,
                                            teacher_source=cached_teacher)
        print_distillation_plan(distillation, console)
        if resume and (run_dir / BALANCE_FILE).is_file():  # the factors of the first step
            distillation.objective.scales.update(json.loads((run_dir / BALANCE_FILE).read_text()))
        if main:
            atomic_write_json(run_dir / "distill_plan.json", distillation.summary())
    similarity = {}
    if distillation and main:  # layer similarity student ↔ teacher (distill/similarity.py)
        from reasondistill.distill.similarity import record_similarity, similarity_rows

        held_out = similarity_rows(cfg, prepared, tokenizer, distillation)
        measured = dict(cfg=cfg, model=model, tokenizer=tokenizer, prepared=prepared,
                        distillation=distillation, held_out=held_out,
                        packed=use_packing(cfg, model), console=console)
        similarity["before"] = record_similarity(**measured, when="before",
                                                 phase=phases[0].name, reuse=resume)
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
        summary = run_phase(cfg, model, tokenizer, phase, rows_by_id, resume=resume,
                            bf16=bf16, console=console, callbacks=callbacks,
                            distillation=distillation)
        summaries.append(summary)
        if not summary["completed"]:
            console.print(f"[yellow]phase {phase.name} stopped at step {summary['steps']}[/]; "
                          "rerun with --resume to continue")
            return {"phases": summaries, "interrupted": True}
        if main:
            save_adapter(model, done)
    summary = {"phases": summaries, "bf16": bf16, "effective_batch": effective_batch(cfg),
               "train_minutes": round(sum(s["minutes"] for s in summaries), 3)}
    if distillation and distillation.objective.scales:
        summary["balance"] = dict(distillation.objective.scales)
    if similarity.get("before") is not None:
        similarity["after"] = record_similarity(**measured, when="after", phase=phases[-1].name)
        summary["similarity"] = similarity
    if main:
        save_adapter(model, run_dir / FINAL_ADAPTER)
        atomic_write_json(run_dir / "train_summary.json", summary)
    console.print(f"[bold green]done[/]: adapter in {run_dir / FINAL_ADAPTER}")
    return summary
