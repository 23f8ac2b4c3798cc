"""LoRA target planning and application on every tiny architecture (no downloads)."""

from __future__ import annotations

import pytest
import torch
from tiny import NEMOTRON_PATTERN
from torch import nn

from reasondistill.config import LoraConfig, ModelConfig
from reasondistill.errors import ConfigError
from reasondistill.lora import apply_lora, plan_lora_targets, render_coverage_table
from reasondistill.models import build_meta_model

ALL = ["attention", "mlp", "mamba", "moe"]
MAMBA_LAYERS = [i for i, c in enumerate(NEMOTRON_PATTERN) if c == "M"]
MOE_LAYERS = [i for i, c in enumerate(NEMOTRON_PATTERN) if c == "E"]
ATTN_LAYERS = [i for i, c in enumerate(NEMOTRON_PATTERN) if c == "*"]
MLP_LAYERS = [i for i, c in enumerate(NEMOTRON_PATTERN) if c == "-"]


def rows(plan):
    return {r.family: (r.modules, r.layers, r.names) for r in plan.coverage}


# (kind, families, {family: (modules, layers, leaf names)})
COVERAGE = [
    ("llama", ["attention", "mlp"], {
        "attention": (8, 2, ("k_proj", "o_proj", "q_proj", "v_proj")),
        "mlp": (6, 2, ("down_proj", "gate_proj", "up_proj"))}),
    ("qwen3", ["attention", "mlp"], {
        "attention": (8, 2, ("k_proj", "o_proj", "q_proj", "v_proj")),
        "mlp": (6, 2, ("down_proj", "gate_proj", "up_proj"))}),
    ("gpt2", ["attention", "mlp"], {
        "attention": (4, 2, ("c_attn", "c_proj")),
        "mlp": (4, 2, ("c_fc", "c_proj"))}),
    ("mamba2", ["mamba"], {"mamba": (2, 2, ("in_proj",))}),
    ("nemotron_h", ALL, {
        "attention": (4 * len(ATTN_LAYERS), len(ATTN_LAYERS),
                      ("k_proj", "o_proj", "q_proj", "v_proj")),
        "mlp": (2 * len(MLP_LAYERS), len(MLP_LAYERS), ("down_proj", "up_proj")),
        "mamba": (len(MAMBA_LAYERS), len(MAMBA_LAYERS), ("in_proj",)),
        # per MoE layer: fused experts.up_proj/down_proj + shared_experts.up_proj/down_proj
        "moe": (4 * len(MOE_LAYERS), len(MOE_LAYERS), ("down_proj", "up_proj"))}),
]


@pytest.mark.parametrize("kind, families, expected", COVERAGE, ids=[c[0] for c in COVERAGE])
def test_family_coverage_per_architecture(tiny_model_factory, kind, families, expected):
    model = tiny_model_factory(kind)
    plan = plan_lora_targets(model, families, rank=4)
    assert rows(plan) == expected
    assert plan.num_layers == model.config.num_hidden_layers
    names = plan.target_modules + plan.target_parameters
    assert not any(n.endswith("lm_head") for n in names)
    assert all(n in dict(model.named_modules()) for n in plan.target_modules)  # exact names


def test_gpt2_c_proj_split_by_block(tiny_model_factory):
    plan = plan_lora_targets(tiny_model_factory("gpt2"), ["attention"], rank=4)
    assert "transformer.h.0.attn.c_proj" in plan.target_modules
    assert "transformer.h.0.mlp.c_proj" not in plan.target_modules
    plan = plan_lora_targets(tiny_model_factory("gpt2"), ["mlp"], rank=4)
    assert plan.target_modules == ["transformer.h.0.mlp.c_fc", "transformer.h.0.mlp.c_proj",
                                   "transformer.h.1.mlp.c_fc", "transformer.h.1.mlp.c_proj"]
    assert plan.fan_in_fan_out  # GPT-2 Conv1D stores weights transposed


def test_nemotron_h_hybrid_targets(tiny_model_factory):
    model = tiny_model_factory("nemotron_h")
    plan = plan_lora_targets(model, ALL, rank=4)
    m, e = MAMBA_LAYERS[0], MOE_LAYERS[0]
    by_name = {t.name: t.family for t in plan.targets}
    assert by_name[f"model.layers.{m}.mixer.in_proj"] == "mamba"
    assert f"model.layers.{m}.mixer.out_proj" not in by_name  # PEFT refuses it on Mamba
    assert by_name[f"model.layers.{e}.mixer.experts.up_proj"] == "moe"
    assert f"model.layers.{e}.mixer.experts.down_proj" in plan.target_parameters
    assert by_name[f"model.layers.{e}.mixer.shared_experts.up_proj"] == "moe"  # not "mlp"
    assert by_name[f"model.layers.{MLP_LAYERS[0]}.mixer.up_proj"] == "mlp"
    assert not any(".gate" in n and "gate_proj" not in n for n in by_name)  # router untouched
    left_out = {leaf: reason for reason, leaf, _ in plan.left_out}
    assert "out_proj" in left_out and "lm_head" in left_out


