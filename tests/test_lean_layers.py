"""RMSNorm and attention softmax that keep less for backward: same forward, same gradients."""

import pytest
import torch
from tiny import tiny_lora_model, tiny_model, tiny_tokenizer

from reasondistill.train.lean_layers import lean_norms, rms_norm, softmax_to


def llama_rms_norm(x, weight, eps):
    """transformers' LlamaRMSNorm.forward, written out."""
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


def saved_bytes(fn, *args):
    """Bytes autograd keeps for the backward pass of ``fn(*args)`` (parameters excluded)."""
    kept = {}

    def pack(tensor):
        if not isinstance(tensor, torch.nn.Parameter):
            kept[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        fn(*args)
    return sum(kept.values())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rms_norm_forward_is_llamas_bit_for_bit(dtype):
    torch.manual_seed(0)
    x = torch.randn(3, 7, 32, dtype=dtype) * 3
    weight = (torch.rand(32) + 0.5).to(dtype)
    assert torch.equal(rms_norm(x, weight, 1e-6), llama_rms_norm(x, weight, 1e-6))


def test_rms_norm_gradients_are_exact_in_double_and_llamas_in_float32():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 16, dtype=torch.float64, requires_grad=True)
    weight = (torch.rand(16, dtype=torch.float64) + 0.5).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, w: rms_norm(a, w, 1e-5), (x, weight))
    x, weight = x.detach().float().requires_grad_(), weight.detach().float().requires_grad_()
    probe = torch.randn(2, 5, 16)
    ours = torch.autograd.grad((rms_norm(x, weight, 1e-5) * probe).sum(), (x, weight))
    theirs = torch.autograd.grad((llama_rms_norm(x, weight, 1e-5) * probe).sum(), (x, weight))
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_rms_norm_keeps_its_bf16_input_not_a_float32_copy():
    x = torch.randn(64, 128, dtype=torch.bfloat16, requires_grad=True)
    weight = torch.nn.Parameter(torch.ones(128, dtype=torch.bfloat16), requires_grad=False)
    lean, eager = saved_bytes(rms_norm, x, weight, 1e-6), saved_bytes(llama_rms_norm, x, weight,
                                                                        1e-6)
    assert lean == 64 * 128 * 2 + 64 * 4  # the bf16 input and one float32 scale per row
    assert eager >= 64 * 128 * 4  # autograd keeps at least the float32 copy


def test_softmax_to_bf16_matches_eager_and_keeps_only_the_bf16_probabilities():
    torch.manual_seed(0)
    scores = (torch.randn(2, 24, 24) * 4).to(torch.bfloat16).requires_grad_()
    eager = torch.softmax(scores, dim=-1, dtype=torch.float32).to(torch.bfloat16)
    lean = softmax_to(scores, torch.bfloat16)
    assert lean.dtype == torch.bfloat16 and torch.equal(lean, eager)
    probe = torch.randn(2, 24, 24, dtype=torch.bfloat16)
    (grad_lean,) = torch.autograd.grad((lean * probe).sum(), scores)
    (grad_eager,) = torch.autograd.grad((eager * probe).sum(), scores)
    assert grad_lean.dtype == torch.bfloat16
    # the only difference: the backward reads bf16-rounded probabilities
    torch.testing.assert_close(grad_lean.float(), grad_eager.float(), rtol=0.02, atol=0.01)
    assert saved_bytes(softmax_to, scores, torch.bfloat16) == 2 * 24 * 24 * 2
    assert saved_bytes(lambda s: torch.softmax(s, -1, dtype=torch.float32).to(torch.bfloat16),
                       scores) >= 2 * 24 * 24 * 4


def test_softmax_to_float32_is_the_plain_softmax():
    scores = torch.randn(3, 9, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s: softmax_to(s, torch.float64), (scores,))
    assert torch.equal(softmax_to(scores, torch.float64), torch.softmax(scores, -1))


def loss_and_grads(model, ids):
    model.zero_grad()
    loss = model(input_ids=ids).logits.square().mean()
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()
                           if p.requires_grad}


@pytest.mark.parametrize("kind", ["llama", "qwen3"])
def test_lean_norms_swap_every_norm_and_change_nothing(kind):
    model = tiny_lora_model(kind)
    norms = [m for m in model.modules() if type(m).__name__.endswith("RMSNorm")]
    ids = torch.randint(0, 200, (2, 11))
    plain_loss, plain_grads = loss_and_grads(model, ids)
    with lean_norms(model) as patched:
        assert patched == len(norms) > 0  # Qwen3's per-head q/k norms included
        assert all("forward" in vars(norm) for norm in norms)
        lean_loss, lean_grads = loss_and_grads(model, ids)
    assert not any("forward" in vars(norm) for norm in norms)  # restored on exit
    torch.testing.assert_close(lean_loss, plain_loss, rtol=1e-6, atol=1e-7)
    for name in plain_grads:
        torch.testing.assert_close(lean_grads[name], plain_grads[name], rtol=1e-5, atol=1e-7)


def test_lean_norms_leave_other_architectures_alone():
    with lean_norms(tiny_model("gpt2", tiny_tokenizer())) as patched:
        assert patched == 0  # LayerNorm, not a Llama-style RMSNorm
