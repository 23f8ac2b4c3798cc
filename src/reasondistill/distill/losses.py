"""The loss terms, each registered with its name and what it needs from the step.

A term is a function of one :class:`StepTensors` that returns a scalar *already normalised*
the way the objective sums it: per supervised token of the (accumulated) batch for the
cross-entropy and the logit KD, per aligned token and layer pair for the hidden-state term.
:mod:`.objective` weights and sums them.

Registering a term (``@register("name", needs={...})``) is all a new one takes; ``needs``
names the :class:`StepTensors` fields it reads, so the trainer computes only what the active
terms use (no hidden states without a hidden term, no teacher logits without KD).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from reasondistill.train.head_loss import CHUNK_BYTES, head_cross_entropy


@dataclass
class StepTensors:
    """What one micro-batch's terms may read. ``denominator`` is the number of supervised
    tokens the per-token terms divide by (the whole accumulated batch's, as the Trainer
    counts it); ``share`` is this micro-batch's part of it (its own supervised tokens over
    ``denominator``), which weights the per-micro-batch means of the hidden term."""

    targets: torch.Tensor  # [n_supervised] next-token ids
    denominator: float
    share: float
    final_hidden: torch.Tensor | None = None  # [n_supervised, d] (fused head) ...
    logits: torch.Tensor | None = None  # ... or the logits at those positions
    head_weight: torch.Tensor | None = None
    student_aligned: list[torch.Tensor] = field(default_factory=list)  # per pair [G, d_t]
    teacher_aligned: list[torch.Tensor] = field(default_factory=list)  # per pair [G, d_t]
    teacher_final: torch.Tensor | None = None  # [n_supervised, d_t]
    teacher_head_weight: torch.Tensor | None = None
    options: dict = field(default_factory=dict)  # normalize, distance, kd settings


@dataclass(frozen=True)
class LossTerm:
    name: str
    needs: frozenset[str]
    compute: Callable[[StepTensors], torch.Tensor]


TERMS: dict[str, LossTerm] = {}


def register(name: str, *, needs: set[str]):
    def decorate(fn: Callable[[StepTensors], torch.Tensor]) -> Callable:
        TERMS[name] = LossTerm(name, frozenset(needs), fn)
        return fn

    return decorate


# --------------------------------------------------------------------------- cross-entropy


@register("ce", needs={"targets"})
def task_cross_entropy(step: StepTensors) -> torch.Tensor:
    """Completion-only cross-entropy per supervised token (the fused head where it applies)."""
    if step.final_hidden is not None:
        total = head_cross_entropy(step.final_hidden, step.head_weight, step.targets)
    else:
        total = F.cross_entropy(step.logits.float(), step.targets, reduction="sum")
    return total / step.denominator


# --------------------------------------------------------------------------- hidden states


def normalized(student: torch.Tensor, teacher: torch.Tensor,
               how: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``layernorm``: each vector to zero mean, unit variance over its features (no learned
    scale), so the distance is about direction and both terms are O(1) whatever the model's
    activation scale; ``teacher_std``: both divided by the teacher's standard deviation over
    the batch (keeps relative magnitudes); ``none``: raw states."""
    student, teacher = student.float(), teacher.float()
    if how == "layernorm":
        return (F.layer_norm(student, student.shape[-1:]),
                F.layer_norm(teacher, teacher.shape[-1:]))
    if how == "teacher_std":
        scale = teacher.std().clamp_min(1e-6)
        return student / scale, teacher / scale
    return student, teacher


def distance(student: torch.Tensor, teacher: torch.Tensor, how: str) -> torch.Tensor:
    """Mean over aligned tokens of the per-token distance (features averaged for mse and
    smooth_l1; ``1 − cos`` for cosine)."""
    if how == "cosine":
        return (1 - F.cosine_similarity(student, teacher, dim=-1)).mean()
    if how == "smooth_l1":
        return F.smooth_l1_loss(student, teacher)
    return F.mse_loss(student, teacher)


@register("hidden", needs={"student_aligned", "teacher_aligned"})
def hidden_alignment(step: StepTensors) -> torch.Tensor:
    """The distance between aligned student (projected) and teacher states, averaged over
    aligned tokens, then over layer pairs; weighted by the micro-batch's share."""
    how, metric = step.options.get("normalize", "layernorm"), step.options.get("distance", "mse")
    per_pair = [distance(*normalized(s, t, how), metric)
                for s, t in zip(step.student_aligned, step.teacher_aligned) if len(s)]
    if not per_pair:
        return step.targets.new_zeros((), dtype=torch.float32)
    return torch.stack(per_pair).mean() * step.share


# --------------------------------------------------------------------------- logit KD


def _kd_chunk(student_hidden, student_weight, teacher_hidden, teacher_weight,
              kind: str, temperature: float, beta: float) -> torch.Tensor:
    student_logp = F.log_softmax(
        (student_hidden.to(student_weight.dtype) @ student_weight.T).float() / temperature, -1)
    teacher_logp = F.log_softmax(
        (teacher_hidden.to(teacher_weight.dtype) @ teacher_weight.T).float() / temperature, -1)
    if kind == "forward_kl":
        return F.kl_div(student_logp, teacher_logp, log_target=True, reduction="sum")
    if kind == "reverse_kl":
        return F.kl_div(teacher_logp, student_logp, log_target=True, reduction="sum")
    # generalised JSD: β·KL(p_t ‖ m) + (1−β)·KL(p_s ‖ m), m = β·p_t + (1−β)·p_s
    mixture = torch.logsumexp(torch.stack([teacher_logp + torch.log(torch.tensor(beta)),
                                           student_logp + torch.log(torch.tensor(1 - beta))]), 0)
    return (beta * F.kl_div(mixture, teacher_logp, log_target=True, reduction="sum")
            + (1 - beta) * F.kl_div(mixture, student_logp, log_target=True, reduction="sum"))


def chunked_kd(student_hidden: torch.Tensor, student_weight: torch.Tensor,
               teacher_hidden: torch.Tensor, teacher_weight: torch.Tensor, *,
               kind: str = "forward_kl", temperature: float = 1.0,
               beta: float = 0.5) -> torch.Tensor:
    """Summed KD over rows, a chunk of rows at a time; each chunk is recomputed in the
    backward pass (activation checkpointing), so no chunk's logits outlive it. A padded
    vocabulary is cut to the part both heads share."""
    from torch.utils.checkpoint import checkpoint

    vocab = min(student_weight.shape[0], teacher_weight.shape[0])
    student_weight, teacher_weight = student_weight[:vocab], teacher_weight[:vocab]
    rows = max(1, CHUNK_BYTES // (4 * vocab))
    total = student_hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, student_hidden.shape[0], rows):
        total = total + checkpoint(
            _kd_chunk, student_hidden[start:start + rows], student_weight,
            teacher_hidden[start:start + rows], teacher_weight, kind, temperature, beta,
            use_reentrant=False)
    return total * temperature**2


@register("kd", needs={"final_hidden", "teacher_final"})
def logit_kd(step: StepTensors) -> torch.Tensor:
    """Logit distillation per supervised token: forward KL, reverse KL or generalised JSD."""
    kd = step.options.get("kd", {})
    return chunked_kd(step.final_hidden, step.head_weight, step.teacher_final,
                      step.teacher_head_weight, kind=kd.get("loss", "forward_kl"),
                      temperature=kd.get("temperature", 1.0),
                      beta=kd.get("jsd_beta", 0.5)) / step.denominator
