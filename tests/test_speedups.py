"""Every speed-up that reaches into a library checks its contract and falls back.

For each allow-listed model type the speed-ups pass their self-checks (their numbers match
the stock path); for each speed-up, a simulated change of the library's structure makes the
check fail, one warning line names the speed-up, and the loss, the generation or the
training run is the stock path's.
"""


import pytest
import torch
from tiny import (
    SPEEDUP_KINDS,
    reference_loss,
    tiny_lora_model,
    tiny_model,
    tiny_rows,
    tiny_tokenizer,
)

from reasondistill import speedups
from reasondistill.speedups import CONTRACTS, usable
from reasondistill.train.collate import PackedCollator

TRAIN_SPEEDUPS = ("packed_attention", "fused_head", "fused_lora", "lean_norms",
                  "peft_input_cast")


@pytest.fixture(autouse=True)
def fresh_warnings():
    speedups._warned.clear()
    yield
    speedups._warned.clear()


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "reasondistill.speedups"]


@pytest.fixture(scope="module")
def rows():
    return tiny_rows()


def trained_step_loss(model, rows, tmp_path, *, bf16=False):
    """The loss of one training step as the trainer computes it, under every speed-up the
    contracts allow (packed rows only where packing passed its check)."""
    from transformers import TrainingArguments

    from reasondistill.train.collate import PaddedCollator
    from reasondistill.train.packing import packed_forward
    from reasondistill.train.trainer import DistillTrainer

    packed = usable("packed_attention", model)
    collator = PackedCollator() if packed else PaddedCollator(pad_token_id=0)
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True,
                             bf16=bf16)
    trainer = DistillTrainer(model=model, args=args, train_dataset=[], data_collator=collator)
    batch = collator([{"input_ids": r.input_ids, "labels": r.labels} for r in rows])
    lengths = batch.pop("sequence_lengths", None)
    with trainer.training_speedups():
        if lengths is None:
            loss = trainer.compute_loss(model, batch)
        else:
            with packed_forward(lengths.tolist()):
                loss = trainer.compute_loss(model, batch)
        loss.backward()
    return loss.detach(), trainer


# --- every allow-listed model type: the checks pass, the numbers are the stock path's --------

@pytest.mark.parametrize("kind", SPEEDUP_KINDS)
def test_every_allow_listed_type_passes_every_check(kind, caplog):
    model = tiny_lora_model(kind)
    for name in TRAIN_SPEEDUPS:
        assert usable(name, model), name
    assert usable("kv_cache", tiny_model(kind, tiny_tokenizer())) or kind == "mistral"
    assert usable("softmax_backward")
    assert warnings_of(caplog) == []


@pytest.mark.parametrize("kind", SPEEDUP_KINDS)
def test_every_allow_listed_type_trains_with_the_stock_loss(kind, rows, tmp_path):
    from reasondistill.train.lean_layers import known_norms
    from reasondistill.train.lora_fused import plain_lora_linears

    model = tiny_lora_model(kind)
    assert known_norms(model) and plain_lora_linears(model)  # the speed-ups do apply
    with torch.no_grad():
        expected = reference_loss(model, rows)
    got, trainer = trained_step_loss(model, rows, tmp_path)
    assert trainer._fused_head
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_mistral_sliding_window_cache_is_not_a_failure(caplog):
    # Mistral's sliding-window layers are not plain static layers: the compacted cache
    # does not apply, silently — not a broken contract.
    assert not usable("kv_cache", tiny_model("mistral", tiny_tokenizer()))
    assert warnings_of(caplog) == []


def test_a_type_off_the_allow_list_is_not_a_failure(caplog):
    model = tiny_lora_model("gpt2")
    assert not usable("fused_head", model) and not usable("lean_norms", model)
    assert warnings_of(caplog) == []


