"""Learned student → teacher maps, one per layer pair, where the hidden sizes differ.

They train with the adapter (they are registered on the PEFT model, so the Trainer's optimizer
and DDP see them), are checkpointed beside the Trainer's checkpoints for ``--resume``, and are
saved as ``projections.safetensors`` beside the final adapter — where PEFT loading and export
ignore them: they serve the loss only.
"""

from __future__ import annotations

from pathlib import Path

import torch

FILENAME = "projections.safetensors"
ATTRIBUTE = "reasondistill_projections"


class Projections(torch.nn.Module):
    """``maps[i]`` takes the student's state of pair ``i`` into the teacher's space."""

    def __init__(self, student_size: int, teacher_size: int, n_pairs: int, *, always: bool):
        super().__init__()
        self.learned = always or student_size != teacher_size
        self.shape = (student_size, teacher_size)
        self.maps = torch.nn.ModuleList(
            torch.nn.Linear(student_size, teacher_size, bias=False) if self.learned
            else torch.nn.Identity() for _ in range(n_pairs))
        if self.learned and student_size == teacher_size:
            for linear in self.maps:  # start from the identity, not from noise
                torch.nn.init.eye_(linear.weight)

    def forward(self, index: int, hidden: torch.Tensor) -> torch.Tensor:
        projection = self.maps[index]
        if isinstance(projection, torch.nn.Linear):
            return projection(hidden.to(projection.weight.dtype))
        return hidden

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def save(self, directory: Path) -> Path | None:
        """Write ``projections.safetensors`` into ``directory`` (temp file + rename)."""
        if not self.learned:
            return None
        from safetensors.torch import save_file

        directory.mkdir(parents=True, exist_ok=True)
        target = directory / FILENAME
        temp = target.with_name(target.name + ".tmp")
        save_file({k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()},
                  str(temp))
        temp.replace(target)
        return target

    def load(self, directory: Path) -> bool:
        """Load from ``directory`` when it holds a projections file; True when it did."""
        path = Path(directory) / FILENAME
        if not self.learned or not path.is_file():
            return False
        from safetensors.torch import load_file

        self.load_state_dict(load_file(str(path)))
        return True


def attach(model: torch.nn.Module, projections: Projections) -> None:
    """Register ``projections`` on ``model`` so they train, and sync under DDP, with it."""
    model.add_module(ATTRIBUTE, projections)


def attached(model: torch.nn.Module) -> Projections | None:
    return model._modules.get(ATTRIBUTE) if hasattr(model, "_modules") else None
