"""Layer-wise similarity between the student and the teacher, per layer pair, on held-out rows.

What the latent loss pulls together, measured before and after training, three ways, over
the aligned tokens (groups, :mod:`.positions`) of ``distill.similarity_rows`` held-out rows:

- ``cosine`` — mean cosine similarity of each aligned pair of vectors (1 = same direction);
- ``nmse`` — normalised MSE, ``Σ‖s − t‖² / Σ‖t − mean(t)‖²`` over the tokens: 0 is identical,
  1 is as far off as predicting the teacher's mean vector everywhere;
- ``cka`` — linear CKA (Kornblith et al. 2019) between the two ``[tokens, d]`` matrices:
  invariant to rotations and isotropic scaling of either side, 1 = the same geometry up to
  those. Computed over at most :data:`CKA_TOKENS` tokens (spread evenly over the rows);
  cosine and nMSE use every aligned token.

The student side is what the loss reads: the student's pooled state, through its projection
when the hidden sizes differ. The rows are tokenized and aligned exactly as training rows
(:func:`reasondistill.prepare.prepare_data`, :func:`.setup.align_rows`), collated by the
trainer's own collators and pooled by :func:`.teacher.pool`.

The held-out rows are the evaluation set (``eval.data``, else the training source's test
split, as ``reasondistill eval`` resolves it). Where there is none (a single training file),
or the teacher is a cache (it holds training rows only), the last rows of the training set
stand in, and the record says so.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch

CKA_TOKENS = 4096  # aligned tokens per pair kept for CKA ([tokens, d] on CPU, float32)


@dataclass
class SimilarityRows:
    rows: list[dict]  # {"input_ids", "labels", "row"}: as the trainer's dataset rows
    alignments: list  # indexed by each row's "row"
    teacher_rows: list[dict] | None
    source: str  # what the rows are, in words (recorded beside the numbers)


# --------------------------------------------------------------------------- the rows


def _training_rows(n: int, prepared, distillation, reason: str) -> SimilarityRows:
    kept = distillation.kept[-n:]
    rows = [{"input_ids": prepared.tokenized.rows[i].input_ids,
             "labels": prepared.tokenized.rows[i].labels, "row": i} for i in kept]
    return SimilarityRows(rows, distillation.alignments, distillation.teacher_rows,
                          f"training ({reason})")


def similarity_rows(cfg, prepared, tokenizer, distillation) -> SimilarityRows | None:
    """The rows the similarity is measured on (None with ``distill.similarity_rows: 0``).

    A teacher that reads stored rows (a cache) cannot score rows it has not stored: the last
    training rows stand in. ``eval.data`` that does not load is an error; a training source
    without a test split falls back to the last training rows."""
    from reasondistill.distill.setup import align_rows
    from reasondistill.distill.teacher import OnlineTeacher
    from reasondistill.errors import ReasondistillError
    from reasondistill.evaluate.runner import default_eval_data
    from reasondistill.prepare import prepare_data

    n = cfg.distill.similarity_rows
    if n <= 0:
        return None
    if not isinstance(distillation.teacher, OnlineTeacher):
        return _training_rows(n, prepared, distillation,
                              "the teacher cache holds training rows only")
    try:
        data_cfg = default_eval_data(cfg)
        # the first 2N usable rows: enough that rows dropped by the format stage still leave N
        held_out = prepare_data(data_cfg.model_copy(update={"limit": 2 * n}), cfg.format,
                                tokenizer, progress=False)
    except ReasondistillError:
        if cfg.eval.data is not None:
            raise
        return _training_rows(n, prepared, distillation, "no held-out split")
    if not held_out.examples:
        return _training_rows(n, prepared, distillation, "the held-out split kept no rows")
    alignments, teacher_rows, kept, _ = align_rows(
        cfg.distill.tokens, cfg.format, held_out,
        distillation.teacher_tokenizer or tokenizer)
    kept = kept[:n]
    rows = [{"input_ids": held_out.tokenized.rows[i].input_ids,
             "labels": held_out.tokenized.rows[i].labels, "row": i} for i in kept]
    return SimilarityRows(rows, alignments, teacher_rows, f"held-out ({held_out.report['source']})")


def describe_rows(cfg) -> str:
    """Which rows :func:`similarity_rows` will take, in words, without loading any (for
    ``train --dry-run``)."""
    from reasondistill.errors import ConfigError
    from reasondistill.evaluate.runner import default_eval_data

    n = cfg.distill.similarity_rows
    if n <= 0:
        return "off (distill.similarity_rows: 0)"
    when = "before and after training"
    if cfg.distill.teacher.cache:
        return f"the last {n} training rows {when} (the teacher cache holds training rows only)"
    try:
        data = default_eval_data(cfg)
    except ConfigError:
        return f"the last {n} training rows {when} (no held-out split)"
    where = data.path or data.source
    return f"the first {n} held-out rows {when} ({data.source}: {where}, split {data.split})" \
        if data.source != "puzzles" else f"{n} held-out puzzles {when} (seed {data.puzzles.seed})"


# --------------------------------------------------------------------------- the measures


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float | None:
    """Linear CKA of ``x`` ``[n, d1]`` and ``y`` ``[n, d2]`` (rows are the same tokens):
    ``‖Yᶜᵀ Xᶜ‖²_F / (‖Xᶜᵀ Xᶜ‖_F ‖Yᶜᵀ Yᶜ‖_F)`` with column-centred ``Xᶜ``, ``Yᶜ``, computed in
    whichever space is smaller (tokens or features; the two are equal). None when either
    side is constant over the tokens."""
    x = x.double()
    y = y.double()
    x = x - x.mean(0, keepdim=True)
    y = y - y.mean(0, keepdim=True)
    if x.shape[0] <= max(x.shape[1], y.shape[1]):
        kx, ky = x @ x.T, y @ y.T
        cross, norm_x, norm_y = (kx * ky).sum(), kx.norm(), ky.norm()
    else:
        cross, norm_x, norm_y = (y.T @ x).square().sum(), (x.T @ x).norm(), (y.T @ y).norm()
    denominator = float(norm_x * norm_y)
    if not denominator > 0 or not math.isfinite(denominator):
        return None
    return float(cross) / denominator


class PairStats:
    """Streaming sums for one layer pair: every aligned token for cosine and nMSE, a spread
    sample of tokens for CKA."""

    def __init__(self) -> None:
        self.n = 0
        self.cosine_sum = 0.0
        self.squared_error = 0.0
        self.teacher_sum: torch.Tensor | None = None
        self.teacher_square = 0.0
        self.sample_s: list[torch.Tensor] = []
        self.sample_t: list[torch.Tensor] = []

    def add(self, student: torch.Tensor, teacher: torch.Tensor,
            sample: torch.Tensor | None = None) -> None:
        """``student`` and ``teacher``: ``[tokens, d]`` (same ``d``: after the projection);
        ``sample`` the token indices kept for CKA (all when None)."""
        s, t = student.float(), teacher.float()
        self.n += s.shape[0]
        self.cosine_sum += float(torch.nn.functional.cosine_similarity(s, t, dim=-1).sum())
        self.squared_error += float((s - t).double().square().sum())
        t64 = t.double()
        total = t64.sum(0)
        self.teacher_sum = total if self.teacher_sum is None else self.teacher_sum + total
        self.teacher_square += float(t64.square().sum())
        if sample is not None:
            s, t = s.index_select(0, sample), t.index_select(0, sample)
        self.sample_s.append(s.detach().cpu())
        self.sample_t.append(t.detach().cpu())

    def result(self) -> dict:
        if not self.n:
            return {"cosine": None, "nmse": None, "cka": None, "tokens": 0, "cka_tokens": 0}
        mean = self.teacher_sum / self.n
        spread = self.teacher_square - self.n * float(mean.square().sum())  # Σ‖t − μ‖²
        nmse = self.squared_error / spread if spread > 1e-12 * max(self.teacher_square, 1) \
            else None
        s, t = torch.cat(self.sample_s), torch.cat(self.sample_t)
        return {"cosine": _round(self.cosine_sum / self.n), "nmse": _round(nmse),
                "cka": _round(linear_cka(s, t)), "tokens": self.n, "cka_tokens": s.shape[0]}


def _round(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 6)


def _spread(count: int, keep: int) -> list[int]:
    """``keep`` indices spread evenly over ``range(count)`` (all of them when it fits)."""
    if count <= keep:
        return list(range(count))
    return sorted({round(i * (count - 1) / max(keep - 1, 1)) for i in range(keep)})


# --------------------------------------------------------------------------- the pass


def _device_of(module) -> torch.device:
    parameter = next(module.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


@torch.no_grad()
def layer_similarity(model, distillation, held_out: SimilarityRows, *, packed: bool,
                     pad_token_id: int, batch_size: int = 4) -> dict:
    """Cosine, nMSE and linear CKA per layer pair of ``distillation`` between ``model`` (the
    PEFT student, its adapter active) and the teacher on ``held_out``; eval mode, no grad,
    micro-batches of ``batch_size`` rows through the trainer's collators (``packed`` as the
    trainer packs). The model's training mode is restored afterwards."""
    from reasondistill.distill.projections import attached
    from reasondistill.distill.teacher import OnlineTeacher, pool
    from reasondistill.train.collate import DistillCollator, PackedCollator, PaddedCollator
    from reasondistill.train.packing import packed_attention, packed_forward

    base = PackedCollator() if packed else PaddedCollator(pad_token_id)
    collator = DistillCollator(base, held_out.alignments, held_out.teacher_rows)
    teacher = distillation.teacher
    layer_map = distillation.layer_map
    projections = attached(model)
    device = _device_of(model)
    teacher_device = (_device_of(teacher.model) if isinstance(teacher, OnlineTeacher)
                      else device)
    stats = [PairStats() for _ in layer_map.pairs]
    per_row = math.ceil(CKA_TOKENS / max(len(held_out.rows), 1))
    was_training = model.training
    model.eval()
    try:
        with packed_attention(model) if packed else contextlib.nullcontext():
            for start in range(0, len(held_out.rows), batch_size):
                chunk = held_out.rows[start:start + batch_size]
                batch = collator(chunk)
                lengths = batch.pop("sequence_lengths", None)
                inputs = {k: batch[k].to(device) for k in ("input_ids", "attention_mask",
                                                            "position_ids") if k in batch}
                # as the trainer runs a step: both forwards inside the student's packed row
                with packed_forward(lengths.tolist()) if lengths is not None \
                        else contextlib.nullcontext():
                    signal = teacher.signal({k: v.to(teacher_device) for k, v in batch.items()})
                    outputs = model(**inputs, output_hidden_states=True, use_cache=False,
                                    logits_to_keep=1)
                groups = int(batch["align_groups"])
                sample, offset = [], 0
                for row in chunk:  # a row's groups are consecutive, in row order
                    count = held_out.alignments[row["row"]].n_groups
                    sample.extend(offset + i for i in _spread(count, per_row))
                    offset += count
                sample_index = torch.tensor(sample, dtype=torch.long, device=device)
                for index, layer in enumerate(layer_map.student_layers):
                    pooled = pool(outputs.hidden_states[layer],
                                  batch["align_student_positions"].to(device),
                                  batch["align_student_groups"].to(device), groups)
                    student = projections(index, pooled) if projections is not None else pooled
                    stats[index].add(student, signal.aligned[index].to(device), sample_index)
    finally:
        model.train(was_training)
    pairs = [{"student": s, "teacher": t, **pair.result()}
             for (s, t), pair in zip(layer_map.pairs, stats)]
    return {"rows": held_out.source, "n_rows": len(held_out.rows),
            "aligned_tokens": pairs[0]["tokens"] if pairs else 0, "pairs": pairs}