def test_counts_match_hand_arithmetic_and_peft(tiny_model_factory):
    # tiny llama: hidden 32, 4 heads x 8, 2 kv heads -> q,o 32x32; k,v 16x32; mlp 32<->64
    plan = plan_lora_targets(tiny_model_factory("llama"), ["attention", "mlp"], rank=4)
    attention, mlp = plan.row("attention"), plan.row("mlp")
    assert attention.base_params == 2 * (1024 + 512 + 512 + 1024)
    assert attention.lora_params == 2 * 4 * ((32 + 32) * 2 + (32 + 16) * 2)
    assert mlp.base_params == 2 * 3 * 32 * 64
    assert mlp.lora_params == 2 * 3 * 4 * (32 + 64)
    # fused experts: one rank-r pair per expert, (4 experts, 16x32) -> 4*4*(16+32) each
    plan = plan_lora_targets(tiny_model_factory("nemotron_h"), ["moe"], rank=4)
    fused = [t for t in plan.targets if t.kind == "parameter"]
    assert {t.lora_params for t in fused} == {4 * 4 * (16 + 32)}


@pytest.mark.parametrize("kind", ["llama", "qwen3", "gpt2", "mamba2", "nemotron_h"])
def test_apply_lora_matches_plan_fp32_adapters_on_bf16_base(tiny_model_factory, tiny_tok, kind):
    families = {"mamba2": ["mamba"], "nemotron_h": ALL}.get(kind, ["attention", "mlp"])
    model = tiny_model_factory(kind, dtype=torch.bfloat16)
    peft_model, plan = apply_lora(model, LoraConfig(r=4, alpha=8, families=families))
    trainable, _ = peft_model.get_nb_trainable_parameters()
    assert trainable == plan.lora_params
    lora = {n: p for n, p in peft_model.named_parameters() if "lora_" in n}
    assert lora and all(p.dtype == torch.float32 and p.requires_grad for p in lora.values())
    base = {n: p for n, p in peft_model.named_parameters() if "lora_" not in n}
    assert not any(p.requires_grad for p in base.values())
    # transformers keeps some modules in fp32 on purpose (recent releases: NemotronH's router)
    kept_fp32 = {*(model._keep_in_fp32_modules or []), *(model._keep_in_fp32_modules_strict or [])}
    downcast = [p for n, p in base.items() if not any(k in n for k in kept_fp32)]
    assert downcast and all(p.dtype == torch.bfloat16 for p in downcast)
    ids = torch.tensor([tiny_tok("What is 2+3? The answer is 5.")["input_ids"]])
    peft_model.train()
    peft_model(input_ids=ids, labels=ids).loss.backward()
    lora_b_grads = [p.grad for n, p in lora.items() if "lora_B" in n]
    assert all(g is not None and g.abs().sum() > 0 for g in lora_b_grads)


def test_absent_family_is_an_error_naming_what_exists(tiny_model_factory):
    with pytest.raises(ConfigError) as error:
        plan_lora_targets(tiny_model_factory("llama"), ["attention", "mamba"])
    message = str(error.value)
    assert "'mamba'" in message and "LlamaForCausalLM" in message
    assert "q_proj" in message and "gate_proj" in message
    with pytest.raises(ConfigError, match="'moe'"):
        plan_lora_targets(tiny_model_factory("qwen3"), ["moe"])
    with pytest.raises(ConfigError, match="did you mean 'attention'"):
        plan_lora_targets(tiny_model_factory("llama"), ["atention"])
    with pytest.raises(ConfigError, match="families is empty"):
        plan_lora_targets(tiny_model_factory("llama"), [])


