"""RMSNorm and attention softmax that keep less for the backward pass.

Autograd keeps, for a Llama-style RMSNorm, a float32 copy of its input, and for eager
attention under bf16, the float32 softmax beside its bf16 cast. Keeping neither saves 29% of
the bytes a SmolLM2 step keeps for its backward pass (``benchmarks/lean_layers.py``). On a
CPU the memory is not free: memory a process touches for the first time is page-faulted in
(about a second per GiB on this project's VM, ``benchmarks/train_steps.py``) and every saved
byte is written and read back.

These functions compute exactly the forward they stand in for and keep only what the
backward needs: the norm's input in its own dtype and one float32 scale per row; the
probabilities in their output dtype (the softmax backward accumulates in float32 from them
— the only place numbers may differ, by the rounding of the probabilities).

(Recomputing the MLP's SiLU in the backward instead of keeping it was tried too; on this
CPU it cost more time than the smaller footprint saved, so the MLP keeps its own forward.)

:func:`lean_norms` swaps the norm in, as an instance attribute for the duration of
training, on the norms whose class is one of the known Llama-style ones below (the same
forward as ``LlamaRMSNorm``, checked class by class); anything else keeps its own forward.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib

import torch

from reasondistill.train.forward_swap import swapped_forwards

# model type → (its modeling module, its RMSNorm class), whose forward is LlamaRMSNorm's.
LLAMA_STYLE_NORMS = {
    "llama": ("llama", "LlamaRMSNorm"),
    "mistral": ("mistral", "MistralRMSNorm"),
    "qwen2": ("qwen2", "Qwen2RMSNorm"),
    "qwen3": ("qwen3", "Qwen3RMSNorm"),
    "qwen2_moe": ("qwen2_moe", "Qwen2MoeRMSNorm"),
    "qwen3_moe": ("qwen3_moe", "Qwen3MoeRMSNorm"),
}


@contextlib.contextmanager
def lean_norms(model):
    """Inside, the Llama-style RMSNorms of ``model`` keep less for the backward pass.
    Yields the number of norms switched. Callers check
    :func:`reasondistill.speedups.usable` ``("lean_norms", model)`` first."""
    with swapped_forwards(known_norms(model), _norm_forward) as count:
        yield count


def known_norms(model) -> list:
    """The norms of ``model`` whose class is the allow-listed Llama-style one."""
    norm_class = _known_norm_class(model)
    if norm_class is None:
        return []
    return [module for module in model.modules() if type(module) is norm_class]


def _known_norm_class(model):
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in LLAMA_STYLE_NORMS:
        return None
    package, name = LLAMA_STYLE_NORMS[model_type]
    try:
        module = importlib.import_module(f"transformers.models.{package}.modeling_{package}")
    except ImportError:
        return None
    return getattr(module, name, None)


def _norm_forward(module, hidden_states):
    return rms_norm(hidden_states, module.weight, module.variance_epsilon)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """``weight * (x / rms(x))`` exactly as ``LlamaRMSNorm`` computes it: float32 inside
    (float64 stays float64, where Llama's would drop to float32)."""
    return _RMSNorm.apply(x, weight, eps)


def softmax_to(scores: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``softmax(scores, -1)`` in (at least) float32, returned in ``dtype``; only the
    returned tensor is kept for the backward pass."""
    if dtype == torch.float32 or dtype == torch.float64:
        return torch.softmax(scores, dim=-1, dtype=dtype)
    return _SoftmaxTo.apply(scores, dtype)


class _RMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, eps):
        x32 = x.to(torch.promote_types(x.dtype, torch.float32))
        scale = torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
        ctx.save_for_backward(x, weight, scale)
        return weight * (x32 * scale).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        x, weight, scale = ctx.saved_tensors
        x32 = x.to(scale.dtype)
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:
            g = (grad * weight).to(scale.dtype)
            dot = (g * x32).sum(-1, keepdim=True)
            # d/dx of x·s(x), s = (mean(x²) + eps)^-½:  s·g − x·s³·(g·x)/d
            grad_x = torch.addcmul(g * scale, x32, scale.pow(3) * dot,
                                   value=-1.0 / x.shape[-1]).to(x.dtype)
        if ctx.needs_input_grad[1]:
            normed = (x32 * scale).to(x.dtype)
            grad_weight = (grad * normed).reshape(-1, x.shape[-1]).sum(0).to(weight.dtype)
        return grad_x, grad_weight, None


class _SoftmaxTo(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores, dtype):
        probabilities = torch.softmax(scores, dim=-1, dtype=torch.float32).to(dtype)
        ctx.save_for_backward(probabilities)
        ctx.scores_dtype = scores.dtype
        return probabilities

    @staticmethod
    def backward(ctx, grad):
        (probabilities,) = ctx.saved_tensors
        grad = grad.to(probabilities.dtype)
        if _private_backward.get():
            # one fused pass that accumulates in float32 and writes the probabilities' dtype
            grad_scores = torch.ops.aten._softmax_backward_data(
                grad, probabilities, -1, probabilities.dtype)
        else:  # the same formula in public ops, in float32
            p32, g32 = probabilities.float(), grad.float()
            grad_scores = p32 * (g32 - (g32 * p32).sum(-1, keepdim=True))
        return grad_scores.to(ctx.scores_dtype), None


# Whether the softmax backward may use torch's private fused op: off unless the caller (the
# trainer, after speedups.usable("softmax_backward")) switches it on for a with block.
_private_backward: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "reasondistill_private_softmax_backward", default=False)


@contextlib.contextmanager
def private_softmax_backward(enabled: bool):
    """Inside, :func:`softmax_to`'s backward runs as torch's fused private op when
    ``enabled`` (else the same formula in public ops)."""
    token = _private_backward.set(enabled)
    try:
        yield
    finally:
        _private_backward.reset(token)
