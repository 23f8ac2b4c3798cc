"""Which process this is in an ``accelerate launch`` (or a plain run), which engines a run
may use, and the clean exit.

Only rank 0 writes files and prints; every rank trains. Which process this is comes from
accelerate's ``PartialState`` rather than environment variables we would parse ourselves;
the engine check reads what ``accelerate launch`` tells its processes, because it must run
before any weights load (accelerate's own state knows the engine only once a Trainer built it).

Engines: DDP (tested on CPU with gloo) and DeepSpeed ZeRO-1/2 (untested here: no GPU) keep
every parameter whole on each device. FSDP and DeepSpeed ZeRO-3 shard them, and are refused:
a phase's adapter is saved by rank 0 from its own copy of the model, which under sharding
holds only its piece of each LoRA weight (PEFT warns of exactly this), and an online teacher
(``distill.teacher.kind: model``) is loaded outside the engine, unsharded, and under FSDP's
``cpu_ram_efficient_loading`` without its weights on ranks > 0.
"""

from __future__ import annotations

import json
import os

SHARDING_REFUSED = (
    "{engine} shards the model's parameters across processes, which `reasondistill train` "
    "does not support: each phase's adapter is saved by rank 0 from its own copy of the "
    "model, which would hold only its shard of each LoRA weight, and a distill teacher of "
    "kind `model` would be loaded whole and unsharded on every rank (under FSDP's "
    "cpu_ram_efficient_loading, without its weights on ranks > 0). Launch with DDP "
    "(examples/accelerate/ddp.yaml) or DeepSpeed ZeRO-2 (examples/accelerate/"
    "deepspeed-zero2.yaml) instead: LoRA keeps the frozen base whole on each GPU, so a "
    "model that trains on one GPU trains on each. ({keys})"
)


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


def launch_engine() -> tuple[str, str] | None:
    """``(engine, keys)`` when ``accelerate launch`` started this process with an engine that
    shards parameters (FSDP, any version; DeepSpeed ZeRO stage 3), else None. ``keys`` names
    the launch settings that chose it."""
    from accelerate.utils import parse_flag_from_env

    if parse_flag_from_env("ACCELERATE_USE_FSDP"):
        return "FSDP", "accelerate config: distributed_type FSDP (ACCELERATE_USE_FSDP=true)"
    if not parse_flag_from_env("ACCELERATE_USE_DEEPSPEED"):
        return None
    stage, source = os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE"), "zero_stage"
    config_file = os.environ.get("ACCELERATE_DEEPSPEED_CONFIG_FILE")
    if config_file and config_file.lower() != "none":
        try:
            with open(config_file, encoding="utf-8") as handle:
                stage = json.load(handle).get("zero_optimization", {}).get("stage", stage)
            source = f"zero_optimization.stage in {config_file}"
        except (OSError, ValueError, AttributeError):
            pass  # accelerate reports an unreadable DeepSpeed config itself
    if str(stage) == "3":
        return "DeepSpeed ZeRO-3", f"accelerate config: {source} 3"
    return None


def refuse_sharded_parameters(engine: tuple[str, str] | None) -> None:
    """Raise a ReasondistillError naming ``engine`` (from :func:`launch_engine`, or the
    Trainer's own view of its accelerator) and the launch keys that chose it."""
    if engine is not None:
        from reasondistill.errors import ReasondistillError

        name, keys = engine
        raise ReasondistillError(SHARDING_REFUSED.format(engine=name, keys=keys))
