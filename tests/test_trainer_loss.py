"""The trainer's loss: completion tokens only, identical packed or padded, head only where needed."""

import contextlib

import pytest
import torch
from tiny import reference_loss, tiny_model, tiny_rows, tiny_tokenizer
from transformers import TrainingArguments

from reasondistill.errors import ReasondistillError
from reasondistill.train.collate import PackedCollator, PaddedCollator, supports_packing
from reasondistill.train.packing import packed_attention, packed_forward
from reasondistill.train.trainer import DistillTrainer


@pytest.fixture(scope="module")
def rows():
    return tiny_rows()


def make_trainer(model, collator, tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    return DistillTrainer(model=model, args=args, train_dataset=[], data_collator=collator)


def collate(collator, rows):
    return collator([{"input_ids": r.input_ids, "labels": r.labels} for r in rows])


def trainer_loss(model, rows, collator, tmp_path):
    """The loss as the training step computes it (packed rows inside the packed attention)."""
    trainer = make_trainer(model, collator, tmp_path)
    batch = collate(collator, rows)
    lengths = batch.pop("sequence_lengths", None)
    if lengths is None:
        return trainer.compute_loss(model, batch)
    with packed_attention(model), packed_forward(lengths.tolist()):
        return trainer.compute_loss(model, batch)


@pytest.mark.parametrize("layout", ["packed", "padded"])
@pytest.mark.parametrize("kind", ["llama", "qwen3", "gpt2"])
def test_trainer_loss_equals_plain_completion_cross_entropy(rows, layout, kind, tmp_path):
    model = tiny_model(kind, tiny_tokenizer())
    collator = PackedCollator() if layout == "packed" else PaddedCollator(pad_token_id=0)
    expected = reference_loss(model, rows)
    got = trainer_loss(model, rows, collator, tmp_path)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_packed_attention_keeps_sequences_apart_and_plain_sdpa_does_not(rows):
    """Logits of the second sequence in a packed row equal its logits alone only with the
    packed attention; plain SDPA over the same row (the control) attends across."""
    model = tiny_model("llama", tiny_tokenizer())
    batch = collate(PackedCollator(), rows)
    first = len(rows[0].input_ids)
    with torch.no_grad():
        alone = model(input_ids=torch.tensor([rows[1].input_ids])).logits[0]
        span = slice(first, first + len(rows[1].input_ids))
        with packed_attention(model), packed_forward(batch["sequence_lengths"].tolist()):
            packed = model(input_ids=batch["input_ids"],
                           position_ids=batch["position_ids"]).logits[0, span]
        leaked = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                       attention_mask=torch.ones_like(batch["input_ids"])).logits[0, span]
    torch.testing.assert_close(packed, alone, rtol=1e-5, atol=1e-5)
    assert (leaked - alone).abs().max() > 1e-3


def test_packed_gradients_match_padded_with_activation_checkpointing(rows, tmp_path):
    """Checkpointing recomputes the forward during backward: it must stay per sequence."""
    grads = {}
    for layout, collator in (("packed", PackedCollator()), ("padded", PaddedCollator(0))):
        model = tiny_model("llama", tiny_tokenizer()).train()
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        trainer = make_trainer(model, collator, tmp_path)
        trainer.current_gradient_accumulation_steps = 1  # normally set by the training loop
        batch = collate(collator, rows)
        with packed_attention(model) if layout == "packed" else contextlib.nullcontext():
            trainer.training_step(model, batch)
        grads[layout] = model.model.layers[0].self_attn.q_proj.weight.grad.clone()
    assert grads["packed"].abs().sum() > 0
    torch.testing.assert_close(grads["packed"], grads["padded"], rtol=1e-4, atol=1e-6)


def test_a_model_that_bypasses_the_attention_interface_is_refused():
    with pytest.raises(ReasondistillError, match="packing"):
        with packed_forward([3, 4]):
            pass  # no attention call happened inside


def test_prompt_tokens_do_not_affect_the_loss_gradient(rows, tmp_path):
    """Changing a prompt *label* (not the input) must not change the loss."""
    model = tiny_model("llama", tiny_tokenizer())
    collator = PackedCollator()
    base = trainer_loss(model, rows, collator, tmp_path)
    altered = [type(r)(**{**r.__dict__, "labels": [0 if i < r.prompt_span[1] else label
                                                    for i, label in enumerate(r.labels)]})
               for r in rows]
    changed = trainer_loss(model, altered, collator, tmp_path)
    assert not torch.allclose(base, changed)  # sanity: labels on the prompt would count...
    for row in rows:  # ...and ours never put them there
        assert set(row.labels[:row.prompt_span[1]]) == {-100}


@pytest.mark.parametrize("kind,packable", [("llama", True), ("qwen3", True), ("gpt2", True),
                                           ("mamba2", False), ("nemotron_h", False)])
def test_stateful_models_are_never_packed(kind, packable):
    assert supports_packing(tiny_model(kind, tiny_tokenizer())) is packable


