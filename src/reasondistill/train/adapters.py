"""The adapter files of a run directory: where each phase's adapter lives, how it is saved
(atomically, the student's alone, its latent projections beside it), loaded back, and which
Trainer checkpoint a ``--resume`` continues from."""

from __future__ import annotations

import shutil
from pathlib import Path

FINAL_ADAPTER = "adapter"


def phase_adapter(phase: str) -> str:
    """Directory of the adapter as it stood after ``phase`` (``adapter-train`` is phase 1's)."""
    return f"adapter-{phase}"


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
    """A saved adapter's weights into ``model``'s active adapter (PEFT's own loaders)."""
    from peft import load_peft_weights, set_peft_model_state_dict

    set_peft_model_state_dict(model, load_peft_weights(str(adapter_dir), device="cpu"))
