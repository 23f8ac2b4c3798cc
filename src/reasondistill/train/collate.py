"""Turning tokenized rows into model inputs with no compute spent on padding.

:class:`PackedCollator` concatenates a micro-batch into one row, restarts ``position_ids`` at
each sequence and lists the sequence lengths, which the packed attention
(:mod:`reasondistill.train.packing`) uses to attend within each sequence only. Models whose
layers carry state across positions (Mamba / SSM hybrids) cannot be packed and get
:class:`PaddedCollator`: right-padded rows with an attention mask.

Both return ``position_seq_lengths`` (for every position, the length of its sequence) so
NEFTune can scale its noise by each sequence's own length, as the method defines it, in
either layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from reasondistill.tokenize import IGNORE_INDEX


@dataclass
class PackedCollator:
    """Micro-batch → one packed row ``[1, total_tokens]``."""

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        input_ids, labels, positions, lengths = [], [], [], []
        for row in rows:
            n = len(row["input_ids"])
            input_ids.extend(row["input_ids"])
            labels.extend(row["labels"])
            positions.extend(range(n))
            lengths.extend([n] * n)
        return {
            "input_ids": torch.tensor([input_ids]),
            "labels": torch.tensor([labels]),
            "position_ids": torch.tensor([positions]),
            "position_seq_lengths": torch.tensor([lengths]),
            "sequence_lengths": torch.tensor([len(row["input_ids"]) for row in rows]),
        }


@dataclass
class PaddedCollator:
    """Micro-batch → right-padded ``[batch, longest]`` rows with an attention mask."""

    pad_token_id: int

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        longest = max(len(row["input_ids"]) for row in rows)
        input_ids, labels, mask, lengths = [], [], [], []
        for row in rows:
            n = len(row["input_ids"])
            pad = longest - n
            input_ids.append(row["input_ids"] + [self.pad_token_id] * pad)
            labels.append(row["labels"] + [IGNORE_INDEX] * pad)
            mask.append([1] * n + [0] * pad)
            lengths.append([n] * longest)
        return {
            "input_ids": torch.tensor(input_ids),
            "labels": torch.tensor(labels),
            "attention_mask": torch.tensor(mask),
            "position_seq_lengths": torch.tensor(lengths),
        }


_STATEFUL_MARKERS = ("mamba", "ssm", "rwkv", "recurrent", "nemotron_h", "jamba", "zamba",
                     "falcon_h", "bamba", "granitemoehybrid", "lfm2")


def supports_packing(model) -> bool:
    """True for pure-attention decoders: their only cross-position path is attention, which
    transformers masks per packed sequence. Anything with state-space or recurrent layers
    would leak state across the packed boundary, so it is padded instead."""
    config = getattr(model, "config", None)
    model_type = str(getattr(config, "model_type", "")).lower()
    if any(marker in model_type for marker in _STATEFUL_MARKERS):
        return False
    return not any(any(marker in type(m).__name__.lower() for marker in ("mamba", "ssm", "rwkv"))
                   for m in model.modules())


def choose_packing(packing, model) -> bool:
    """``train.packing`` (true / false / auto) for ``model``: packed rows where the model
    allows them and the packed attention passes its contract check
    (:mod:`reasondistill.speedups`); padded rows otherwise."""
    from reasondistill.errors import ReasondistillError
    from reasondistill.speedups import usable

    if packing == "auto":
        return supports_packing(model) and usable("packed_attention", model)
    if packing and not supports_packing(model):
        raise ReasondistillError(
            f"train.packing is true but {type(model).__name__} has state-space/recurrent "
            "layers that would carry state across packed sequences; use packing: auto")
    return bool(packing) and usable("packed_attention", model)


def packs_rows(collator) -> bool:
    """Whether ``collator`` (or the one a :class:`DistillCollator` wraps) packs its rows."""
    return isinstance(getattr(collator, "base", collator), PackedCollator)


@dataclass
class DistillCollator:
    """A collator (packed or padded) plus what latent distillation needs per micro-batch.

    Rows carry ``row``, their index into ``alignments`` (and ``teacher_rows``, the teacher's
    own tokenization when it reads another text than the student). Adds flat indices into
    the student's and the teacher's token grids for every aligned position, with the group
    each belongs to (:mod:`reasondistill.distill.positions`), and ``row_index`` (for a cache).
    """

    base: PackedCollator | PaddedCollator
    alignments: list
    teacher_rows: list[dict] | None = None

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        batch = self.base([{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows])
        indices = [r["row"] for r in rows]
        s_pos, s_grp, t_pos, t_grp = [], [], [], []
        s_offsets = self._offsets([len(r["input_ids"]) for r in rows])
        if self.teacher_rows is not None:
            teacher = self.base([self.teacher_rows[i] for i in indices])
            batch.update({f"teacher_{key}": value for key, value in teacher.items()
                          if key not in ("labels", "position_seq_lengths")})
            t_offsets = self._offsets([len(self.teacher_rows[i]["input_ids"]) for i in indices])
        else:
            t_offsets = s_offsets
        groups = 0
        for index, s_off, t_off in zip(indices, s_offsets, t_offsets):
            a = self.alignments[index]
            s_pos.extend(s_off + p for p in a.student_positions)
            s_grp.extend(groups + g for g in a.student_groups)
            t_pos.extend(t_off + p for p in a.teacher_positions)
            t_grp.extend(groups + g for g in a.teacher_groups)
            groups += a.n_groups
        batch.update({
            "align_student_positions": torch.tensor(s_pos, dtype=torch.long),
            "align_student_groups": torch.tensor(s_grp, dtype=torch.long),
            "align_teacher_positions": torch.tensor(t_pos, dtype=torch.long),
            "align_teacher_groups": torch.tensor(t_grp, dtype=torch.long),
            "align_groups": torch.tensor(groups),
            "row_index": torch.tensor(indices, dtype=torch.long),
        })
        return batch

    def _offsets(self, lengths: list[int]) -> list[int]:
        """Where each row starts in the flattened ``[batch, tokens]`` grid."""
        if isinstance(self.base, PackedCollator):
            offsets, total = [], 0
            for n in lengths:
                offsets.append(total)
                total += n
            return offsets
        longest = max(lengths)
        return [i * longest for i in range(len(lengths))]
