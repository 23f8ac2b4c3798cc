"""The adapter files of a run directory: where each phase's adapter lives, how it is saved
(atomically, the student's alone, its latent projections beside it), loaded back, and which
Trainer checkpoint a ``--resume`` continues from."""

from __future__ import annotations

import shutil
from pathlib import Path

FINAL_ADAPTER = "adapter"
TRAINER_STATE = "trainer_state.json"  # the file the Trainer writes last into a checkpoint


def phase_adapter(phase: str) -> str:
    """Directory of the adapter as it stood after ``phase`` (``adapter-train`` is phase 1's)."""
    return f"adapter-{phase}"


def latest_checkpoint(directory: Path, *, holding: str | None = None) -> str | None:
    """The newest *complete* Trainer checkpoint in ``directory``, or None.

    The Trainer writes a checkpoint in place, file by file, and ``trainer_state.json`` last;
    ``get_last_checkpoint`` returns the newest folder whatever it holds, and resuming from a
    folder without that state silently restarts the schedule on its weights. So a kill during
    a save must make us fall back one checkpoint: complete means ``trainer_state.json`` parses
    and, with ``holding``, that file (one our callback writes after the Trainer's save) exists.
    """
    import json

    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    def complete(folder: Path) -> bool:
        try:
            json.loads((folder / TRAINER_STATE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return holding is None or (folder / holding).is_file()

    if not directory.is_dir():
        return None
    steps = sorted((int(p.name.rsplit("-", 1)[1]), p) for p in directory.glob(
        f"{PREFIX_CHECKPOINT_DIR}-*") if p.is_dir() and p.name.rsplit("-", 1)[1].isdigit())
    done = [p for _, p in steps if complete(p)]
    return str(done[-1]) if done else None


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
