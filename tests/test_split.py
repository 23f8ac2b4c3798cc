"""two_phase_split (Train → Nudge) and train_test_split."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from reasondistill.data.example import Example
from reasondistill.data.split import apportion, train_test_split, two_phase_split
from reasondistill.errors import ConfigError


def make(counts: dict[str, int]) -> list[Example]:
    """Examples with the given type counts, interleaved so order is not grouped by type."""
    types = [t for t, n in counts.items() for _ in range(n)]
    random.Random(0).shuffle(types)
    return [Example(id=f"e{i}", prompt=f"p{i}", answer="1", type=t) for i, t in enumerate(types)]


def ids(examples) -> set[str]:
    return {e.id for e in examples}


def test_two_phase_split_quota_and_freshness():
    data = make({"hard_a": 10, "hard_b": 6, "easy_big": 100, "easy_small": 8, "easy_one": 1})
    phase1, phase2 = two_phase_split(data, ["hard_a", "hard_b"], seed=1)
    counts2 = Counter(e.type for e in phase2)
    # n = 6 (rarest hard type); a small easy type gives at most half of itself.
    assert counts2 == {"hard_a": 10, "hard_b": 6, "easy_big": 6, "easy_small": 4}
    counts1 = Counter(e.type for e in phase1)
    assert counts1 == {"hard_a": 10, "hard_b": 6, "easy_big": 94, "easy_small": 4, "easy_one": 1}
    easy2 = {e.id for e in phase2 if e.type.startswith("easy")}
    assert not easy2 & ids(phase1)  # phase 2's easy rows are unseen in phase 1
    assert {e.id for e in phase2 if e.type.startswith("hard")} <= ids(phase1)
    assert ids(phase1) | ids(phase2) == ids(data)
    # order within each part follows the input
    position = {e.id: i for i, e in enumerate(data)}
    for part in (phase1, phase2):
        assert [position[e.id] for e in part] == sorted(position[e.id] for e in part)


@pytest.mark.parametrize("trial", range(40))
def test_two_phase_split_invariants_on_random_mixtures(trial):
    rng = random.Random(trial)
    counts = {f"t{k}": rng.randint(1, 40) for k in range(rng.randint(2, 7))}
    hard = rng.sample(sorted(counts), rng.randint(1, len(counts) - 1))
    data = make(counts)
    phase1, phase2 = two_phase_split(data, hard, seed=trial)
    n = min(counts[t] for t in hard)
    c1, c2 = Counter(e.type for e in phase1), Counter(e.type for e in phase2)
    for t, size in counts.items():
        if t in hard:
            assert c1[t] == c2[t] == size
        else:
            assert c2[t] == min(n, size // 2)
            assert c1[t] == size - c2[t] >= math.ceil(size / 2)
    assert len(ids(phase1)) == len(phase1) and len(ids(phase2)) == len(phase2)
    assert ids(phase1) | ids(phase2) == ids(data)


def test_two_phase_split_is_deterministic_per_seed():
    data = make({"hard": 20, "easy": 200})
    first = two_phase_split(data, ["hard"], seed=5)
    assert two_phase_split(data, ["hard"], seed=5) == first
    assert two_phase_split(data, ["hard"], seed=6) != first


def test_absent_hard_types_name_them_and_the_types_present():
    data = make({"arith": 3, "bits": 2})
    with pytest.raises(ConfigError) as info:
        two_phase_split(data, ["bits", "cipher", "graphs"], seed=0)
    message = str(info.value)
    assert "cipher, graphs" in message and "arith (3), bits (2)" in message
    assert "train.hard_types" in message
    with pytest.raises(ConfigError, match="empty"):
        two_phase_split(data, [], seed=0)


def test_reference_sends_a_small_easy_type_entirely_to_phase_two():
    """The defect the quota cap fixes, shown on tracedistill itself."""
    pd = pytest.importorskip("pandas")
    reference = pytest.importorskip("tracedistill.data")
    data = make({"hard": 10, "easy_small": 4, "easy_big": 50})
    frame = pd.DataFrame([{"id": e.id, "type": e.type} for e in data])
    ref1, _ = reference.two_phase_split(frame, ["hard"], seed=0)
    assert "easy_small" not in set(ref1["type"])
    ours1, _ = two_phase_split(data, ["hard"], seed=0)
    assert Counter(e.type for e in ours1)["easy_small"] == 2


def test_train_test_split_stratified():
    data = make({"a": 50, "b": 30, "c": 19, "d": 1})
    train, test = train_test_split(data, 0.2, seed=0)
    assert len(test) == 20 and len(train) == 80
    assert not ids(train) & ids(test) and ids(train) | ids(test) == ids(data)
    per_type = Counter(e.type for e in test)
    for t, size in Counter(e.type for e in data).items():
        assert abs(per_type[t] - size * 20 / 100) < 1
    assert train_test_split(data, 0.2, seed=0) == (train, test)
    assert train_test_split(data, 0.2, seed=1) != (train, test)


def test_train_test_split_count_and_unstratified():
    data = make({"a": 10, "b": 10})
    train, test = train_test_split(data, 7, seed=3, stratify_by=None)
    assert len(test) == 7 and len(train) == 13 and not ids(train) & ids(test)
    _, by_difficulty = train_test_split(data, 5, seed=3, stratify_by="difficulty")
    assert len(by_difficulty) == 5


@pytest.mark.parametrize("size", [0, 20, 1.0, 0.0, -1, True, "0.2"])
def test_train_test_split_rejects_bad_sizes(size):
    with pytest.raises(ValueError):
        train_test_split(make({"a": 20}), size, seed=0)


def test_train_test_split_rejects_duplicate_ids_across_parts_and_bad_field():
    data = make({"a": 10})
    data = data + [Example(id=e.id, prompt="again", answer="1") for e in data]
    with pytest.raises(ValueError, match="more than once"):
        train_test_split(data, 0.5, seed=0, stratify_by=None)
    with pytest.raises(ValueError, match="stratify_by"):
        train_test_split(make({"a": 10}), 0.5, seed=0, stratify_by="colour")


def test_apportion_is_exact_and_proportional():
    rng = random.Random(0)
    for _ in range(200):
        sizes = {f"g{k}": rng.randint(0, 50) for k in range(rng.randint(1, 8))}
        total = rng.randint(0, sum(sizes.values()))
        quotas = apportion(sizes, total)
        assert sum(quotas.values()) == total
        whole = sum(sizes.values()) or 1
        for k, q in quotas.items():
            assert q <= sizes[k] and abs(q - total * sizes[k] / whole) < 1
