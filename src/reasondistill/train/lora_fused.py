"""LoRA's update added inside the second matmul, for the duration of training.

PEFT computes a LoRA linear as ``base(x) + B(A(x)) * scaling``: after the two small
matmuls it makes two more passes over the full ``[tokens, out_features]`` output, one to
scale and one to add, and the backward pays the scaling again. ``torch.addmm`` does
``base + scaling · (x Aᵀ) Bᵀ`` as one matmul that accumulates into the base output, so
the update costs its two small matmuls and nothing else (``benchmarks/lora_linear.py``
measures it per layer).

Only plain LoRA layers take this path — one active adapter, no dropout, no DoRA or other
variant, no LoRA bias, not merged, matching dtypes or autocast; anything else, and any call
with extra arguments, goes through PEFT's own forward. The swap is an instance attribute,
removed on exit, so saved adapters, merging and evaluation never see it.
"""

from __future__ import annotations

import contextlib

import torch

from reasondistill.train.forward_swap import swapped_forwards


@contextlib.contextmanager
def fused_lora_linears(model):
    """Inside, the plain LoRA linears of ``model`` add their update with one ``addmm``.
    Callers check :func:`reasondistill.speedups.usable` ``("fused_lora", model)`` first."""
    with swapped_forwards(plain_lora_linears(model), _fused_forward) as count:
        yield count


def plain_lora_linears(model) -> list:
    """The LoRA linears of ``model`` that take the fused path."""
    from peft.tuners.lora.layer import Linear as LoraLinear

    return [module for module in model.modules()
            if isinstance(module, LoraLinear) and _single_plain_adapter(module) is not None]


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
    if name is None or args or kwargs or not _addmm_dtypes_match(module, name, x):
        return type(module).forward(module, x, *args, **kwargs)
    base = module.base_layer(x)
    down = torch.nn.functional.linear(x, module.lora_A[name].weight)
    out = torch.addmm(base.reshape(-1, base.shape[-1]), down.reshape(-1, down.shape[-1]),
                      module.lora_B[name].weight.t(), alpha=module.scaling[name])
    return out.view(base.shape)


def _addmm_dtypes_match(module, name: str, x: torch.Tensor) -> bool:
    """Under autocast every matmul input is cast alike; otherwise the input, the base weight
    and both adapter weights must share one dtype (PEFT's forward casts between them)."""
    if torch.is_autocast_enabled(x.device.type):
        return True
    base_weight = getattr(module.get_base_layer(), "weight", None)
    dtypes = {x.dtype, module.lora_A[name].weight.dtype, module.lora_B[name].weight.dtype}
    return base_weight is not None and dtypes == {base_weight.dtype}
