"""The Train → Nudge phase presets and how a phase becomes ``TrainingArguments``.

Phase 1 (**train**) is a fast, broad pass: lr 2e-4, linear decay, no warm-up, clipping off,
NEFTune α 5. Phase 2 (**nudge**) is a small continuation on the hard types plus fresh easy
rows: lr 5e-6, cosine, 10 warm-up steps, clipping at 1.0. Any key can be overridden per
phase in the config (``train.nudge.learning_rate: 1e-5``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from reasondistill.config import PhaseConfig

# Clipping "off" still measures the gradient norm (it is logged), so it is a huge bound
# rather than 0, which would skip the norm computation altogether.
CLIPPING_OFF = 1e9


@dataclass(frozen=True)
class PhaseSettings:
    name: str
    learning_rate: float
    lr_scheduler_type: str
    warmup_steps: int
    max_grad_norm: float  # 0 in config = off
    neftune_noise_alpha: float
    num_train_epochs: float = 1.0
    max_steps: int | None = None

    @property
    def clip_norm(self) -> float:
        return self.max_grad_norm if self.max_grad_norm > 0 else CLIPPING_OFF


PRESETS = {
    "train": PhaseSettings("train", 2e-4, "linear", 0, 0.0, 5.0),
    "nudge": PhaseSettings("nudge", 5e-6, "cosine", 10, 1.0, 5.0),
}


def resolve_phase(name: str, overrides: PhaseConfig) -> PhaseSettings:
    """The preset for ``name`` with every key the user set in the config replaced."""
    preset = PRESETS[name]
    changes = {f.name: getattr(overrides, f.name) for f in fields(PhaseSettings)
               if f.name != "name" and getattr(overrides, f.name, None) is not None}
    return replace(preset, **changes)
