"""Every speed-up that reaches into a library's internals, its contract, and its fallback.

The training and generation speed-ups replace pieces of transformers, PEFT and torch that
those libraries consider theirs to change: module forwards, the attention function, the
output head, the KV cache's storage, a private autograd op. A release that changes one of
them must never crash a user's run or change its numbers. So each speed-up has an entry
here with

- **the contract**: the structure it expects of the library, in words;
- **a self-check** that runs before the speed-up applies: the structure is the one it
  knows, and on a tiny input its numbers equal the stock path's (within the rounding of the
  dtype the model runs in);
- **the fallback**: when the check fails — for any reason, including an exception inside
  it — the caller keeps the stock path, and one warning line says which speed-up is off
  and why. The run continues.

Callers ask :func:`usable` (``if usable("fused_lora", model): ...``); the implementations
stay in their own modules (:mod:`reasondistill.train.packing`, ``.head_loss``,
``.lora_fused``, ``.lean_layers``, :mod:`reasondistill.evaluate.kv_cache`). This module
imports them; they never import it — their callers (the trainer, the recipe, the generation
backend) ask, so the dependencies run one way.

A model type that a speed-up does not list (the allow-lists in ``lean_layers`` and
``head_loss``) is not a failure: the speed-up simply does not apply, without a warning.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch

logger = logging.getLogger("reasondistill.speedups")


class NotApplicable(Exception):
    """The speed-up has nothing to do on this model (no warning: the stock path is used)."""


@dataclass(frozen=True)
class Contract:
    name: str
    expects: str  # the structure the speed-up relies on, in words
    check: Callable[..., None]  # raises when the structure or the numbers differ


_warned: set[str] = set()


def usable(name: str, *args) -> bool:
    """Whether speed-up ``name`` may apply to ``args`` (usually the model).

    Runs its self-check; on any failure logs one warning per speed-up and process and
    returns False, so the caller takes the stock path."""
    from reasondistill.train.packing import outside_packed_forward

    contract = CONTRACTS[name]
    try:
        with torch.no_grad(), outside_packed_forward():
            contract.check(*args)
    except NotApplicable:
        return False
    except Exception as error:  # noqa: BLE001 — any surprise means: stock path
        if name not in _warned:
            _warned.add(name)
            reason = f"{type(error).__name__}: {error}".strip().splitlines()[0][:300]
            logger.warning("reasondistill: speed-up %r is off, the stock path runs instead "
                           "(%s)", name, reason)
        return False
    return True


def _tolerance(dtype: torch.dtype) -> dict:
    """How far two correct computations may differ on a tiny input in ``dtype``."""
    if dtype in (torch.float32, torch.float64):
        return dict(rtol=1e-4, atol=1e-4)
    return dict(rtol=5e-2, atol=5e-2)


def _assert_close(got: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, what: str):
    if got.shape != expected.shape:
        raise AssertionError(f"{what}: shape {tuple(got.shape)} != stock {tuple(expected.shape)}")
    got, expected = got.detach().float(), expected.detach().float()
    scale = max(1.0, float(expected.abs().max()))
    tol = _tolerance(dtype)
    difference = float((got - expected).abs().max())
    if difference > tol["atol"] * scale:
        raise AssertionError(f"{what}: differs from the stock path by {difference:.3g}")


def _model_dtype(model) -> torch.dtype:
    return next(model.parameters()).dtype


def _tiny_ids(model, length: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    vocab = model.get_input_embeddings().weight.shape[0]
    ids = torch.randint(0, vocab, (1, length), generator=generator)
    return ids.to(model.device)


@contextlib.contextmanager
def _eval_mode(model):
    """Dropout off while comparing (a packed row and its pieces draw different masks)."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        if was_training:
            model.train()


# --- packed attention (train/packing.py) ------------------------------------------------------

def _check_packed_attention(model) -> None:
    """A packed row of two sequences gives each sequence the logits it has alone."""
    with _eval_mode(model):
        _compare_packed(model, lengths=[3, 5])


def _compare_packed(model, lengths) -> None:
    from reasondistill.train.packing import packed_attention, packed_forward

    pieces = [_tiny_ids(model, n, seed) for seed, n in enumerate(lengths)]
    alone = [model(input_ids=ids, use_cache=False).logits for ids in pieces]
    positions = torch.cat([torch.arange(n) for n in lengths]).unsqueeze(0).to(model.device)
    with packed_attention(model), packed_forward(lengths):
        packed = model(input_ids=torch.cat(pieces, dim=1), position_ids=positions,
                       use_cache=False).logits
    _assert_close(packed, torch.cat(alone, dim=1), _model_dtype(model), "packed logits")


