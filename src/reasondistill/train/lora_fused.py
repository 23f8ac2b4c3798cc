"""LoRA linears as one autograd function, for the duration of training.

PEFT computes a LoRA linear as ``base(x) + B(A(x)) * scaling``: after the two small
matmuls it makes two more passes over the full ``[tokens, out_features]`` output, one to
scale and one to add, and the backward pays the scaling again. Autograd's backward then
adds the adapter's input gradient to the base layer's in another full pass, and takes
``B``'s gradient as ``gradᵀ · down``, which on CPU first copies the transposed
``[out_features, tokens]`` gradient. Here one autograd function does the forward as
``addmm(base, x Aᵀ, Bᵀ, alpha=scaling)`` and the backward as four matmuls with nothing
copied: ``B``'s gradient as ``(downᵀ · grad)ᵀ`` and the input gradient accumulated into
one ``addmm`` (``benchmarks/lora_linear.py`` measures it per layer).

Only plain LoRA layers take this path — one active adapter, no dropout, no DoRA or other
variant, no LoRA bias, not merged, a ``nn.Linear`` or GPT-2 ``Conv1D`` base, matching
dtypes or autocast; anything else, and any call with extra arguments, goes through PEFT's
own forward. The swap is an instance attribute, removed on exit, so saved adapters,
merging and evaluation never see it.
"""

from __future__ import annotations

import contextlib
import functools

import torch


@contextlib.contextmanager
def fused_lora_linears(model):
    """Inside, the plain LoRA linears of ``model`` add their update with one ``addmm``."""
    from peft.tuners.lora.layer import Linear as LoraLinear

    patched = [module for module in model.modules()
               if isinstance(module, LoraLinear) and _single_plain_adapter(module) is not None]
    for module in patched:
        module.forward = functools.partial(_fused_forward, module)
    try:
        yield len(patched)
    finally:
        for module in patched:
            del module.forward


def _single_plain_adapter(module) -> str | None:
    """The name of the one active adapter of ``module`` if it is plain LoRA, else None."""
    if module.merged or module.disable_adapters or len(module.active_adapters) != 1:
        return None
    name = module.active_adapters[0]
    if (name not in module.lora_A or name in module.lora_variant
            or module.lora_bias.get(name, False)
            or not isinstance(module.lora_dropout[name], torch.nn.Identity)):
        return None
    return name


def _fused_forward(module, x, *args, **kwargs):
    name = _single_plain_adapter(module)
    base = module.get_base_layer()
    weight = _weight_out_in(module, base)
    if (name is None or weight is None or args or kwargs
            or not _addmm_dtypes_match(module, name, x)):
        return type(module).forward(module, x, *args, **kwargs)
    compute = (torch.get_autocast_dtype(x.device.type)
               if torch.is_autocast_enabled(x.device.type) else x.dtype)
    return _LoraLinear.apply(x, weight, base.bias, module.lora_A[name].weight,
                             module.lora_B[name].weight, module.scaling[name], compute)


def _weight_out_in(module, base) -> torch.Tensor | None:
    """The base weight as ``[out_features, in_features]`` (a view for GPT-2's ``Conv1D``),
    or None for a base layer this path does not know."""
    from transformers.pytorch_utils import Conv1D

    if type(base) is torch.nn.Linear and not module.fan_in_fan_out:
        return base.weight
    if type(base) is Conv1D and module.fan_in_fan_out:
        return base.weight.t()
    return None


class _LoraLinear(torch.autograd.Function):
    """``x Wᵀ + b + scaling · (x Aᵀ) Bᵀ`` with every matmul in ``compute`` dtype."""

    @staticmethod
    def forward(ctx, x, weight, bias, lora_a, lora_b, scaling, compute):
        with torch.autocast(x.device.type, enabled=False):
            flat = x.reshape(-1, x.shape[-1]).to(compute)
            weight, lora_a, lora_b = weight.to(compute), lora_a.to(compute), lora_b.to(compute)
            base = torch.nn.functional.linear(
                flat, weight, None if bias is None else bias.to(compute))
            down = flat @ lora_a.t()
            out = torch.addmm(base, down, lora_b.t(), alpha=scaling)
        ctx.save_for_backward(flat, down, weight, lora_a, lora_b)
        ctx.scaling, ctx.x_dtype, ctx.x_shape = scaling, x.dtype, x.shape
        ctx.param_dtypes = (lora_a.dtype, lora_b.dtype)
        return out.view(*x.shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx, grad):
        flat, down, weight, lora_a, lora_b = ctx.saved_tensors
        grad = grad.reshape(-1, grad.shape[-1]).to(flat.dtype)
        grad_down = (grad @ lora_b).mul_(ctx.scaling)  # [tokens, r]
        grad_x = grad_weight = grad_bias = grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.addmm(grad_down @ lora_a, grad, weight)
            grad_x = grad_x.view(ctx.x_shape).to(ctx.x_dtype)
        if ctx.needs_input_grad[1]:  # a trainable base weight (not the LoRA case)
            grad_weight = (grad.t() @ flat).to(weight.dtype)
        if ctx.needs_input_grad[2]:
            grad_bias = grad.sum(0)
        if ctx.needs_input_grad[3]:
            grad_a = (grad_down.t() @ flat).to(ctx.param_dtypes[0])
        if ctx.needs_input_grad[4]:
            grad_b = (down.t() @ grad).mul_(ctx.scaling).t().to(ctx.param_dtypes[1])
        return grad_x, grad_weight, grad_bias, grad_a, grad_b, None, None


def _addmm_dtypes_match(module, name: str, x: torch.Tensor) -> bool:
    """Under autocast every matmul input is cast alike; otherwise the input, the base weight
    and both adapter weights must share one dtype (PEFT's forward casts between them)."""
    if torch.is_autocast_enabled(x.device.type):
        return True
    base_weight = getattr(module.get_base_layer(), "weight", None)
    dtypes = {x.dtype, module.lora_A[name].weight.dtype, module.lora_B[name].weight.dtype}
    return base_weight is not None and dtypes == {base_weight.dtype}
