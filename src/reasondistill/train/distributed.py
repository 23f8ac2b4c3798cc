"""Which process this is in an ``accelerate launch`` (or a plain run), and the clean exit.

Only rank 0 writes files and prints; every rank trains. The answers come from accelerate's
``PartialState`` rather than environment variables we would parse ourselves.
"""

from __future__ import annotations


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
