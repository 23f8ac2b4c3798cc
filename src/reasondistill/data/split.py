"""Splits of a list of Examples: the Train → Nudge phases, and held-out evaluation rows.

Both are deterministic for a seed and keep the input's order within each part (the sampler
decides the training order), so a split can be reproduced and diffed.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Sequence

from reasondistill.data.example import Example
from reasondistill.errors import ConfigError


def two_phase_split(examples: Sequence[Example], hard_types: Iterable[str], *,
                    seed: int) -> tuple[list[Example], list[Example]]:
    """``(phase1, phase2)`` for the Train → Nudge schedule.

    Phase 2 (Nudge) = every hard row + ``n`` fresh rows of each easy type, ``n`` = the size
    of the rarest hard type. Phase 1 (Train) = everything except those reserved easy rows,
    so hard rows are seen in both phases and easy rows in phase 2 are unseen.

    Unlike tracedistill, a small easy type never goes entirely to phase 2: at most half of
    it is reserved (``min(n, len // 2)``), so phase 1 keeps at least ``ceil(len / 2)``.
    """
    hard = set(hard_types)
    if not hard:
        raise ConfigError("train.hard_types is empty; name at least one hard problem type")
    groups = group_by(examples, "type")
    absent = sorted(hard - groups.keys())
    if absent:
        present = ", ".join(f"{t} ({len(rows)})" for t, rows in sorted(groups.items()))
        raise ConfigError(f"train.hard_types names type(s) not in the data: "
                          f"{', '.join(absent)}; types present: {present or '(no rows)'}")
    n = min(len(groups[t]) for t in hard)
    rng = random.Random(seed)
    reserved: set[int] = set()  # positions of the easy rows kept for phase 2
    for type_, positions in sorted(groups.items()):
        if type_ not in hard:
            reserved.update(rng.sample(positions, min(n, len(positions) // 2)))
    phase1 = [e for i, e in enumerate(examples) if i not in reserved]
    phase2 = [e for i, e in enumerate(examples) if e.type in hard or i in reserved]
    return phase1, phase2


def train_test_split(examples: Sequence[Example], test_size: float | int, *, seed: int,
                     stratify_by: str | None = "type") -> tuple[list[Example], list[Example]]:
    """``(train, test)`` with disjoint ids; ``test_size`` is a fraction (0 < f < 1) or a count.

    With ``stratify_by`` (an Example field) each group gives the test part its proportional
    share, rounded by largest remainder so the total is exact."""
    total = len(examples)
    n_test = _test_count(test_size, total)
    if stratify_by is not None and stratify_by not in Example.__dataclass_fields__:
        raise ValueError(f"stratify_by must be an Example field or None, got {stratify_by!r}")
    groups = group_by(examples, stratify_by) if stratify_by else {"": list(range(total))}
    quotas = apportion({k: len(v) for k, v in groups.items()}, n_test)
    rng = random.Random(seed)
    test: set[int] = set()
    for key, positions in sorted(groups.items()):
        test.update(rng.sample(positions, quotas[key]))
    train_part = [e for i, e in enumerate(examples) if i not in test]
    test_part = [e for i, e in enumerate(examples) if i in test]
    shared = {e.id for e in train_part} & {e.id for e in test_part}
    if shared:
        raise ValueError(f"ids appear more than once, so train and test would share them: "
                         f"{sorted(shared)[:5]}")
    return train_part, test_part


def group_by(examples: Sequence[Example], field: str) -> dict[str, list[int]]:
    """Positions of the examples, grouped by the value of ``field`` (insertion order)."""
    groups: dict[str, list[int]] = defaultdict(list)
    for position, example in enumerate(examples):
        groups[getattr(example, field)].append(position)
    return dict(groups)


def apportion(sizes: dict[str, int], total: int) -> dict[str, int]:
    """Split ``total`` across groups in proportion to ``sizes`` (largest remainder; ties go
    to the earlier key in sorted order), never giving a group more than its size."""
    whole = sum(sizes.values())
    if not whole:
        return {k: 0 for k in sizes}
    exact = {k: total * size / whole for k, size in sizes.items()}
    quotas = {k: int(share) for k, share in exact.items()}
    by_remainder = sorted(sizes, key=lambda k: (-(exact[k] - quotas[k]), k))
    for key in by_remainder[: total - sum(quotas.values())]:
        quotas[key] += 1
    return quotas


def _test_count(test_size: float | int, total: int) -> int:
    if isinstance(test_size, bool) or not isinstance(test_size, (int, float)):
        raise ValueError(f"test_size must be a fraction or a count, got {test_size!r}")
    if isinstance(test_size, float):
        if not 0 < test_size < 1:
            raise ValueError(f"a fractional test_size must be in (0, 1), got {test_size}")
        count = max(1, round(test_size * total))
    else:
        count = test_size
    if not 0 < count < total:
        raise ValueError(f"test_size {test_size!r} leaves no rows for one side: "
                         f"{count} test of {total}")
    return count
