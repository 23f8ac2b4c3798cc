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
