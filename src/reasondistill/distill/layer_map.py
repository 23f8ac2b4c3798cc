"""Which student layer is pulled toward which teacher layer.

Index convention, the same for both models: ``0`` is the embedding output, ``i`` the output
of block ``i``, and ``L`` (the number of blocks) the final state — which transformers returns
*after* the final norm, so its scale differs from the blocks' (we use it as is when a map
names it; the default never does). These are the indices of ``outputs.hidden_states``.

- ``last_k: K`` — student blocks ``L_s-K .. L_s-1`` (its last ``K`` before the final norm),
  each mapped proportionally onto the teacher;
- ``student: [i, ...]`` — those student indices, mapped proportionally;
- ``pairs: [[i, j], ...]`` — explicit.

Proportional: ``j = round(i · (L_t − 1) / (L_s − 1))`` for blocks ``1 .. L − 1``; the map
keeps 0 ↦ 0 and ``L_s`` ↦ ``L_t``.
"""

from __future__ import annotations

from dataclasses import dataclass

from reasondistill.errors import ConfigError


@dataclass(frozen=True)
class LayerMap:
    pairs: tuple[tuple[int, int], ...]  # (student index, teacher index)

    @property
    def student_layers(self) -> list[int]:
        return [s for s, _ in self.pairs]

    @property
    def teacher_layers(self) -> list[int]:
        return [t for _, t in self.pairs]

    def describe(self) -> str:
        return ", ".join(f"{s}→{t}" for s, t in self.pairs)


def proportional(index: int, student_blocks: int, teacher_blocks: int) -> int:
    """The teacher index for student index ``index`` (see the module docstring)."""
    if index <= 0:
        return 0
    if index >= student_blocks:
        return teacher_blocks
    if student_blocks <= 1:
        return teacher_blocks
    return round(index * (teacher_blocks - 1) / (student_blocks - 1))


def num_blocks(config) -> int:
    """Number of decoder blocks of a transformers config (``num_hidden_layers``)."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    blocks = getattr(text, "num_hidden_layers", None) or getattr(text, "n_layer", None)
    if not blocks:
        raise ConfigError(f"cannot tell how many layers {type(config).__name__} has "
                          "(no num_hidden_layers); give distill.layers.pairs explicitly")
    return int(blocks)


def build_layer_map(layers_cfg, student_blocks: int, teacher_blocks: int) -> LayerMap:
    """Validate ``distill.layers`` against both models and return the pairs."""
    if layers_cfg.pairs is not None:
        pairs = [(int(s), int(t)) for s, t in layers_cfg.pairs]
    elif layers_cfg.student is not None:
        pairs = [(int(s), proportional(int(s), student_blocks, teacher_blocks))
                 for s in layers_cfg.student]
    else:
        k = layers_cfg.last_k
        if k >= student_blocks:
            raise ConfigError(f"distill.layers.last_k: {k} needs more than {k} student blocks; "
                              f"the student has {student_blocks} (valid: 1 .. "
                              f"{student_blocks - 1})")
        pairs = [(s, proportional(s, student_blocks, teacher_blocks))
                 for s in range(student_blocks - k, student_blocks)]
    if not pairs:
        raise ConfigError("distill.layers names no layer pair")
    for s, t in pairs:
        if not 0 <= s <= student_blocks:
            raise ConfigError(f"distill.layers: student index {s} is out of range; the student "
                              f"has {student_blocks} blocks, so valid indices are 0 .. "
                              f"{student_blocks} (0 = embeddings, {student_blocks} = final, "
                              "post-norm state)")
        if not 0 <= t <= teacher_blocks:
            raise ConfigError(f"distill.layers: teacher index {t} is out of range; the teacher "
                              f"has {teacher_blocks} blocks, so valid indices are 0 .. "
                              f"{teacher_blocks} (0 = embeddings, {teacher_blocks} = final, "
                              "post-norm state)")
    if len(set(pairs)) != len(pairs):
        raise ConfigError(f"distill.layers: a pair is listed twice ({pairs})")
    return LayerMap(tuple(pairs))
