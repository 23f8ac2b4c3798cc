"""Padding-free packed attention: linear layers see only real tokens, attention stays per sequence.

A packed micro-batch is one row holding several sequences. Letting the stock SDPA path mask
it means a dense ``T × T`` mask, which on CPU falls back to the math kernel and materialises
every attention matrix of the whole row (gigabytes for a few thousand tokens, and the time to
match). Instead the trainer publishes the sequence boundaries of the row it is running, and
this attention function — registered with transformers' ``AttentionInterface`` — attends
once per sequence, causally and with no mask: short sequences on CPU by matmul and softmax
(faster there than the fused kernel), others through the library's own SDPA forward with
``is_causal``. Nothing ever attends across a boundary.

Because the implementation is not registered for masks, transformers builds no mask for it.
A model whose layers do not route attention through the interface would therefore attend
across sequences; :func:`packed_forward` counts the calls and refuses such a model.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Sequence

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from reasondistill.errors import ReasondistillError
from reasondistill.train.lean_layers import softmax_to

PACKED_ATTENTION = "reasondistill_packed_sdpa"

_lengths: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "packed_lengths", default=None)
_calls = contextvars.ContextVar("packed_calls", default=None)


def packed_sdpa_attention(module, query, key, value, attention_mask, *args, **kwargs):
    """SDPA per packed sequence (``query``: ``[batch, heads, tokens, dim]``)."""
    lengths = _lengths.get()
    if lengths is None:  # not inside a packed forward: plain SDPA (e.g. evaluation)
        return sdpa_attention_forward(module, query, key, value, attention_mask, *args, **kwargs)
    counter = _calls.get()
    if counter is not None:
        counter[0] += 1
    # split, not slice: the backward then concatenates the per-sequence gradients once
    # instead of adding each into a zero tensor the size of the whole row
    outputs = []
    for q, k, v in zip(query.split(lengths, 2), key.split(lengths, 2), value.split(lengths, 2)):
        if explicit_attention_applies(module, q, kwargs):
            outputs.append(explicit_causal_attention(module, q, k, v, **kwargs))
        else:
            outputs.append(sdpa_attention_forward(module, q, k, v, None, *args, **kwargs)[0])
    return torch.cat(outputs, dim=1), None


# On CPU the fused (flash) SDPA kernel is slow for short sequences, its backward above all:
# over the 146-419-token rows of 64 GSM8K examples, matmul + softmax attention runs a layer's
# forward + backward 1.87x faster (benchmarks/attention_cpu.py, results/attention_cpu.json).
# Its score matrices are kept for the backward pass, so it is used only up to this many
# tokens per sequence; longer ones take the fused kernel.
EXPLICIT_ATTENTION_MAX_TOKENS = 512


def explicit_attention_applies(module, query, kwargs) -> bool:
    window = kwargs.get("sliding_window")
    return (query.device.type == "cpu" and query.shape[2] <= EXPLICIT_ATTENTION_MAX_TOKENS
            and kwargs.get("is_causal", getattr(module, "is_causal", True)) is not False
            and (window is None or window >= query.shape[2])
            and kwargs.get("softcap") is None and kwargs.get("s_aux") is None)


def explicit_causal_attention(module, query, key, value, *, dropout: float = 0.0,
                              scaling: float | None = None, **_) -> torch.Tensor:
    """Causal attention of one sequence as matmul → float32 softmax → matmul (transformers'
    eager numerics), returned as ``[batch, tokens, heads, dim]`` like the SDPA forward.

    Query heads that share a key/value head (grouped-query attention) are stacked along the
    rows of one matmul against that head, so keys and values are never copied per query head;
    the scaling and the causal mask are folded into the same matmul (``baddbmm``)."""
    batch, heads, n, dim = query.shape
    kv_heads = key.shape[1]
    groups = heads // kv_heads
    scaling = scaling if scaling is not None else dim**-0.5
    stacked = query.reshape(batch * kv_heads, groups * n, dim)
    keys = key.reshape(batch * kv_heads, n, dim)
    scores = torch.baddbmm(causal_bias(n, groups, query.dtype, query.device), stacked,
                           keys.transpose(1, 2), alpha=scaling)
    weights = softmax_to(scores, query.dtype)  # float32 softmax, kept only in query's dtype
    weights = torch.nn.functional.dropout(weights, p=dropout, training=module.training)
    out = torch.bmm(weights, value.reshape(batch * kv_heads, n, dim))
    return out.view(batch, heads, n, dim).transpose(1, 2).contiguous()


@functools.lru_cache(maxsize=256)
def causal_bias(n: int, groups: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``[groups·n, n]``: 0 where a position may attend, −inf above the diagonal, repeated
    for each query head stacked on a key/value head."""
    future = torch.full((n, n), float("-inf"), dtype=dtype, device=device).triu(1)
    return future.repeat(groups, 1)


AttentionInterface.register(PACKED_ATTENTION, packed_sdpa_attention)


def packing_active() -> bool:
    """Whether a packed forward (:func:`packed_forward`) is running."""
    return _lengths.get() is not None


@contextlib.contextmanager
def packed_forward(lengths: Sequence[int]):
    """Run a forward pass over a packed row of sequences of these ``lengths``."""
    counter = [0]
    lengths_token = _lengths.set([int(n) for n in lengths])
    calls_token = _calls.set(counter)
    try:
        yield
    finally:  # an error inside propagates as itself (the check below runs on success only)
        _lengths.reset(lengths_token)
        _calls.reset(calls_token)
    if counter[0] == 0:
        raise ReasondistillError(
            "this model's attention does not go through transformers' attention interface, so "
            "packed sequences would attend across each other; set train.packing: false"
        )


@contextlib.contextmanager
def outside_packed_forward():
    """Inside, attention is plain SDPA again even within a packed forward (for the
    speed-ups' self-checks, which run their own tiny forwards)."""
    lengths_token, calls_token = _lengths.set(None), _calls.set(None)
    try:
        yield
    finally:
        _lengths.reset(lengths_token)
        _calls.reset(calls_token)


@contextlib.contextmanager
def packed_attention(model):
    """Switch ``model`` to the packed attention for the duration of training."""
    previous = model.config._attn_implementation
    model.set_attn_implementation(PACKED_ATTENTION)
    try:
        yield
    finally:
        model.set_attn_implementation(previous)
