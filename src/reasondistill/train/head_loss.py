"""Output head and cross-entropy in one pass, a few rows at a time.

The completion loss needs the vocabulary logits only to turn them into a number and a
gradient. Materialised whole — ``[supervised tokens, vocabulary]`` in float32, hundreds of
megabytes for one packed batch on a 49k vocabulary — they cost more in memory traffic and
page faults than their matmul costs in arithmetic, twice (forward, then the log-softmax
backward). Here each chunk of rows is projected, reduced to its loss, and turned straight
into its gradient with respect to the hidden states (``(softmax − onehot) · W``) while it
is hot; the backward pass only scales that stored gradient. Same matmuls, same float32
softmax, no full logits.

This applies when the head is a frozen, bias-free ``nn.Linear`` that the model applies to
the final hidden states and nothing else (no soft-capping or scaling of the logits), which
:func:`fused_head_applies` checks; anything else takes the ordinary path.
"""

from __future__ import annotations

import contextlib
import contextvars

import torch

from reasondistill.train.forward_swap import swapped_forwards

# Model types whose causal-LM forward is exactly ``lm_head(hidden_states[:, keep])``.
PLAIN_HEAD_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3", "qwen3_moe",
                                    "qwen2_moe"})

# The float32 logits of one chunk take at most this much (170 rows at a 49k vocabulary):
# large enough for an efficient head matmul (the fastest of 8-64 MiB tried on a 2-core CPU),
# small next to the full logits of a batch.
CHUNK_BYTES = 32 * 2**20


def fused_head_applies(model) -> bool:
    """True when the head of ``model`` (unwrapped) can be fused with the loss."""
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) not in PLAIN_HEAD_MODEL_TYPES:
        return False
    head = model.get_output_embeddings()
    return (type(head) is torch.nn.Linear and head.bias is None
            and not head.weight.requires_grad)


@contextlib.contextmanager
def head_returns_hidden_states(model):
    """Inside, the model's output head passes its input through: ``outputs.logits`` holds
    the final hidden states at the kept positions. The forward still goes through the
    outermost (DDP / PEFT) wrapper, so gradient synchronisation is untouched."""
    head = model.get_output_embeddings()
    with swapped_forwards([head], _pass_through):
        yield head


def _pass_through(head, hidden_states):
    return hidden_states


def head_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor,
                       targets: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy of ``hidden @ weight.T`` against ``targets`` (no ignored rows).

    ``hidden``: ``[rows, d]``; ``weight``: ``[vocab, d]``, frozen. The matmuls run in the
    weight's dtype, the softmax in float32."""
    rows = max(1, CHUNK_BYTES // (4 * weight.shape[0]))
    return _HeadCrossEntropy.apply(hidden, weight, targets, rows)


# While set (by :func:`kept_chunk_buffers`), a dict that keeps each chunk's buffers between
# calls; otherwise every call allocates its own.
_kept_buffers: contextvars.ContextVar[dict | None] = contextvars.ContextVar(
    "reasondistill_head_buffers", default=None)


@contextlib.contextmanager
def kept_chunk_buffers():
    """Inside, :func:`head_cross_entropy` reuses one set of chunk buffers (the chunk's logits
    in the weight's dtype and its float32 log-probabilities, about 50 MiB at a 49k
    vocabulary) from call to call, instead of allocating them each training step.

    Why: the head runs when a step's memory is at its peak, so a fresh allocation there
    often has to come from memory the process does not hold yet, and the allocator hands it
    back after the step; on a VM each such page fault is expensive, every step."""
    token = _kept_buffers.set({})
    try:
        yield
    finally:
        _kept_buffers.reset(token)


def _chunk_buffers(chunk_rows: int, rows: int,
                   weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Buffers for chunks of up to ``chunk_rows`` of ``rows`` rows: kept ones (full chunk
    size) inside :func:`kept_chunk_buffers`, else fresh ones no larger than needed."""
    kept = _kept_buffers.get()
    shape = (chunk_rows if kept is not None else min(chunk_rows, rows), weight.shape[0])
    key = (shape, weight.dtype, weight.device)
    if kept is not None and key in kept:
        return kept[key]
    buffers = (torch.empty(shape, dtype=weight.dtype, device=weight.device),
               torch.empty(shape, dtype=torch.float32, device=weight.device))
    if kept is not None:
        kept.clear()  # one set at a time: a new vocabulary or chunk size replaces it
        kept[key] = buffers
    return buffers


class _HeadCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk_rows):
        compute = weight.dtype
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad_hidden = torch.empty(hidden.shape, dtype=torch.float32, device=hidden.device)
        logits_buffer, scores_buffer = _chunk_buffers(chunk_rows, hidden.shape[0], weight)
        for start in range(0, hidden.shape[0], chunk_rows):
            part = hidden[start:start + chunk_rows].to(compute)
            target = targets[start:start + chunk_rows].unsqueeze(1)
            logits, scores = logits_buffer[:len(part)], scores_buffer[:len(part)]
            torch.mm(part, weight.T, out=logits)
            scores.copy_(logits)
            torch.log_softmax(scores, dim=-1, out=scores)  # in place, row by row
            total -= scores.gather(1, target).sum()
            scores.exp_()  # the softmax
            scores.scatter_add_(1, target, torch.full_like(target, -1, dtype=torch.float32))
            logits.copy_(scores)  # the logits' gradient, in the weight's dtype
            grad_hidden[start:start + chunk_rows] = logits @ weight
        ctx.save_for_backward(grad_hidden)
        ctx.hidden_dtype = hidden.dtype
        return total

    @staticmethod
    def backward(ctx, grad_output):
        (grad_hidden,) = ctx.saved_tensors
        return (grad_hidden * grad_output).to(ctx.hidden_dtype), None, None, None
