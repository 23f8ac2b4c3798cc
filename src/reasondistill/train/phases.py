"""The Train → Nudge phases: their presets, which rows each trains on, and their plan.

Phase 1 (**train**) is a fast, broad pass: lr 2e-4, linear decay, no warm-up, clipping off,
NEFTune α 5. Phase 2 (**nudge**) is a small continuation on the hard types plus fresh easy
rows: lr 5e-6, cosine, 10 warm-up steps, clipping at 1.0. Any key can be overridden per
phase in the config (``train.nudge.learning_rate: 1e-5``).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, fields, replace

from rich.table import Table

from reasondistill.config import PhaseConfig
from reasondistill.data.example import Example

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


@dataclass
class PhasePlan:
    settings: PhaseSettings
    examples: list[Example]

    @property
    def name(self) -> str:
        return self.settings.name


def effective_batch(train_cfg, processes: int) -> int:
    """Rows per optimizer step: per device × accumulation × processes."""
    return train_cfg.per_device_batch_size * train_cfg.gradient_accumulation_steps * processes


def plan_phases(train_cfg, examples: list[Example]) -> list[PhasePlan]:
    """Which rows each phase trains on: all rows for a one-phase run, else the
    Train → Nudge split (hard rows in both, fresh easy rows reserved for the nudge)."""
    names = train_cfg.phases
    if "nudge" in names and "train" in names:
        from reasondistill.data.split import two_phase_split

        phase1, phase2 = two_phase_split(examples, train_cfg.hard_types, seed=train_cfg.seed)
        rows = {"train": phase1, "nudge": phase2}
    elif names == ["nudge"]:
        hard = set(train_cfg.hard_types)
        rows = {"nudge": [e for e in examples if e.type in hard]}
    else:
        rows = {name: examples for name in names}
    return [PhasePlan(resolve_phase(name, getattr(train_cfg, name)), rows[name])
            for name in names]


def phase_table(train_cfg, phases: list[PhasePlan], processes: int) -> Table:
    eff = effective_batch(train_cfg, processes)
    table = Table(title=f"phases (effective batch {eff} = {train_cfg.per_device_batch_size} "
                        f"per device × {train_cfg.gradient_accumulation_steps} accumulation × "
                        f"{processes} processes)", title_justify="left")
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


def optimizer_steps(n_rows: int, effective_batch: int, epochs: float,
                    max_steps: int | None) -> int:
    """Optimizer steps the Trainer will take (for ``--dry-run`` and schedules)."""
    if max_steps:
        return max_steps
    return math.ceil(math.ceil(n_rows / effective_batch) * epochs)