# --- fused head + loss (train/head_loss.py) ---------------------------------------------------

def _check_fused_head(model) -> None:
    """With the head passed through, ``hidden @ W.T`` equals the model's own logits at the
    kept positions, and the chunked loss equals the cross-entropy of those logits."""
    from reasondistill.train.head_loss import (
        fused_head_applies,
        head_cross_entropy,
        head_returns_hidden_states,
    )

    if not fused_head_applies(model):
        raise NotApplicable
    ids = _tiny_ids(model, 6, seed=0)
    keep = torch.tensor([[False, True, True, False, True, False]], device=ids.device)
    with _eval_mode(model):
        stock = model(input_ids=ids, logits_to_keep=keep, use_cache=False).logits
        with head_returns_hidden_states(model):
            hidden = model(input_ids=ids, logits_to_keep=keep, use_cache=False).logits
    weight = model.get_output_embeddings().weight
    stock = stock.reshape(-1, stock.shape[-1])
    hidden = hidden.reshape(-1, hidden.shape[-1])
    dtype = _model_dtype(model)
    _assert_close(hidden @ weight.t(), stock, dtype, "head logits")
    targets = ids[keep].roll(1)
    expected = torch.nn.functional.cross_entropy(stock.float(), targets, reduction="sum")
    got = head_cross_entropy(hidden, weight, targets)
    _assert_close(got.reshape(1), expected.reshape(1), dtype, "fused head loss")


# --- fused LoRA linears (train/lora_fused.py) -------------------------------------------------

def _check_fused_lora(model) -> None:
    """PEFT's LoRA ``Linear`` has the attributes the fused path reads, and one plain LoRA
    linear's fused forward equals PEFT's forward."""
    from peft.tuners.lora.layer import Linear as LoraLinear

    from reasondistill.train.lora_fused import _fused_forward, plain_lora_linears

    layers = [m for m in model.modules() if isinstance(m, LoraLinear)]
    if not layers:
        raise NotApplicable
    plain = plain_lora_linears(model)  # reads merged, active_adapters, lora_variant, ...
    if not plain:
        raise NotApplicable
    module = plain[0]
    weight = module.get_base_layer().weight
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, weight.shape[1], generator=generator).to(weight.device, weight.dtype)
    # as training runs it: a base in half precision under autocast, fp32 LoRA weights
    half = weight.dtype in (torch.bfloat16, torch.float16)
    regime = (torch.autocast(weight.device.type, dtype=weight.dtype) if half
              else contextlib.nullcontext())
    with regime:
        fused, stock = _fused_forward(module, x), type(module).forward(module, x)
    _assert_close(fused, stock, weight.dtype, "fused LoRA forward")


# --- lean RMSNorm (train/lean_layers.py) ------------------------------------------------------

def _check_lean_norms(model) -> None:
    """The model's RMSNorm class is the allow-listed one, keeps ``weight`` and
    ``variance_epsilon``, and its forward equals ours on a tiny input."""
    from reasondistill.train.lean_layers import _norm_forward, known_norms

    norms = known_norms(model)
    if not norms:
        raise NotApplicable
    norm = norms[0]
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, norm.weight.shape[0], generator=generator).to(norm.weight.device,
                                                                      norm.weight.dtype)
    _assert_close(_norm_forward(norm, x), type(norm).forward(norm, x), norm.weight.dtype,
                  "lean RMSNorm forward")


# --- the softmax backward op (train/lean_layers.py) -------------------------------------------

def _check_softmax_backward() -> None:
    """``torch.ops.aten._softmax_backward_data`` (private) exists and computes
    ``p · (g − Σ g·p)``."""
    generator = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(3, 5, generator=generator), dim=-1)
    g = torch.randn(3, 5, generator=generator)
    got = torch.ops.aten._softmax_backward_data(g, p, -1, p.dtype)
    expected = p * (g - (g * p).sum(-1, keepdim=True))
    _assert_close(got, expected, torch.float32, "softmax backward")


# --- PEFT's input cast switch (train/trainer.py) ----------------------------------------------

def _check_peft_input_cast(model) -> None:
    """``peft.helpers.disable_input_dtype_casting`` exists and switches the
    ``cast_input_dtype_enabled`` flag of every PEFT layer, and back."""
    from peft.helpers import disable_input_dtype_casting
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    if not layers:
        raise NotApplicable
    before = [m.cast_input_dtype_enabled for m in layers]
    with disable_input_dtype_casting(model):
        if any(m.cast_input_dtype_enabled for m in layers):
            raise AssertionError("a LoRA layer still casts its input")
    if [m.cast_input_dtype_enabled for m in layers] != before:
        raise AssertionError("the cast flags were not restored")


