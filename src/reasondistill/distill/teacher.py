"""The teacher side of a step: one interface, ``signal(batch)``, for every kind of teacher.

- :class:`SelfTeacher` — the student's own base with a trained adapter (e.g. the demo's
  ``runs/demo/adapter``) loaded as a second PEFT adapter on the *same* model: no second copy
  of the base weights. Its forward switches that adapter on, runs under ``no_grad`` with
  NEFTune off, and switches the student's adapter back; the student's gradients cannot reach
  it (a frozen, inactive adapter takes no part in the student's forward).
- :class:`ModelTeacher` — another model, frozen and in eval mode, in the dtype the machine
  runs fast. With the same tokenizer it can read the student's own tokens; with another
  tokenizer only ``answer_anchor`` pairs it (by the answer text).
- :class:`~reasondistill.distill.cache.CachedTeacher` — the same signal read from disk.

A signal is what the losses read: per layer pair the teacher's pooled states at the aligned
groups (:mod:`.positions`), and for logit KD its final states at the supervised positions.
One teacher forward per step and nothing more.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from reasondistill.distill.layer_map import LayerMap

TEACHER_ADAPTER = "teacher"


@dataclass
class TeacherSignal:
    aligned: list[torch.Tensor]  # per layer pair, [groups, teacher hidden size]
    final: torch.Tensor | None = None  # [supervised positions, teacher hidden size] (KD)
    head_weight: torch.Tensor | None = None


def pool(hidden: torch.Tensor, positions: torch.Tensor, groups: torch.Tensor,
         n_groups: int) -> torch.Tensor:
    """Mean of ``hidden`` (``[batch, tokens, d]``, flattened) over each group's positions."""
    flat = hidden.reshape(-1, hidden.shape[-1])
    picked = flat.index_select(0, positions)
    if positions.numel() == n_groups:  # one position per group, in group order
        return picked
    sums = picked.new_zeros((n_groups, picked.shape[-1])).index_add_(0, groups, picked)
    counts = torch.bincount(groups, minlength=n_groups).clamp_min(1).to(sums.dtype)
    return sums / counts.unsqueeze(-1)


def teacher_inputs(batch: dict) -> dict:
    """The model inputs the teacher reads: its own rows (``teacher_*``) or the student's."""
    own = {key.removeprefix("teacher_"): value for key, value in batch.items()
           if key.startswith("teacher_") and key != "teacher_sequence_lengths"}
    if own:
        return own
    return {key: batch[key] for key in ("input_ids", "position_ids", "attention_mask")
            if key in batch}


class OnlineTeacher:
    """A teacher that runs a forward each step (see the subclasses)."""

    def __init__(self, model, layer_map: LayerMap):
        self.model = model
        self.layer_map = layer_map

    @property
    def config(self):
        return self.model.config

    @property
    def hidden_size(self) -> int:
        return int(self.config.get_text_config().hidden_size)

    def active(self):
        return contextlib.nullcontext()

    def head_weight(self) -> torch.Tensor:
        return self.model.get_output_embeddings().weight

    @torch.no_grad()
    def signal(self, batch: dict, *, final_positions: torch.Tensor | None = None) -> TeacherSignal:
        """The teacher's states for ``batch``; ``final_positions`` (flat indices into the
        teacher's tokens) asks for its final states there, for logit KD."""
        from reasondistill.train.packing import packed_forward

        inputs = teacher_inputs(batch)
        lengths = batch.get("teacher_sequence_lengths")
        packed = (packed_forward(lengths.tolist()) if lengths is not None
                  else contextlib.nullcontext())
        with self.active(), packed:
            outputs = self.model(**inputs, output_hidden_states=True, use_cache=False,
                                 logits_to_keep=1)
        states = outputs.hidden_states
        groups = int(batch["align_groups"])
        aligned = [pool(states[t], batch["align_teacher_positions"],
                        batch["align_teacher_groups"], groups)
                   for t in self.layer_map.teacher_layers]
        final = None
        if final_positions is not None:
            final = states[-1].reshape(-1, states[-1].shape[-1]).index_select(0, final_positions)
        return TeacherSignal(aligned, final, self.head_weight() if final is not None else None)


class SelfTeacher(OnlineTeacher):
    """The student's base with the teacher adapter switched on (the CPU default)."""

    def __init__(self, peft_model, layer_map: LayerMap, adapter_dir: str):
        from reasondistill.export import loading_adapter

        super().__init__(peft_model, layer_map)
        with loading_adapter(adapter_dir):
            peft_model.load_adapter(str(adapter_dir), adapter_name=TEACHER_ADAPTER,
                                    is_trainable=False)
        self.student_adapter = peft_model.active_adapter
        # the teacher adapter's own LoRA dropout (if it was trained with one) stays off: the
        # model is in training mode for the student, but the teacher's signal is deterministic
        self._teacher_dropouts = [module.lora_dropout[TEACHER_ADAPTER]
                                  for module in peft_model.modules()
                                  if TEACHER_ADAPTER in getattr(module, "lora_dropout", {})]

    @contextlib.contextmanager
    def active(self):
        model = self.model
        for dropout in self._teacher_dropouts:
            dropout.eval()
        model.set_adapter(TEACHER_ADAPTER, inference_mode=True)
        try:
            yield
        finally:
            model.set_adapter(self.student_adapter)


class ModelTeacher(OnlineTeacher):
    """Another model, frozen, in eval mode."""

    def __init__(self, model, layer_map: LayerMap):
        from reasondistill.train.collate import supports_packing
        from reasondistill.train.packing import PACKED_ATTENTION

        model.eval()
        model.requires_grad_(False)
        super().__init__(model, layer_map)
        # it reads packed rows when the student trains packed: attention per sequence there
        # (outside a packed forward the packed implementation is plain SDPA)
        self.packs = supports_packing(model)
        if self.packs:
            model.set_attn_implementation(PACKED_ATTENTION)

    def signal(self, batch: dict, **kwargs) -> TeacherSignal:
        from reasondistill.errors import ReasondistillError
        from reasondistill.train.packing import packing_active

        if not self.packs and packing_active():
            raise ReasondistillError(
                f"the teacher ({type(self.model).__name__}) has state-space or recurrent "
                "layers and cannot read packed rows; set train.packing: false")
        return super().signal(batch, **kwargs)
