"""From the ``train`` and ``tracking`` sections to the Trainer's ``TrainingArguments`` and
callbacks: precision, batch, schedule, checkpoints, where logs go."""

from __future__ import annotations

from pathlib import Path

from reasondistill.train.phases import PhaseSettings


def use_bf16(train_cfg) -> bool:
    """``train.bf16``; ``auto`` = bf16 only where this machine runs it natively."""
    from reasondistill.models import bf16_supported

    if train_cfg.bf16 == "auto":
        return bf16_supported()
    return bool(train_cfg.bf16)


def training_arguments(train_cfg, tracking_cfg, phase: PhaseSettings, checkpoint_dir: Path,
                       *, bf16: bool, run_name: str):
    from transformers import TrainingArguments

    # TensorBoard gets its own callback (tensorboard_callback), writing where a user looks
    report_to = [r for r in tracking_cfg.report_to if r not in ("none", "tensorboard")] or "none"
    return TrainingArguments(
        output_dir=str(checkpoint_dir),
        per_device_train_batch_size=train_cfg.per_device_batch_size,
        gradient_accumulation_steps=train_cfg.gradient_accumulation_steps,
        learning_rate=phase.learning_rate,
        lr_scheduler_type=phase.lr_scheduler_type,
        warmup_steps=phase.warmup_steps,
        max_grad_norm=phase.clip_norm,
        num_train_epochs=phase.num_train_epochs,
        max_steps=phase.max_steps or -1,
        adam_beta2=0.95,
        weight_decay=0.0,
        logging_steps=train_cfg.logging_steps,
        save_strategy="steps",
        save_steps=train_cfg.save_steps,
        save_total_limit=2,
        bf16=bf16,
        seed=train_cfg.seed,
        report_to=report_to,
        run_name=tracking_cfg.run_name or f"{run_name}-{phase.name}",
        remove_unused_columns=False,
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,
        use_cpu=not _cuda_available(),
        **_checkpointing_arg(TrainingArguments, train_cfg.gradient_checkpointing),
    )


def tensorboard_callback(tracking_cfg, output_dir: Path, phase: str, *, main_process: bool):
    """TensorBoard events in ``<output_dir>/tensorboard/<phase>/`` (the Trainer's own default,
    ``checkpoints/<phase>/runs/<date>_<host>/``, is where nobody looks), or None."""
    if "tensorboard" not in tracking_cfg.report_to or not main_process:
        return None
    from torch.utils.tensorboard import SummaryWriter
    from transformers.integrations import TensorBoardCallback

    return TensorBoardCallback(SummaryWriter(log_dir=str(Path(output_dir) / "tensorboard" / phase)))


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