def test_a_bf16_run_keeps_every_speed_up(rows, tmp_path, caplog):
    # checked as training runs: bf16 base, fp32 adapters, autocast, PEFT's casts off
    from transformers import TrainingArguments

    from reasondistill.train.trainer import DistillTrainer

    model = tiny_lora_model("llama", dtype=torch.bfloat16)
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True,
                             bf16=True, max_steps=1, per_device_train_batch_size=2,
                             save_strategy="no")
    dataset = [{"input_ids": r.input_ids, "labels": r.labels} for r in rows]
    trainer = DistillTrainer(model=model, args=args, train_dataset=dataset,
                             data_collator=PackedCollator())
    trainer.train()
    assert trainer._fused_head and trainer.state.global_step == 1
    assert warnings_of(caplog) == []


# --- a simulated change of each library structure: fall back, warn once, same numbers -------

def break_packed_attention(monkeypatch, model):
    # a model whose layers stop routing attention through transformers' interface
    monkeypatch.setattr(type(model), "set_attn_implementation", lambda self, name: None,
                        raising=False)
    for module in model.modules():
        if hasattr(module, "set_attn_implementation"):
            monkeypatch.setattr(module, "set_attn_implementation", lambda name: None,
                                raising=False)


def break_packed_kernel(monkeypatch, model):
    # numbers, not structure: the packed path attends without the causal mask (as a kernel
    # whose flags changed meaning would), so the check's comparison must catch it
    from reasondistill.train import packing

    def not_causal(module, q, k, v, *args, **kwargs):
        kwargs["is_causal"] = False
        return packing.sdpa_attention_forward(module, q, k, v, None, **kwargs)[0]

    monkeypatch.setattr(packing, "explicit_causal_attention", not_causal)


def break_fused_head(monkeypatch, model):
    # a release that soft-caps the logits after the head (as Gemma 2 does)
    model.register_forward_hook(
        lambda module, args, output: output.__setitem__("logits", 2 * torch.tanh(output.logits / 2))
        or output)


def break_fused_lora(monkeypatch, model):
    # a PEFT release that changes what its LoRA Linear computes (here: the update doubled)
    from peft.tuners.lora.layer import Linear

    stock = Linear.forward

    def new_forward(self, x, *args, **kwargs):
        base = self.base_layer(x)
        return 2 * stock(self, x, *args, **kwargs) - base

    monkeypatch.setattr(Linear, "forward", new_forward)


def break_lean_norms(monkeypatch, model):
    # an RMSNorm whose forward changes (Gemma-style 1 + weight), class name unchanged
    from reasondistill.train.lean_layers import known_norms

    norm_class = type(known_norms(model)[0])
    stock = norm_class.forward
    monkeypatch.setattr(norm_class, "forward",
                        lambda self, x: stock(self, x) + x * 0.5)


def break_peft_input_cast(monkeypatch, model):
    import peft.helpers

    monkeypatch.delattr(peft.helpers, "disable_input_dtype_casting")


BREAKERS = [  # (the speed-up whose check must fail, the simulated library change)
    ("packed_attention", break_packed_attention),
    ("packed_attention", break_packed_kernel),
    ("fused_head", break_fused_head),
    ("fused_lora", break_fused_lora),
    ("lean_norms", break_lean_norms),
    ("peft_input_cast", break_peft_input_cast),
]


@pytest.mark.parametrize(("name", "breaker"), BREAKERS, ids=[b.__name__ for _, b in BREAKERS])
def test_a_changed_structure_falls_back_with_one_warning_and_the_stock_loss(
        name, breaker, rows, tmp_path, monkeypatch, caplog):
    model = tiny_lora_model("llama")
    breaker(monkeypatch, model)
    assert not usable(name, model)
    assert all(usable(other, model) for other in TRAIN_SPEEDUPS if other != name)
    with torch.no_grad():
        expected = reference_loss(model, rows)  # through the (changed) library itself
    got, _ = trained_step_loss(model, rows, tmp_path, bf16=(name == "peft_input_cast"))
    tolerance = 2e-2 if name == "peft_input_cast" else 1e-5  # bf16 autocast for that one
    torch.testing.assert_close(got, expected, rtol=tolerance, atol=tolerance)
    messages = warnings_of(caplog)
    assert len(messages) == 1 and repr(name) in messages[0] and "stock path" in messages[0]