def test_packed_collator_restarts_positions_per_sequence(rows):
    batch = PackedCollator()([{"input_ids": r.input_ids, "labels": r.labels} for r in rows])
    positions = batch["position_ids"][0].tolist()
    starts = [i for i, p in enumerate(positions) if p == 0]
    assert starts == [0] + list(torch.tensor([len(r.input_ids) for r in rows]).cumsum(0)[:-1])
    assert batch["input_ids"].shape == (1, sum(len(r.input_ids) for r in rows))


def test_bf16_training_skips_peft_input_casts_without_changing_the_loss(rows, tmp_path):
    """Under bf16 autocast the trainer turns off PEFT's cast of LoRA inputs to float32 (autocast
    casts them back to bf16 anyway): the loss and gradients are bit-identical, and the switch
    is undone after training."""
    from peft import LoraConfig, get_peft_model
    from peft.helpers import disable_input_dtype_casting
    from peft.tuners.tuners_utils import BaseTunerLayer
    from transformers import TrainerCallback

    tok = tiny_tokenizer()
    model = get_peft_model(tiny_model("llama", tok).to(torch.bfloat16),
                           LoraConfig(r=4, target_modules=["q_proj", "down_proj"]),
                           autocast_adapter_dtype=True)
    lora_layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    batch = collate(PackedCollator(), rows)
    lengths = batch.pop("sequence_lengths").tolist()

    def loss_and_grads(cast_inputs: bool):
        model.zero_grad()
        with (packed_attention(model), packed_forward(lengths),
              torch.autocast("cpu", dtype=torch.bfloat16),
              disable_input_dtype_casting(model, active=not cast_inputs)):
            loss = model(**{k: v for k, v in batch.items() if k != "position_seq_lengths"}).loss
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters() if p.requires_grad]

    (loss_a, grads_a), (loss_b, grads_b) = loss_and_grads(True), loss_and_grads(False)
    assert torch.equal(loss_a, loss_b)
    assert all(torch.equal(a, b) for a, b in zip(grads_a, grads_b))

    seen = []

    class Probe(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            seen.append({layer.cast_input_dtype_enabled for layer in lora_layers})

    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True, bf16=True,
                             max_steps=1, per_device_train_batch_size=2, save_strategy="no")
    dataset = [{"input_ids": r.input_ids, "labels": r.labels} for r in rows]
    DistillTrainer(model=model, args=args, train_dataset=dataset, data_collator=PackedCollator(),
                   callbacks=[Probe()]).train()
    assert seen == [{False}]
    assert {layer.cast_input_dtype_enabled for layer in lora_layers} == {True}


@pytest.mark.parametrize("heads,kv_heads", [(4, 4), (6, 2)])
@pytest.mark.parametrize("sliced", [False, True])
def test_explicit_attention_matches_the_fused_kernel_forward_and_backward(heads, kv_heads,
                                                                         sliced):
    """The matmul/softmax path used for short CPU sequences computes the same causal
    attention (grouped-query included) as SDPA, values and gradients — also on one sequence
    sliced out of a packed row, as training calls it."""
    from types import SimpleNamespace

    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from reasondistill.train.packing import explicit_causal_attention

    torch.manual_seed(0)
    module = SimpleNamespace(is_causal=True, training=False, num_key_value_groups=heads // kv_heads)
    width = 50 if sliced else 37
    q = torch.randn(1, heads, width, 16, dtype=torch.float64, requires_grad=True)
    k = torch.randn(1, kv_heads, width, 16, dtype=torch.float64, requires_grad=True)
    v = torch.randn(1, kv_heads, width, 16, dtype=torch.float64, requires_grad=True)
    if sliced:
        q, k, v = (t[:, :, 6:43] for t in (q, k, v))
    ours = explicit_causal_attention(module, q, k, v, scaling=0.3)
    fused = sdpa_attention_forward(module, q, k, v, None, scaling=0.3)[0]
    assert ours.shape == fused.shape == (1, 37, heads, 16)
    torch.testing.assert_close(ours, fused)
    grads = [torch.autograd.grad((out * torch.arange(out.numel()).view_as(out).sin()).sum(),
                                 (q, k, v)) for out in (ours, fused)]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


def test_packed_loss_is_the_same_through_either_attention_kernel(rows, tmp_path, monkeypatch):
    from reasondistill.train import packing

    model = tiny_model("llama", tiny_tokenizer())
    calls = []
    real = packing.explicit_causal_attention
    monkeypatch.setattr(packing, "explicit_causal_attention",
                        lambda *a, **kw: calls.append(1) or real(*a, **kw))
    explicit = trainer_loss(model, rows, PackedCollator(), tmp_path)
    assert calls  # the short CPU sequences really took the explicit path
    monkeypatch.setattr(packing, "EXPLICIT_ATTENTION_MAX_TOKENS", 0)  # fused kernel only
    calls.clear()
    fused = trainer_loss(model, rows, PackedCollator(), tmp_path)
    assert not calls
    torch.testing.assert_close(explicit, fused)
