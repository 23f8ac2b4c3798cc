"""The fused, chunked output head + cross-entropy: same loss and gradients as full logits."""

import pytest
import torch
from test_trainer_loss import collate, make_trainer, reference_loss
from tiny import tiny_lora_model, tiny_model, tiny_tokenizer

from reasondistill.data import Example, build_record
from reasondistill.tokenize import tokenize_record
from reasondistill.train import head_loss
from reasondistill.train.collate import PackedCollator, PaddedCollator
from reasondistill.train.packing import packed_attention, packed_forward


@pytest.fixture(scope="module")
def rows():
    tok = tiny_tokenizer()
    examples = [Example(id=str(i), prompt=f"What is {i} times {i}?" + " now" * i,
                        trace=f"Square {i}." + " fine" * (2 * i), answer=str(i * i))
                for i in range(1, 6)]
    return [tokenize_record(tok, build_record(e), max_length=256) for e in examples]


@pytest.mark.parametrize("chunk_rows", [1, 3, 10, 64])
def test_chunked_head_loss_equals_full_logits_cross_entropy(chunk_rows, monkeypatch):
    torch.manual_seed(0)
    vocab, dim = 50, 8
    monkeypatch.setattr(head_loss, "CHUNK_BYTES", chunk_rows * 4 * vocab)
    hidden = torch.randn(10, dim, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(vocab, dim, dtype=torch.float64)
    targets = torch.randint(0, vocab, (10,))
    ours = head_loss.head_cross_entropy(hidden, weight, targets) / 7
    expected = torch.nn.functional.cross_entropy(hidden @ weight.T, targets,
                                                 reduction="sum") / 7
    torch.testing.assert_close(ours, expected.float())
    (grad_ours,) = torch.autograd.grad(ours, hidden)
    (grad_expected,) = torch.autograd.grad(expected, hidden)
    torch.testing.assert_close(grad_ours, grad_expected)



@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_kept_chunk_buffers_are_reused_and_change_nothing(dtype, monkeypatch):
    torch.manual_seed(1)
    vocab, dim, chunk = 40, 8, 4
    monkeypatch.setattr(head_loss, "CHUNK_BYTES", chunk * 4 * vocab)
    weight = torch.randn(vocab, dim, dtype=dtype)

    def loss_and_grad(rows):
        hidden = torch.randn(rows, dim, dtype=dtype, generator=torch.Generator().manual_seed(rows),
                             requires_grad=True)
        targets = torch.randint(0, vocab, (rows,), generator=torch.Generator().manual_seed(rows))
        loss = head_loss.head_cross_entropy(hidden, weight, targets)
        return (loss, *torch.autograd.grad(loss, hidden))

    sizes = [10, 3, 7, 10]  # a short last chunk, fewer rows than a chunk, then as before
    fresh = [loss_and_grad(rows) for rows in sizes]
    def held():
        return [(b.data_ptr(), tuple(b.shape)) for pair in head_loss._kept_buffers.get().values()
                for b in pair]

    with head_loss.kept_chunk_buffers():
        kept = [loss_and_grad(rows) for rows in sizes[:2]]
        first = held()
        kept += [loss_and_grad(rows) for rows in sizes[2:]]
        assert held() == first and [shape for _, shape in first] == [(chunk, vocab)] * 2
    assert head_loss._kept_buffers.get() is None
    for (loss, grad), (kept_loss, kept_grad) in zip(fresh, kept, strict=True):
        assert torch.equal(loss, kept_loss) and torch.equal(grad, kept_grad)


def loss_and_grads(model, rows, tmp_path, layout):
    collator = PackedCollator() if layout == "packed" else PaddedCollator(pad_token_id=0)
    trainer = make_trainer(model, collator, tmp_path)
    batch = collate(collator, rows)
    model.zero_grad()
    if layout == "packed":
        lengths = batch.pop("sequence_lengths").tolist()
        with packed_attention(model), packed_forward(lengths):
            loss = trainer.compute_loss(model, batch)
    else:
        loss = trainer.compute_loss(model, batch)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()
                           if p.requires_grad}


@pytest.mark.parametrize("layout", ["packed", "padded"])
@pytest.mark.parametrize("kind", ["llama", "qwen3"])
def test_trainer_takes_the_fused_head_with_the_same_loss_and_gradients(kind, layout, rows,
                                                                       tmp_path, monkeypatch):
    model = tiny_lora_model(kind)
    assert head_loss.fused_head_applies(model)
    calls = []
    real = head_loss._HeadCrossEntropy.apply
    monkeypatch.setattr(head_loss._HeadCrossEntropy, "apply",
                        lambda *a: calls.append(1) or real(*a))
    fused_loss, fused_grads = loss_and_grads(model, rows, tmp_path, layout)
    assert calls  # the fused path really ran
    with torch.no_grad():
        torch.testing.assert_close(fused_loss, reference_loss(model, rows), rtol=1e-5,
                                   atol=1e-5)
    monkeypatch.setattr("reasondistill.train.trainer.DistillTrainer._head_can_fuse",
                        lambda self, m: False)
    calls.clear()
    plain_loss, plain_grads = loss_and_grads(model, rows, tmp_path, layout)
    assert not calls
    torch.testing.assert_close(fused_loss, plain_loss, rtol=1e-6, atol=1e-6)
    assert fused_grads.keys() == plain_grads.keys() and len(fused_grads) > 0
    for name in fused_grads:
        torch.testing.assert_close(fused_grads[name], plain_grads[name], rtol=1e-4, atol=1e-6)
    # after the step the head is the head again
    assert model.get_output_embeddings()(torch.ones(1, model.config.hidden_size)).shape[-1] \
        == model.config.vocab_size


def test_fused_head_only_where_the_head_is_a_plain_frozen_linear():
    tok = tiny_tokenizer()
    assert not head_loss.fused_head_applies(tiny_model("llama", tok))  # head still trainable
    assert not head_loss.fused_head_applies(tiny_lora_model("gpt2"))  # not a known plain-head type
    model = tiny_lora_model("llama")
    model.get_output_embeddings().weight.requires_grad_(True)
    assert not head_loss.fused_head_applies(model)
