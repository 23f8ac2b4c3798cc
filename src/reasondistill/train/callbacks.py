"""``metrics.jsonl``: one JSON line per logging step, the record ``report`` plots from."""

from __future__ import annotations

import json
import time
from pathlib import Path

from transformers import TrainerCallback

from reasondistill.io import append_json_line, atomic_write_text, read_records


class MetricsJsonl(TrainerCallback):
    """Appends loss, lr, grad norm and tokens/s per logging step, tagged with the phase.

    Lines are appended whole and fsync'd; a reader skips a torn last line after a crash. A
    resumed phase first drops what was logged after its checkpoint (the steps it is about to
    redo), so the file has each step once and no gaps however often the run was killed.
    """

    def __init__(self, path: Path, phase: str, trainer) -> None:
        self.path, self.phase, self.trainer = Path(path), phase, trainer
        self._last_time = None
        self._last_tokens = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self._last_time = time.perf_counter()
        self._last_tokens = self.trainer.tokens_seen
        if state.is_world_process_zero and self.path.is_file():
            self.forget_after(state.global_step)

    def forget_after(self, step: int) -> None:
        """Rewrite the file without this phase's records past ``step``, its end-of-phase
        record (the resumed phase writes its own) and a torn last line."""
        records = read_records(self.path)
        kept = [r for r in records if r.get("phase") != self.phase or "train_runtime" not in r
                and r.get("step", 0) <= step]
        if len(kept) != len(records) or not self.path.read_bytes().endswith(b"\n"):
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        now = time.perf_counter()
        world = max(1, args.world_size)
        tokens = self.trainer.tokens_seen
        elapsed = max(now - (self._last_time or now), 1e-9)
        record = {"phase": self.phase, "step": state.global_step,
                  "epoch": round(state.epoch or 0.0, 4)}
        for key, value in logs.items():  # the objective's terms: loss_<term>, share_<term>
            if key in ("loss", "learning_rate", "grad_norm", "train_loss", "train_runtime") or (
                    key.startswith(("loss_", "share_", "scale_"))):
                record[key] = float(value)
        record["tokens_per_s"] = round((tokens - self._last_tokens) * world / elapsed, 1)
        record["tokens_seen"] = tokens * world
        self._last_time, self._last_tokens = now, tokens
        append_json_line(self.path, record)


class SaveProjections(TrainerCallback):
    """Writes the latent loss's learned projections into each Trainer checkpoint, so
    ``--resume`` restores them with the adapter and the optimizer state."""

    def __init__(self, projections) -> None:
        self.projections = projections

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

            self.projections.save(Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")


class SaveBalance(TrainerCallback):
    """Writes the objective's balancing factors (``distill.balance: initial``) into the run
    directory once they are measured, so a resumed run and later phases use the same."""

    def __init__(self, objective, path: Path) -> None:
        self.objective, self.path = objective, Path(path)

    def on_step_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero and self.objective.scales and not self.path.exists():
            from reasondistill.io import atomic_write_json

            atomic_write_json(self.path, self.objective.scales)
