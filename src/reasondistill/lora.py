"""Architecture-aware LoRA targets, with a coverage table that shows what was adapted.

PEFT matches ``target_modules`` by name suffix and silently skips names a model does not
have, so a Llama recipe run on a hybrid Mamba-2 + MoE model can adapt a few attention layers
and nothing else. Here targets are chosen per *family* from the model's own module tree and
pinned as exact full names; a requested family that matches nothing is an error, and the
coverage table counts modules, layers and parameters per family before any training runs.

Families:

- ``attention``: ``q/k/v/o_proj``, fused ``qkv_proj``, GPT-2 ``c_attn``, and ``c_proj`` /
  ``out_proj`` only inside an attention block (GPT-2 also has an ``mlp.c_proj``).
- ``mlp``: ``gate/up/down_proj``, ``gate_up_proj``, ``c_fc``, ``fc1/fc2``, ``mlp.c_proj``
  (dense MLPs only; anything inside an MoE block belongs to ``moe``).
- ``mamba``: the Mamba-2 mixer's ``in_proj``. Its ``out_proj`` is left out: PEFT refuses it on
  Mamba model types because the fused kernel reads ``out_proj.weight`` directly, bypassing
  the LoRA forward (huggingface/peft#2556).
- ``moe``: expert weights. Experts stored as separate ``nn.Linear`` modules are targeted as
  modules; experts fused into 3-D parameters (transformers 5) through PEFT's
  ``target_parameters``. Shared experts count here too. Routers are never targeted.

The output head and MoE routers are adapted only when named in explicit ``target_modules``.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass

from torch import nn

from reasondistill.errors import ConfigError, did_you_mean

FAMILIES = ("attention", "mlp", "mamba", "moe")
OTHER = "other"  # coverage row for explicit targets outside every family

_ATTENTION = {"q_proj", "k_proj", "v_proj", "o_proj", "qkv_proj", "c_attn"}
_ATTENTION_OUTPUT = {"c_proj", "out_proj"}
_ATTENTION_BLOCK = re.compile(r"(^|_)(attn|attention)$")
_MLP = {"gate_proj", "up_proj", "down_proj", "gate_up_proj", "c_fc", "fc1", "fc2"}
_MLP_BLOCK = {"mlp", "ffn", "feed_forward"}
_EXPERTS = {"experts", "shared_experts", "shared_expert"}
_ROUTERS = {"gate", "router", "shared_expert_gate"}
_LAYER_INDEX = re.compile(r"\.(\d+)(?:\.|$)")

LEFT_OUT_HEAD = "output head"
LEFT_OUT_ROUTER = "MoE router"
LEFT_OUT_MAMBA = "Mamba out_proj/conv1d (PEFT refuses them: the fused kernel reads the weight)"


def _linear_types() -> tuple[type, ...]:
    from transformers.pytorch_utils import Conv1D

    return (nn.Linear, Conv1D)


def _wrappable_types() -> tuple[type, ...]:
    """Module types PEFT's LoRA can wrap when a user names them explicitly."""
    return _linear_types() + (nn.Embedding, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass(frozen=True)
class Target:
    """One adapted module (``kind="module"``) or fused parameter (``kind="parameter"``)."""

    name: str
    family: str
    kind: str
    base_params: int
    lora_params: int

    @property
    def leaf(self) -> str:
        return self.name.rsplit(".", 1)[-1]

    @property
    def layer(self) -> int | None:
        match = _LAYER_INDEX.search(self.name)
        return int(match.group(1)) if match else None


@dataclass(frozen=True)
class CoverageRow:
    family: str
    modules: int  # modules and fused parameters adapted
    layers: int  # distinct layer indices they sit in
    names: tuple[str, ...]  # distinct leaf names, e.g. ("k_proj", "q_proj")
    base_params: int  # parameters of the adapted base modules
    lora_params: int  # LoRA parameters added at this rank


@dataclass(frozen=True)
class LoraPlan:
    rank: int
    targets: tuple[Target, ...]
    coverage: tuple[CoverageRow, ...]
    num_layers: int | None
    left_out: tuple[tuple[str, str, int], ...]  # (reason, leaf name, count), never adapted
    explicit: bool
    fan_in_fan_out: bool  # GPT-2 style Conv1D targets store weights transposed

    @property
    def target_modules(self) -> list[str]:
        return [t.name for t in self.targets if t.kind == "module"]

    @property
    def target_parameters(self) -> list[str]:
        return [t.name for t in self.targets if t.kind == "parameter"]

    @property
    def lora_params(self) -> int:
        return sum(t.lora_params for t in self.targets)

    def row(self, family: str) -> CoverageRow:
        for row in self.coverage:
            if row.family == family:
                return row
        raise KeyError(f"no coverage row for {family!r}; rows: {[r.family for r in self.coverage]}")


# --------------------------------------------------------------------------- classification


def _family_of(name: str, parent: nn.Module | None) -> tuple[str | None, str | None]:
    """``(family, None)`` for a linear layer in a family, else ``(None, reason it is left out)``."""
    parts = name.split(".")
    leaf, block = parts[-1], parts[-2] if len(parts) > 1 else ""
    if any(part in _EXPERTS for part in parts[:-1]):
        return "moe", None
    if parent is not None and hasattr(parent, "A_log"):  # a state-space (Mamba) mixer
        return ("mamba", None) if leaf == "in_proj" else (None, LEFT_OUT_MAMBA)
    if leaf in _ROUTERS:
        return None, LEFT_OUT_ROUTER
    if leaf in _ATTENTION or (leaf in _ATTENTION_OUTPUT and _ATTENTION_BLOCK.search(block)):
        return "attention", None
    if leaf in _MLP or (leaf == "c_proj" and block in _MLP_BLOCK):
        return "mlp", None
    return None, None


def _module_target(name: str, module: nn.Module, family: str, rank: int) -> Target:
    """A module target; PEFT adds ``r × (in + out)`` (conv: ``r × (in·kernel + out)``)."""
    shape = tuple(module.weight.shape)
    if len(shape) == 2:
        lora = rank * (shape[0] + shape[1])
    else:
        lora = rank * (shape[1] * math.prod(shape[2:]) + shape[0])
    base = sum(p.numel() for p in module.parameters(recurse=False))
    return Target(name, family, "module", base, lora)


def _param_target(name: str, param: nn.Parameter, family: str, rank: int) -> Target:
    """A parameter target; 3-D experts get a rank-``r`` pair per expert."""
    shape = tuple(param.shape)
    experts, dims = (shape[0], shape[1:]) if len(shape) == 3 else (1, shape)
    return Target(name, family, "parameter", param.numel(), rank * experts * sum(dims))


class _ModelIndex:
    """The model's modules, parents and fused expert parameters, read once."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.modules = dict(model.named_modules())
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        self.head_names = {n for n, m in self.modules.items() if head is not None and m is head}
        linear, wrappable = _linear_types(), _wrappable_types()
        self.linear = {n: m for n, m in self.modules.items() if isinstance(m, linear) and n}
        self.wrappable = {n: m for n, m in self.modules.items() if isinstance(m, wrappable) and n}
        self.loose_params = {  # parameters PEFT can only reach through target_parameters
            f"{n}.{pn}": p
            for n, m in self.modules.items() if n and not isinstance(m, wrappable)
            for pn, p in m.named_parameters(recurse=False) if p.ndim in (2, 3)
        }

    def parent(self, name: str) -> nn.Module | None:
        return self.modules.get(name.rpartition(".")[0])

    def fused_experts(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.loose_params.items()
                if p.ndim == 3 and n.split(".")[-2] in _EXPERTS}

    def leaf_names(self) -> str:
        names = sorted({n.rsplit(".", 1)[-1] for n in self.linear})
        fused = sorted({".".join(n.split(".")[-2:]) for n in self.fused_experts()})
        text = ", ".join(names) or "(none)"
        return text + (f"; fused expert parameters: {', '.join(fused)}" if fused else "")

    def describe(self) -> str:
        model_type = getattr(getattr(self.model, "config", None), "model_type", "?")
        return f"{type(self.model).__name__} (model_type {model_type!r})"


# --------------------------------------------------------------------------- planning


def _family_targets(index: _ModelIndex, families: list[str], rank: int):
    targets, left_out = [], []
    for name, module in index.linear.items():
        if name in index.head_names:
            left_out.append((LEFT_OUT_HEAD, name))
            continue
        family, reason = _family_of(name, index.parent(name))
        if family in families:
            targets.append(_module_target(name, module, family, rank))
        elif reason:
            left_out.append((reason, name))
    if "moe" in families:
        targets += [_param_target(n, p, "moe", rank) for n, p in index.fused_experts().items()]
    for family in families:
        if not any(t.family == family for t in targets):
            raise ConfigError(
                f"LoRA family {family!r} matches no module in {index.describe()}. Its linear "
                f"layers are: {index.leaf_names()}. Remove {family!r} from lora.families or "
                "list lora.target_modules explicitly."
            )
    return targets, left_out


def _explicit_targets(index: _ModelIndex, names: list[str], rank: int):
    def matches(key: str, wanted: str) -> bool:
        return key == wanted or key.endswith("." + wanted)

    chosen: dict[str, Target] = {}
    for wanted in names:
        hits = [n for n in index.wrappable if matches(n, wanted)]
        params = [n for n in index.loose_params if matches(n, wanted)]
        if not hits and not params:
            raise ConfigError(
                f"lora.target_modules entry {wanted!r} matches no module or parameter in "
                f"{index.describe()}{did_you_mean(wanted.rsplit('.', 1)[-1], _leaves(index))}. "
                f"Its linear layers are: {index.leaf_names()}."
            )
        for name in hits:
            parent = index.parent(name)
            if parent is not None and hasattr(parent, "A_log") and name.endswith(
                    ("out_proj", "conv1d")):
                raise ConfigError(
                    f"lora.target_modules entry {wanted!r} selects {name}, a Mamba mixer's "
                    "out_proj/conv1d; PEFT refuses these because the fused Mamba kernel reads "
                    "their weights directly, so a LoRA there would be silently ignored"
                )
            family = _family_of(name, parent)[0] or OTHER
            chosen[name] = _module_target(name, index.wrappable[name], family, rank)
        for name in params:
            family = "moe" if name.split(".")[-2] in _EXPERTS else OTHER
            chosen[name] = _param_target(name, index.loose_params[name], family, rank)
    return list(chosen.values()), []


def _leaves(index: _ModelIndex) -> list[str]:
    return sorted({n.rsplit(".", 1)[-1] for n in index.wrappable}
                  | {n.rsplit(".", 1)[-1] for n in index.loose_params})


def _coverage(targets: list[Target], order: list[str]) -> tuple[CoverageRow, ...]:
    rows = []
    for family in order:
        group = [t for t in targets if t.family == family]
        if not group:
            continue
        layers = {t.layer for t in group if t.layer is not None}
        rows.append(CoverageRow(
            family=family, modules=len(group), layers=len(layers),
            names=tuple(sorted({t.leaf for t in group})),
            base_params=sum(t.base_params for t in group),
            lora_params=sum(t.lora_params for t in group),
        ))
    return tuple(rows)


def _summarise_left_out(left_out) -> tuple[tuple[str, str, int], ...]:
    counts: dict[tuple[str, str], int] = {}
    for reason, name in left_out:
        key = (reason, name.rsplit(".", 1)[-1])
        counts[key] = counts.get(key, 0) + 1
    return tuple((reason, leaf, n) for (reason, leaf), n in counts.items())


def plan_lora_targets(model: nn.Module, families, explicit_targets: list[str] | None = None,
                      *, rank: int = 16) -> LoraPlan:
    """Which modules and parameters of ``model`` get LoRA, and the coverage per family.

    ``explicit_targets`` (``lora.target_modules``) override ``families``; each entry must
    match a module or parameter by full name or dotted suffix. Works on a ``meta`` model.
    """
    families = list(dict.fromkeys(families or []))
    for family in families:
        if family not in FAMILIES:
            raise ConfigError(f"unknown LoRA family {family!r}{did_you_mean(family, FAMILIES)}; "
                              f"choose from {', '.join(FAMILIES)}")
    index = _ModelIndex(model)
    if explicit_targets:
        targets, left_out = _explicit_targets(index, list(explicit_targets), rank)
    elif families:
        targets, left_out = _family_targets(index, families, rank)
    else:
        raise ConfigError("no LoRA targets: lora.families is empty and lora.target_modules "
                          "is not set")
    config = getattr(model, "config", None)
    conv1d = _linear_types()[1]
    return LoraPlan(
        rank=rank,
        targets=tuple(targets),
        coverage=_coverage(targets, list(FAMILIES) + [OTHER]),
        num_layers=getattr(config, "num_hidden_layers", None),
        left_out=_summarise_left_out(left_out),
        explicit=bool(explicit_targets),
        fan_in_fan_out=any(isinstance(index.modules.get(t.name), conv1d) for t in targets),
    )


def render_coverage_table(plan: LoraPlan) -> str:
    """The plan as a plain-text table (rendered by rich), with what was left out below it."""
    from rich.console import Console
    from rich.table import Table

    title = f"LoRA coverage (r={plan.rank}" + (", explicit target_modules)" if plan.explicit
                                              else ")")
    table = Table(title=title, title_justify="left")
    for header in ("family", "modules", "layers", "names", "base params", "LoRA params"):
        table.add_column(header, justify="left" if header in ("family", "names") else "right")
    of_layers = f"/{plan.num_layers}" if plan.num_layers else ""
    for row in plan.coverage:
        table.add_row(row.family, str(row.modules), f"{row.layers}{of_layers}",
                      " ".join(row.names), f"{row.base_params:,}", f"{row.lora_params:,}")
    table.add_section()
    table.add_row("total", str(len(plan.targets)), "", "",
                  f"{sum(r.base_params for r in plan.coverage):,}", f"{plan.lora_params:,}")
    out = io.StringIO()
    console = Console(file=out, width=110, no_color=True, highlight=False, soft_wrap=False)
    console.print(table)
    for reason, leaf, count in plan.left_out:
        console.print(f"not adapted: {count} x {leaf} ({reason})", markup=False)
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines()).strip() + "\n"


# --------------------------------------------------------------------------- applying


def _adapted_names(peft_model) -> set[str]:
    """Full names (as in the base model) of every module/parameter PEFT actually wrapped."""
    from peft.tuners.lora import LoraLayer, ParamWrapper

    names = set()
    for name, module in peft_model.get_base_model().named_modules():
        if not isinstance(module, LoraLayer):
            continue
        clean = name.replace(".base_layer", "")
        names.add(f"{clean}.{module.parameter_name}" if isinstance(module, ParamWrapper)
                  else clean)
    return names


def _keep_adapters_fp32(peft_model) -> None:
    """LoRA weights train in float32 even on a bf16/fp16 base (PEFT casts most; make sure)."""
    import torch

    for name, param in peft_model.named_parameters():
        if "lora_" in name and param.dtype in (torch.bfloat16, torch.float16):
            param.data = param.data.float()


def apply_lora(model: nn.Module, lora_cfg):
    """Wrap ``model`` with LoRA per ``lora_cfg``; returns ``(peft_model, plan)``.

    Adapter weights are float32 whatever the base dtype; the set PEFT actually wrapped is
    checked against the plan, so a mismatch fails here rather than as a silent no-op.
    """
    from peft import LoraConfig as PeftLoraConfig
    from peft import TaskType, get_peft_model

    plan = plan_lora_targets(model, lora_cfg.families, lora_cfg.target_modules, rank=lora_cfg.r)
    if plan.target_parameters and lora_cfg.dropout:
        raise ConfigError(
            f"lora.dropout is {lora_cfg.dropout} but the plan adapts fused expert parameters "
            f"({plan.target_parameters[0]}, ...), where PEFT cannot apply dropout; set "
            "lora.dropout: 0 or drop 'moe' from lora.families"
        )
    peft_config = PeftLoraConfig(
        r=lora_cfg.r, lora_alpha=lora_cfg.alpha, lora_dropout=lora_cfg.dropout,
        task_type=TaskType.CAUSAL_LM, target_modules=plan.target_modules,
        target_parameters=plan.target_parameters or None, fan_in_fan_out=plan.fan_in_fan_out,
    )
    try:
        peft_model = get_peft_model(model, peft_config, autocast_adapter_dtype=True)
    except ValueError as error:
        raise ConfigError(f"PEFT refused the LoRA targets: {error}") from None
    _keep_adapters_fp32(peft_model)
    adapted, planned = _adapted_names(peft_model), {t.name for t in plan.targets}
    if adapted != planned:
        raise RuntimeError(
            f"PEFT adapted a different set than planned: missing {sorted(planned - adapted)[:5]}, "
            f"unexpected {sorted(adapted - planned)[:5]}"
        )
    return peft_model, plan


__all__ = ["FAMILIES", "CoverageRow", "LoraPlan", "Target", "apply_lora", "plan_lora_targets",
           "render_coverage_table"]
