"""The teacher step of a recipe: from the ``distill`` section to a teacher, alignments and
an objective, checked against both models before any training starts.

What comes out (:class:`Distillation`) is everything the trainer needs: the teacher source
(online or cached), the layer map, the per-row alignments (and the teacher's own rows in
``answer_anchor`` mode), and the learned projections, already registered on the student.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from reasondistill.distill.layer_map import LayerMap, build_layer_map, num_blocks
from reasondistill.distill.objective import Objective
from reasondistill.distill.positions import Alignment, answer_anchor, same_sequence
from reasondistill.distill.projections import Projections, attach
from reasondistill.errors import ConfigError


@dataclass
class Distillation:
    teacher: object  # OnlineTeacher or CachedTeacher
    layer_map: LayerMap
    objective: Objective
    alignments: list[Alignment]
    teacher_rows: list[dict] | None
    projections: Projections
    kept: list[int]  # indices of the prepared rows that train (teacher side kept them too)
    drops: Counter = field(default_factory=Counter)
    teacher_tokenizer: object = None  # what the teacher reads (held-out rows align with it)

    def summary(self) -> dict:
        aligned = [a.n_groups for a in self.alignments if a is not None]
        return {"layer_map": [list(p) for p in self.layer_map.pairs],
                "projection": list(self.projections.shape) if self.projections.learned else None,
                "projection_parameters": self.projections.num_parameters(),
                "aligned_tokens_per_row": (sum(aligned) / len(aligned)) if aligned else 0.0,
                "teacher_drops": dict(self.drops)}


def same_tokenizer(a, b) -> bool:
    """Same vocabulary and chat template: the two models read identical token ids."""
    return (a is b or (a.get_vocab() == b.get_vocab()
                       and getattr(a, "chat_template", None) == getattr(b, "chat_template", None)))


def load_teacher_model(teacher_cfg):
    """Another model as a frozen teacher, in the dtype ``teacher.dtype`` resolves to here."""
    from reasondistill.config import ModelConfig
    from reasondistill.models import load_model

    return load_model(ModelConfig(name=teacher_cfg.name, dtype=teacher_cfg.dtype,
                                  trust_remote_code=teacher_cfg.trust_remote_code))


def teacher_token_rows(examples, tokenizer, format_cfg) -> tuple[dict, Counter]:
    """The teacher's own rows for ``answer_anchor``: the full trace format, its tokenizer."""
    from reasondistill.data.format import FormatSpec, RowDropped, build_record
    from reasondistill.tokenize import tokenize_record

    spec = FormatSpec(prompt_suffix=format_cfg.prompt_suffix,
                      min_trace_chars=format_cfg.min_trace_chars, answer_only=False)
    rows, drops = {}, Counter()
    for example in examples:
        try:
            rows[example.id] = tokenize_record(
                tokenizer, build_record(example, spec), max_length=format_cfg.max_length,
                truncate=format_cfg.truncate, enable_thinking=format_cfg.enable_thinking)
        except RowDropped as drop:
            drops[f"teacher: {drop.reason}"] += 1
    return rows, drops


def align_rows(tokens: str, format_cfg, prepared, teacher_tokenizer):
    """``(alignments, teacher_rows, kept, drops)`` for the prepared rows in ``tokens`` mode:
    per row its :class:`Alignment` (None where the teacher side dropped it), the teacher's own
    rows (``answer_anchor`` only, else None), the indices that train and the drops."""
    rows, examples = prepared.tokenized.rows, prepared.tokenized.examples
    drops: Counter = Counter()
    teacher_rows = None
    if tokens == "same_sequence":
        return [same_sequence(row) for row in rows], None, list(range(len(rows))), drops
    by_id, drops = teacher_token_rows(examples, teacher_tokenizer, format_cfg)
    kept = [i for i, e in enumerate(examples) if e.id in by_id]
    alignments, teacher_rows = [None] * len(rows), [None] * len(rows)
    for i in kept:
        t_row = by_id[examples[i].id]
        alignments[i] = answer_anchor(rows[i], t_row)
        teacher_rows[i] = {"input_ids": t_row.input_ids, "labels": t_row.labels}
    return alignments, teacher_rows, kept, drops


def prepare_distillation(distill_cfg, format_cfg, student, student_tokenizer, prepared,
                         *, teacher_source=None) -> Distillation:
    """Build the teacher, check the layer map and tokens against both models, align every
    row and register the projections on ``student`` (a PEFT model)."""
    from reasondistill.distill.teacher import ModelTeacher, SelfTeacher

    cfg = distill_cfg
    student_config = student.config
    if teacher_source is not None:  # a cache (or a test's teacher) stands in for the forward
        teacher = teacher_source  # a cache carries its teacher's tokenizer (answer_anchor)
        teacher_tokenizer = getattr(teacher_source, "tokenizer", None) or student_tokenizer
        teacher_blocks, teacher_size = teacher_source.num_blocks, teacher_source.hidden_size
    elif cfg.teacher.kind == "self":
        teacher_tokenizer = student_tokenizer
        teacher_blocks = num_blocks(student_config)
        teacher_size = int(student_config.get_text_config().hidden_size)
        teacher = None
    else:
        teacher_model, teacher_tokenizer = load_teacher_model(cfg.teacher)
        teacher_blocks = num_blocks(teacher_model.config)
        teacher_size = int(teacher_model.config.get_text_config().hidden_size)
        teacher = None
    layer_map = build_layer_map(cfg.layers, num_blocks(student_config), teacher_blocks)
    if teacher is None:
        teacher = (SelfTeacher(student, layer_map, _adapter_dir(cfg.teacher.adapter))
                   if cfg.teacher.kind == "self" else ModelTeacher(teacher_model, layer_map))
    shared_vocabulary = same_tokenizer(student_tokenizer, teacher_tokenizer)
    if cfg.tokens == "same_sequence" and not shared_vocabulary:
        raise ConfigError("distill.tokens: same_sequence needs the teacher to read the "
                          "student's tokens, but the two tokenizers differ (vocabulary or chat "
                          "template); use tokens: answer_anchor")
    if cfg.beta > 0 and cfg.tokens != "same_sequence":
        raise ConfigError("distill.beta > 0 (logit KD) needs tokens: same_sequence: the logits "
                          "are compared token by token")

    alignments, teacher_rows, kept, drops = align_rows(cfg.tokens, format_cfg, prepared,
                                                       teacher_tokenizer)
    projections = Projections(int(student_config.get_text_config().hidden_size), teacher_size,
                              len(layer_map.pairs), always=cfg.projection == "always")
    attach(student, projections)
    return Distillation(teacher, layer_map, Objective.from_config(cfg), alignments,
                        teacher_rows, projections, kept, drops, teacher_tokenizer)


def _adapter_dir(path: str):
    from pathlib import Path

    from reasondistill.errors import ReasondistillError

    directory = Path(path)
    if (directory / "adapter" / "adapter_config.json").is_file():
        directory = directory / "adapter"  # a run directory: its final adapter
    if not (directory / "adapter_config.json").is_file():
        raise ReasondistillError(f"distill.teacher.adapter: {path} holds no adapter "
                                 "(adapter_config.json); train one first, e.g. `reasondistill "
                                 "demo` writes runs/demo/adapter")
    return directory
