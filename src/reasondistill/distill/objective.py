"""The training objective: ``L = (1−α)·L_task + α·c_h·L_hidden + β·c_kd·L_kd``, and its
per-term metrics.

Trace distillation alone is the case α = β = 0 (the cross-entropy with weight 1). Each term
comes from the registry in :mod:`.losses`; the objective only weights and sums them and
reports, per term, its value and its share of the total — the number that shows whether
mixing by a ratio does anything.

Mixing by a ratio does nothing when the terms live on different scales: a student already
close to its teacher has a hidden-state distance 100-1000× below its cross-entropy, and at
α = 0.1 that term would be a rounding error of the loss. With ``balance: initial`` (the
default) each extra term gets a constant factor ``c = L_task / L_term`` measured once, on the
first micro-batch, and kept for the whole run (saved in the run directory, so ``--resume``
uses the same one): at the start α and β are then the terms' shares of the loss, and the
logs show how the shares move as training goes on (``share_<term>``, ``scale_<term>``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from reasondistill.distill.losses import TERMS, StepTensors


@dataclass
class Objective:
    weights: tuple[tuple[str, float], ...]  # (term name, weight), weight > 0
    options: dict
    balance: str = "none"  # "initial": rescale the extra terms once (see the module doc)
    scales: dict[str, float] = field(default_factory=dict)  # term → constant factor

    @classmethod
    def from_config(cls, distill_cfg) -> Objective:
        """The objective a run's ``distill`` section describes (plain CE when it is off)."""
        if not distill_cfg.enabled:
            return cls((("ce", 1.0),), {})
        weights = [("ce", 1.0 - distill_cfg.alpha), ("hidden", distill_cfg.alpha),
                   ("kd", distill_cfg.beta)]
        options = {"normalize": distill_cfg.normalize, "distance": distill_cfg.distance,
                   "kd": distill_cfg.kd.model_dump()}
        return cls(tuple((n, float(w)) for n, w in weights if w > 0), options,
                   balance=distill_cfg.balance)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.weights]

    def needs(self, field_name: str) -> bool:
        """Whether any active term reads ``StepTensors.<field_name>``."""
        return any(field_name in TERMS[name].needs for name in self.names)

    @property
    def reads_teacher(self) -> bool:
        """Whether any active term reads the teacher. At α = β = 0 (a sensitivity sweep's
        baseline point) none does, and the teacher's forward pass is skipped."""
        return self.needs("teacher_aligned") or self.needs("teacher_final")

    def __call__(self, step: StepTensors, *, agree_across_processes: Callable | None = None
                 ) -> tuple[torch.Tensor, dict[str, float]]:
        """The weighted sum and each term's unweighted value. In a distributed run,
        ``agree_across_processes`` makes the first micro-batch's values the same on every rank
        before the balancing factors are taken from them (the trainer passes rank 0's: the
        micro-batch one process with the same effective batch would measure), so every rank
        uses the same factors."""
        step.options = self.options
        values = {name: TERMS[name].compute(step) for name in self.names}
        if self.balance == "initial" and not self.scales and len(self.weights) > 1:
            self.scales.update(self.initial_scales(values, agree_across_processes))
        total = sum(weight * self.scale(name) * values[name] for name, weight in self.weights)
        return total, {name: float(value.detach()) for name, value in values.items()}

    def scale(self, name: str) -> float:
        return self.scales.get(name, 1.0)

    def initial_scales(self, values: dict[str, torch.Tensor],
                       agree_across_processes: Callable | None = None) -> dict[str, float]:
        """``L_task / L_term`` for each term but the task's (1 where either is ~0, or where
        there is no task term to measure against)."""
        names = list(values)
        measured = torch.stack([values[n].detach().float().reshape(()) for n in names])
        if agree_across_processes is not None:
            measured = agree_across_processes(measured)
        measured = dict(zip(names, measured.tolist()))
        task = measured.get("ce", 0.0)
        return {name: (task / value if task > 1e-8 and value > 1e-12 else 1.0)
                for name, value in measured.items() if name != "ce"}

    def log_record(self, values: dict[str, float]) -> dict[str, float]:
        """``loss_<term>`` (unweighted), ``share_<term>`` (weighted and balanced, over the
        total) for averaged term values and ``scale_<term>`` (the balancing factor); no
        shares for a one-term objective."""
        record = {f"loss_{name}": value for name, value in values.items()}
        if len(self.weights) > 1:
            weighted = {name: weight * self.scale(name) * values.get(name, 0.0)
                        for name, weight in self.weights}
            total = sum(abs(v) for v in weighted.values()) or 1.0
            record.update({f"share_{name}": round(abs(v) / total, 4)
                           for name, v in weighted.items()})
            record.update({f"scale_{name}": round(factor, 6)
                           for name, factor in self.scales.items()})
        return record