def test_explicit_targets_override_families(tiny_model_factory):
    model = tiny_model_factory("llama")
    plan = plan_lora_targets(model, ["attention", "mlp"], ["q_proj", "layers.1.self_attn.v_proj"])
    assert plan.explicit
    assert plan.target_modules == ["model.layers.0.self_attn.q_proj",
                                   "model.layers.1.self_attn.q_proj",
                                   "model.layers.1.self_attn.v_proj"]
    assert rows(plan) == {"attention": (3, 2, ("q_proj", "v_proj"))}
    plan = plan_lora_targets(model, ["attention"], ["lm_head"])  # allowed when named
    assert plan.target_modules == ["lm_head"] and plan.coverage[0].family == "other"


def test_explicit_target_matching_nothing_is_an_error(tiny_model_factory):
    with pytest.raises(ConfigError) as error:
        plan_lora_targets(tiny_model_factory("llama"), ["attention"], ["q_prj"])
    assert "'q_prj'" in str(error.value) and "did you mean 'q_proj'" in str(error.value)


def test_explicit_fused_experts_and_refused_mamba_out_proj(tiny_model_factory):
    plan = plan_lora_targets(tiny_model_factory("nemotron_h"), [], ["experts.up_proj"])
    assert plan.target_modules == []
    assert plan.target_parameters == [f"model.layers.{i}.mixer.experts.up_proj"
                                      for i in MOE_LAYERS]
    with pytest.raises(ConfigError, match="out_proj"):
        plan_lora_targets(tiny_model_factory("mamba2"), [], ["out_proj"])


def test_dropout_with_fused_experts_is_a_config_error(tiny_model_factory):
    with pytest.raises(ConfigError, match="dropout"):
        apply_lora(tiny_model_factory("nemotron_h"),
                   LoraConfig(families=["moe"], dropout=0.1))


class _SeparateExpertsMoE(nn.Module):
    """Experts as separate nn.Linear modules plus a Linear router (remote-code style)."""

    def __init__(self, hidden: int, inner: int, experts: int = 3) -> None:
        super().__init__()
        self.gate = nn.Linear(hidden, experts, bias=False)
        self.experts = nn.ModuleList(
            nn.ModuleDict({"up_proj": nn.Linear(hidden, inner, bias=False),
                           "down_proj": nn.Linear(inner, hidden, bias=False)})
            for _ in range(experts))

    def forward(self, x):
        weights = self.gate(x).softmax(-1)
        outs = [e["down_proj"](torch.relu(e["up_proj"](x))) for e in self.experts]
        return sum(w.unsqueeze(-1) * o for w, o in zip(weights.unbind(-1), outs))


def test_separate_linear_experts_targeted_as_modules_router_left_out(tiny_model_factory, tiny_tok):
    model = tiny_model_factory("llama")
    for layer in model.model.layers:
        layer.mlp = _SeparateExpertsMoE(32, 16)
    plan = plan_lora_targets(model, ["moe"], rank=2)
    assert rows(plan) == {"moe": (2 * 2 * 3, 2, ("down_proj", "up_proj"))}
    assert "model.layers.0.mlp.experts.2.up_proj" in plan.target_modules
    assert not plan.target_parameters
    assert ("MoE router", "gate", 2) in plan.left_out
    with pytest.raises(ConfigError, match="'mlp'"):  # experts are not a dense MLP
        plan_lora_targets(model, ["mlp"])
    peft_model, _ = apply_lora(model, LoraConfig(r=2, alpha=4, families=["moe"]))
    ids = torch.tensor([tiny_tok("2+3=5")["input_ids"]])
    assert torch.isfinite(peft_model(input_ids=ids).logits).all()


def test_dry_run_meta_model_plans_like_the_real_one(tiny_model_factory, tiny_tok, tmp_path):
    model = tiny_model_factory("nemotron_h")
    model.save_pretrained(tmp_path)
    tiny_tok.save_pretrained(tmp_path)
    meta = build_meta_model(ModelConfig(name=str(tmp_path)))
    assert {p.device.type for p in meta.parameters()} == {"meta"}
    real, dry = plan_lora_targets(model, ALL, rank=8), plan_lora_targets(meta, ALL, rank=8)
    assert dry.targets == real.targets and dry.coverage == real.coverage


def test_render_coverage_table(tiny_model_factory):
    plan = plan_lora_targets(tiny_model_factory("nemotron_h"), ALL, rank=4)
    text = render_coverage_table(plan)
    assert "LoRA coverage (r=4)" in text
    for family in ALL + ["total"]:
        assert family in text
    assert f"{plan.lora_params:,}" in text
    assert f"{len(MAMBA_LAYERS)}/{len(NEMOTRON_PATTERN)}" in text
    assert "not adapted: 2 x out_proj" in text and "lm_head (output head)" in text