def test_an_exception_inside_a_check_means_the_stock_path(monkeypatch, caplog):
    def exploding(model):
        raise KeyError("a renamed attribute")

    monkeypatch.setitem(CONTRACTS, "fused_lora",
                        speedups.Contract("fused_lora", "test", exploding))
    model = tiny_lora_model("llama")
    assert not usable("fused_lora", model)
    assert not usable("fused_lora", model)
    assert len(warnings_of(caplog)) == 1  # once per speed-up and process


def test_a_broken_private_softmax_backward_uses_the_public_formula(monkeypatch, caplog):
    from reasondistill.train.lean_layers import private_softmax_backward, softmax_to

    scores = torch.randn(2, 3, 7, dtype=torch.bfloat16, requires_grad=True)
    grad = torch.randn(2, 3, 7, dtype=torch.bfloat16)

    def grad_of_softmax(enabled: bool):
        scores.grad = None
        with private_softmax_backward(enabled):
            softmax_to(scores, torch.bfloat16).backward(grad)
        return scores.grad.clone()

    assert usable("softmax_backward")
    private, public = grad_of_softmax(True), grad_of_softmax(False)
    torch.testing.assert_close(public, private, rtol=2e-2, atol=2e-2)
    assert private.abs().sum() > 0

    broken_calls = []
    monkeypatch.setattr(torch.ops.aten, "_softmax_backward_data",
                        lambda g, p, dim, dtype: broken_calls.append(1) or torch.zeros_like(g))
    assert not usable("softmax_backward")  # the check compares it with the formula
    assert [m for m in warnings_of(caplog) if "softmax_backward" in m]
    torch.testing.assert_close(grad_of_softmax(usable("softmax_backward")), public)
    assert len(broken_calls) == 2  # the two checks called it; the backward did not


def test_a_changed_cache_keyword_falls_back_to_stock_generation(monkeypatch, caplog):
    from reasondistill.evaluate import generate, kv_cache

    tok = tiny_tokenizer()
    model = tiny_model("llama", tok)
    prompts = ["What is 2+3?", "Convert 1011 from binary, please, step by step."]

    def outputs():
        backend = generate.TransformersBackend(model, tok, max_new_tokens=12, batch_size=8,
                                               chunk_tokens=4, prefill_rows=1)
        return backend, [[g.text for g in samples] for samples in backend.generate(prompts)]

    backend, expected = outputs()
    assert backend.cache_surgery
    # a release that renames the cache keyword again: the model ignores ours
    monkeypatch.setattr(kv_cache, "cache_argument", lambda model: "kv_cache_renamed")
    monkeypatch.setattr(type(model), "forward", _ignoring_kwarg(type(model).forward,
                                                                "kv_cache_renamed"))
    backend, got = outputs()
    assert not backend.cache_surgery
    assert got == expected
    assert any("'kv_cache'" in m for m in warnings_of(caplog))


def _ignoring_kwarg(forward, name):
    def patched(self, *args, **kwargs):
        kwargs.pop(name, None)
        return forward(self, *args, **kwargs)
    return patched


def test_a_run_with_every_speed_up_broken_completes(tmp_path, tiny_model_dir, monkeypatch,
                                                    caplog):
    """The whole recipe, every training speed-up's check failing: the run completes on the
    stock paths, padded instead of packed, with one warning per speed-up."""
    from test_train import make_config

    from reasondistill.train.recipe import run_training

    def failing(*args):
        raise AttributeError("simulated: the library's structure changed")

    for name in TRAIN_SPEEDUPS:
        monkeypatch.setitem(CONTRACTS, name, speedups.Contract(name, "test", failing))
    cfg = make_config(tmp_path, tiny_model_dir)
    summary = run_training(cfg)
    assert all(p["completed"] and not p["packed"] for p in summary["phases"])
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").is_file()
    named = {name for name in TRAIN_SPEEDUPS for m in warnings_of(caplog) if repr(name) in m}
    assert named == set(TRAIN_SPEEDUPS) - {"peft_input_cast"}  # that one only under bf16
    assert len(warnings_of(caplog)) == len(named)
