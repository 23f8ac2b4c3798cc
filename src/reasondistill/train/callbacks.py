"""``metrics.jsonl``: one JSON line per logging step, the record ``report`` plots from."""

from __future__ import annotations

import json
import time
from pathlib import Path

from transformers import TrainerCallback


class MetricsJsonl(TrainerCallback):
    """Appends loss, lr, grad norm and tokens/s per logging step, tagged with the phase.

    Lines are appended whole and flushed; a reader skips a torn last line after a crash.
    """

    def __init__(self, path: Path, phase: str, trainer) -> None:
        self.path, self.phase, self.trainer = Path(path), phase, trainer
        self._last_time = None
        self._last_tokens = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self._last_time = time.perf_counter()
        self._last_tokens = self.trainer.tokens_seen

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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()


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
