"""LoRA's update inside one addmm: the same outputs and gradients as PEFT's forward."""

import pytest
import torch
from tiny import tiny_lora_model, tiny_model, tiny_tokenizer

from reasondistill.train.lora_fused import fused_lora_linears


def lora_model(kind="llama", dropout=0.0, dtype=torch.float32):
    return tiny_lora_model(kind, alpha=12, dropout=dropout, b_std=0.05, dtype=dtype)


def loss_and_grads(model, ids, autocast=False):
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        logits = model(input_ids=ids).logits
    loss = logits.float().square().mean()
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()
                           if p.requires_grad}


def count_peft_forwards(monkeypatch):
    """Calls of PEFT's own LoRA ``Linear.forward`` (the fused path never makes one)."""
    from peft.tuners.lora.layer import Linear

    calls = []
    real = Linear.forward
    monkeypatch.setattr(Linear, "forward",
                        lambda self, *a, **kw: calls.append(1) or real(self, *a, **kw))
    return calls


@pytest.mark.parametrize("kind", ["llama", "qwen3", "gpt2"])
def test_fused_lora_matches_peft_in_float32(kind, monkeypatch):
    model = lora_model(kind)
    ids = torch.randint(0, 200, (2, 11))
    calls = count_peft_forwards(monkeypatch)
    plain_loss, plain_grads = loss_and_grads(model, ids)
    adapted = len(calls)
    calls.clear()
    with fused_lora_linears(model) as patched:
        fused_loss, fused_grads = loss_and_grads(model, ids)
    assert patched == adapted > 0 and not calls  # every adapted linear took the addmm
    torch.testing.assert_close(fused_loss, plain_loss, rtol=1e-6, atol=1e-7)
    assert fused_grads.keys() == plain_grads.keys()
    for name in plain_grads:
        torch.testing.assert_close(fused_grads[name], plain_grads[name], rtol=1e-5, atol=1e-7)
    # leaving the context restores PEFT's forward
    loss_and_grads(model, ids)
    assert len(calls) == adapted


def test_fused_lora_under_bf16_autocast_stays_close_to_peft(monkeypatch):
    model = lora_model(dtype=torch.bfloat16)
    for name, param in model.named_parameters():
        if "lora_" in name:
            param.data = param.data.float()  # fp32 adapter on a bf16 base, as training runs
    ids = torch.randint(0, 200, (2, 11))
    plain_loss, plain_grads = loss_and_grads(model, ids, autocast=True)
    calls = count_peft_forwards(monkeypatch)
    with fused_lora_linears(model) as patched:
        fused_loss, fused_grads = loss_and_grads(model, ids, autocast=True)
    assert patched > 0 and not calls
    torch.testing.assert_close(fused_loss, plain_loss, rtol=2e-2, atol=1e-3)
    for name in plain_grads:
        assert fused_grads[name].dtype == torch.float32
        cosine = torch.nn.functional.cosine_similarity(fused_grads[name].flatten(),
                                                       plain_grads[name].flatten(), dim=0)
        assert cosine > 0.99, name


def test_dropout_and_disabled_adapters_keep_peft_forward(monkeypatch):
    calls = count_peft_forwards(monkeypatch)
    model = lora_model(dropout=0.1)
    with fused_lora_linears(model) as patched:
        loss_and_grads(model, torch.randint(0, 200, (1, 7)))
    assert patched == 0 and calls
    model = lora_model()
    calls.clear()
    with fused_lora_linears(model) as patched, model.disable_adapter(), torch.no_grad():
        model(input_ids=torch.randint(0, 200, (1, 7)))
    assert len(calls) == patched > 0  # patched, yet every call fell back to PEFT


def test_merged_and_dora_adapters_are_left_to_peft():
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    model = lora_model()
    model.merge_adapter()
    with fused_lora_linears(model) as patched:
        assert patched == 0
    dora = get_peft_model(tiny_model("llama", tiny_tokenizer()),
                          PeftLoraConfig(r=4, lora_alpha=8, use_dora=True,
                                         target_modules=["q_proj", "v_proj"]))
    with fused_lora_linears(dora) as patched:
        assert patched == 0
    plain = get_peft_model(tiny_model("llama", tiny_tokenizer()),
                           PeftLoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with fused_lora_linears(plain) as patched:
        assert patched == 2 * plain.config.num_hidden_layers  # the control: same set-up, no DoRA