# --- KV-cache surgery in generation (evaluate/generate.py) ------------------------------------

def _check_kv_cache(model) -> None:
    """A ``StaticCache`` of ``StaticLayer``s whose ``keys``/``values``/``cumulative_length``
    :func:`prefill_in_groups` writes directly, then ``reorder_cache``: after a prefill in
    groups of one row, one step from the cache gives the logits a full forward gives."""
    from transformers.cache_utils import StaticLayer

    from reasondistill.evaluate.kv_cache import compactable_cache

    lengths = [4, 6]
    cache = compactable_cache(model, max(lengths) + 2)
    if cache is None:
        raise NotApplicable
    for layer in cache.layers:
        for attribute in ("keys", "values", "is_initialized", "lazy_initialization",
                          "cumulative_length"):
            if not hasattr(layer, attribute) and not hasattr(StaticLayer, attribute):
                raise AttributeError(f"StaticLayer has no {attribute!r}")
    if not callable(getattr(cache, "reorder_cache", None)):
        raise AttributeError("StaticCache has no reorder_cache")
    with _eval_mode(model):
        _compare_cached_step(model, cache, lengths)


def _compare_cached_step(model, cache, lengths) -> None:
    from reasondistill.evaluate.kv_cache import cache_argument, prefill_in_groups

    width = max(lengths)
    rows = [_tiny_ids(model, n, seed)[0] for seed, n in enumerate(lengths)]
    pad = 0
    input_ids = torch.stack([torch.cat([rows[i].new_full((width - n,), pad), rows[i]])
                             for i, n in enumerate(lengths)])
    mask = torch.stack([torch.cat([torch.zeros(width - n, dtype=torch.long),
                                   torch.ones(n, dtype=torch.long)]) for n in lengths]).to(
        input_ids.device)
    prefill_in_groups(model, cache, input_ids, mask, group_rows=1)
    positions = (mask.sum(dim=1, keepdim=True) - 1)
    step = model(input_ids=input_ids[:, -1:], attention_mask=mask, position_ids=positions,
                 use_cache=True, logits_to_keep=1, **{cache_argument(model): cache}).logits[:, -1]
    full = torch.stack([model(input_ids=row.unsqueeze(0), use_cache=False).logits[0, -1]
                        for row in rows])
    _assert_close(step, full, _model_dtype(model), "cached decoding logits")


CONTRACTS: dict[str, Contract] = {c.name: c for c in (
    Contract("packed_attention",
             "transformers routes every attention layer through AttentionInterface (so "
             "set_attn_implementation can name ours) and exports "
             "integrations.sdpa_attention.sdpa_attention_forward(module, q, k, v, mask, "
             "**kwargs) -> (out [b, t, h, d], weights); position_ids restart per sequence.",
             _check_packed_attention),
    Contract("fused_head",
             "the causal-LM forward computes logits = lm_head(hidden_states[:, keep]) with a "
             "boolean logits_to_keep and nothing after the head (no soft-capping or scaling); "
             "the head is a frozen, bias-free nn.Linear swapped per instance.",
             _check_fused_head),
    Contract("fused_lora",
             "PEFT's lora.Linear computes base(x) + lora_B(lora_A(dropout(x))) * scaling and "
             "keeps merged, disable_adapters, active_adapters, lora_A/lora_B, lora_variant, "
             "lora_bias, lora_dropout, scaling and base_layer as attributes.",
             _check_fused_lora),
    Contract("lean_norms",
             "the allow-listed RMSNorm classes compute weight * (x.float() * rsqrt(mean(x²) + "
             "variance_epsilon)).to(x.dtype) in forward(hidden_states).",
             _check_lean_norms),
    Contract("softmax_backward",
             "torch.ops.aten._softmax_backward_data(grad, output, dim, dtype) is the softmax's "
             "backward p·(g − Σg·p).",
             _check_softmax_backward),
    Contract("peft_input_cast",
             "peft.helpers.disable_input_dtype_casting(model) switches every BaseTunerLayer's "
             "cast_input_dtype_enabled off and restores it.",
             _check_peft_input_cast),
    Contract("kv_cache",
             "transformers' StaticCache(config=, max_cache_len=) holds StaticLayers whose "
             "keys, values and cumulative_length can be written directly, rows can be dropped "
             "with reorder_cache, and the model's forward takes the cache under the keyword "
             "cache_argument() names.",
             _check_kv_cache),
)}
