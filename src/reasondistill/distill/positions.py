"""Which tokens are aligned: groups of student positions paired with groups of teacher ones.

An :class:`Alignment` is a list of *groups*; group ``g`` pools (averages) the student's hidden
states at the positions tagged ``g`` and the teacher's at its positions tagged ``g``, and the
loss compares the two pooled vectors. One-token groups are the common case; pooling is how
two tokenizers that split the same text differently are still paired by text.

- ``same_sequence``: teacher and student read the same tokens; every completion token is a
  group of its own. Prompt and padding positions are never aligned.
- ``answer_anchor``: the teacher reads prompt + full trace + answer, the student its own target
  (answer-only, or a shorter trace). Aligned by role, not index: the token just before the
  answer, then the answer span (``</think>`` to the end) — token by token when both sides hold
  the same answer tokens, else pooled, each side over the tokens that cover the answer text.
"""

from __future__ import annotations

from dataclasses import dataclass

from reasondistill.tokenize import TokenizedRow


@dataclass(frozen=True)
class Alignment:
    student_positions: tuple[int, ...]
    student_groups: tuple[int, ...]
    teacher_positions: tuple[int, ...]
    teacher_groups: tuple[int, ...]
    n_groups: int


def _one_to_one(student: list[int], teacher: list[int]) -> Alignment:
    groups = tuple(range(len(student)))
    return Alignment(tuple(student), groups, tuple(teacher), groups, len(student))


def same_sequence(row: TokenizedRow) -> Alignment:
    """Every completion token of ``row`` (student and teacher read the same ids)."""
    positions = list(range(row.prompt_span[1], len(row.input_ids)))
    return _one_to_one(positions, positions)


def answer_anchor(student: TokenizedRow, teacher: TokenizedRow) -> Alignment:
    """The token before the answer, then the answer span (see the module docstring)."""
    s_start, s_end = student.answer_span
    t_start, t_end = teacher.answer_span
    anchor_s, anchor_t = max(s_start - 1, 0), max(t_start - 1, 0)
    s_answer, t_answer = student.input_ids[s_start:s_end], teacher.input_ids[t_start:t_end]
    if s_answer == t_answer:
        return _one_to_one([anchor_s, *range(s_start, s_end)], [anchor_t, *range(t_start, t_end)])
    return Alignment(
        (anchor_s, *range(s_start, s_end)), (0, *([1] * (s_end - s_start))),
        (anchor_t, *range(t_start, t_end)), (0, *([1] * (t_end - t_start))), 2)
