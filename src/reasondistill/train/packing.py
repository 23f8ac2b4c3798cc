"""Padding-free packed attention: linear layers see only real tokens, attention stays per sequence.

A packed micro-batch is one row holding several sequences. Letting the stock SDPA path mask
it means a dense ``T × T`` mask, which on CPU falls back to the math kernel and materialises
every attention matrix of the whole row (gigabytes for a few thousand tokens, and the time to
match). Instead the trainer publishes the sequence boundaries of the row it is running, and
this attention function — registered with transformers' ``AttentionInterface`` — calls the
library's own SDPA forward once per sequence with ``is_causal`` and no mask, so each call
takes the fused kernel and nothing ever attends across a boundary.

Because the implementation is not registered for masks, transformers builds no mask for it.
A model whose layers do not route attention through the interface would therefore attend
across sequences; :func:`packed_forward` counts the calls and refuses such a model.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Sequence

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from reasondistill.errors import ReasondistillError

PACKED_ATTENTION = "reasondistill_packed_sdpa"

_segments: contextvars.ContextVar[Sequence[tuple[int, int]] | None] = contextvars.ContextVar(
    "packed_segments", default=None)
_calls = contextvars.ContextVar("packed_calls", default=None)


def packed_sdpa_attention(module, query, key, value, attention_mask, *args, **kwargs):
    """SDPA per packed sequence (``query``: ``[batch, heads, tokens, dim]``)."""
    segments = _segments.get()
    if segments is None:  # not inside a packed forward: plain SDPA (e.g. evaluation)
        return sdpa_attention_forward(module, query, key, value, attention_mask, *args, **kwargs)
    counter = _calls.get()
    if counter is not None:
        counter[0] += 1
    outputs = [
        sdpa_attention_forward(module, query[:, :, start:end], key[:, :, start:end],
                               value[:, :, start:end], None, *args, **kwargs)[0]
        for start, end in segments
    ]
    return torch.cat(outputs, dim=1), None


AttentionInterface.register(PACKED_ATTENTION, packed_sdpa_attention)


def segments_from_lengths(lengths: Sequence[int]) -> list[tuple[int, int]]:
    bounds, start = [], 0
    for n in lengths:
        bounds.append((start, start + n))
        start += n
    return bounds


@contextlib.contextmanager
def packed_forward(lengths: Sequence[int]):
    """Run a forward pass over a packed row of sequences of these ``lengths``."""
    counter = [0]
    segments_token = _segments.set(segments_from_lengths(lengths))
    calls_token = _calls.set(counter)
    try:
        yield
    finally:
        _segments.reset(segments_token)
        _calls.reset(calls_token)
    if counter[0] == 0:
        raise ReasondistillError(
            "this model's attention does not go through transformers' attention interface, so "
            "packed sequences would attend across each other; set train.packing: false"
        )


@contextlib.contextmanager
def packed_attention(model):
    """Switch ``model`` to the packed attention for the duration of training."""
    previous = model.config._attn_implementation
    model.set_attn_implementation(PACKED_ATTENTION)
    try:
        yield
    finally:
        model.set_attn_implementation(previous)
