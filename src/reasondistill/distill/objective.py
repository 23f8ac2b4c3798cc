"""The training objective: ``L = (1−α)·L_task + α·L_hidden + β·L_kd``, and its per-term metrics.

Trace distillation alone is the case α = β = 0 (the cross-entropy with weight 1). Each term
comes from the registry in :mod:`.losses`; the objective only weights and sums them and
reports, per term, its value and its share of the total — the number that shows whether
mixing by a ratio does anything (a term 1000× smaller than the other would show a share near
0; with ``normalize: layernorm`` the hidden term is O(1), like the cross-entropy).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from reasondistill.distill.losses import TERMS, StepTensors


@dataclass(frozen=True)
class Objective:
    weights: tuple[tuple[str, float], ...]  # (term name, weight), weight > 0
    options: dict

    @classmethod
    def from_config(cls, distill_cfg) -> Objective:
        """The objective a run's ``distill`` section describes (plain CE when it is off)."""
        if not distill_cfg.enabled:
            return cls((("ce", 1.0),), {})
        weights = [("ce", 1.0 - distill_cfg.alpha), ("hidden", distill_cfg.alpha),
                   ("kd", distill_cfg.beta)]
        options = {"normalize": distill_cfg.normalize, "distance": distill_cfg.distance,
                   "kd": distill_cfg.kd.model_dump()}
        return cls(tuple((n, float(w)) for n, w in weights if w > 0), options)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.weights]

    def needs(self, field_name: str) -> bool:
        """Whether any active term reads ``StepTensors.<field_name>``."""
        return any(field_name in TERMS[name].needs for name in self.names)

    def __call__(self, step: StepTensors) -> tuple[torch.Tensor, dict[str, float]]:
        step.options = self.options
        values = {name: TERMS[name].compute(step) for name in self.names}
        total = sum(weight * values[name] for name, weight in self.weights)
        return total, {name: float(value.detach()) for name, value in values.items()}

    def log_record(self, values: dict[str, float]) -> dict[str, float]:
        """``loss_<term>`` (unweighted) and ``share_<term>`` (weighted, over the total) for
        averaged term values; no shares for a one-term objective."""
        record = {f"loss_{name}": value for name, value in values.items()}
        if len(self.weights) > 1:
            weighted = {name: weight * values.get(name, 0.0) for name, weight in self.weights}
            total = sum(abs(v) for v in weighted.values()) or 1.0
            record.update({f"share_{name}": round(abs(v) / total, 4)
                           for name, v in weighted.items()})
        return record