def measure(cfg, model, tokenizer, prepared, distillation, held_out: SimilarityRows | None,
            *, packed: bool) -> dict | None:
    """:func:`layer_similarity` for a run (None when there are no rows to measure on)."""
    if held_out is None or not held_out.rows:
        return None
    return layer_similarity(model, distillation, held_out, packed=packed,
                            pad_token_id=tokenizer.pad_token_id,
                            batch_size=cfg.train.per_device_batch_size)


# --------------------------------------------------------------------------- a run's records


def recorded(metrics_path, when: str) -> dict | None:
    """The last ``similarity: when`` record of ``metrics.jsonl`` (without its tags), if any."""
    from pathlib import Path

    from reasondistill.io import read_records

    path = Path(metrics_path)
    found = [r for r in (read_records(path) if path.is_file() else [])
             if r.get("similarity") == when]
    if not found:
        return None
    return {k: v for k, v in found[-1].items() if k not in ("phase", "similarity")}


def record_similarity(cfg, model, tokenizer, prepared, distillation, held_out, *, when: str,
                      phase: str, packed: bool, console=None, reuse: bool = False) -> dict | None:
    """Measure (``reuse``: or take from ``metrics.jsonl``, for a resumed run's ``before``),
    append ``{"phase", "similarity": when, ...}`` to ``metrics.jsonl`` and print it.
    Main process only; returns the measurement (None when there are no rows)."""
    from pathlib import Path

    from reasondistill.io import append_json_line

    metrics = Path(cfg.output_dir) / "metrics.jsonl"
    if reuse:
        earlier = recorded(metrics, when)
        if earlier is not None:
            return earlier
    _to_training_device(model)
    result = measure(cfg, model, tokenizer, prepared, distillation, held_out, packed=packed)
    if result is None:
        return None
    append_json_line(metrics, {"phase": phase, "similarity": when, **result})
    if console is not None:
        print_similarity(result, when, console)
    return result


def _to_training_device(model) -> None:
    """Where the Trainer will put the model anyway (so ``before`` does not run on the CPU of
    a GPU machine)."""
    from accelerate import PartialState

    device = PartialState().device
    if device.type != "cpu" and _device_of(model).type == "cpu":
        model.to(device)


def print_similarity(result: dict, when: str, console) -> None:
    from rich.table import Table

    table = Table(title=f"layer similarity {when} training: {result['n_rows']} rows, "
                        f"{result['rows']}, {result['aligned_tokens']:,} aligned tokens",
                  title_justify="left")
    for column in ("student→teacher", "cosine", "nMSE", "linear CKA"):
        table.add_column(column)
    for pair in result["pairs"]:
        table.add_row(f"{pair['student']}→{pair['teacher']}",
                      *(_cell(pair[key]) for key in ("cosine", "nmse", "cka")))
    console.print(table)


def _cell(value) -> str:
    return "—" if value is None else f"{value:.3f}"
