"""stratified_order: balance and batch alignment invariants, determinism, epochs; the sampler."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from reasondistill.data.sampling import (
    OrderedSampler,
    largest_batch_first,
    shuffled_order,
    stratified_order,
)


def blocks(order: list[int], size: int) -> list[list[int]]:
    return [order[i: i + size] for i in range(0, len(order), size)]


def balance_violations(types: list[str], order: list[int], batch_size: int) -> list[str]:
    """Every (block, type) whose count is not floor/ceil of its proportional share."""
    total = Counter(types)
    bad = []
    for number, block in enumerate(blocks(order, batch_size)):
        counts = Counter(types[i] for i in block)
        for t, c in total.items():
            share = len(block) * c / len(types)
            if not math.floor(share) <= counts[t] <= math.ceil(share):
                bad.append(f"block {number} type {t}: {counts[t]} vs share {share:.2f}")
    return bad


def random_types(rng: random.Random) -> list[str]:
    k = rng.randint(1, 8)
    weights = [rng.random() ** 3 + 0.01 for _ in range(k)]  # skewed mixtures, rare types
    return [f"t{rng.choices(range(k), weights)[0]}" for _ in range(rng.randint(0, 400))]


def test_balance_and_alignment_over_random_mixtures():
    rng = random.Random(2024)
    for trial in range(600):
        types = random_types(rng)
        batch_size = rng.choice([1, 2, 3, 4, 7, 8, 16, 24, 32, 64, 500])
        epoch = rng.randint(0, 3)
        order = stratified_order(types, batch_size, seed=trial, epoch=epoch)
        assert sorted(order) == list(range(len(types)))
        assert balance_violations(types, order, batch_size) == [], (trial, batch_size)
        sizes = [len(b) for b in blocks(order, batch_size)]
        assert all(s == batch_size for s in sizes[:-1])  # only the last block may be short


def test_blocks_line_up_with_the_trainers_batches_when_n_is_not_a_multiple():
    types = ["a"] * 7 + ["b"] * 3  # N = 10, B = 4: batches [0,4) [4,8) [8,10)
    order = stratified_order(types, 4, seed=0)
    per_block = [Counter(types[i] for i in block) for block in blocks(order, 4)]
    for counts in per_block[:2]:  # share of a = 2.8, of b = 1.2
        assert counts["a"] in (2, 3) and counts["b"] in (1, 2)
    assert sum(per_block[2].values()) == 2 and per_block[2]["a"] in (1, 2)


def test_the_reference_drifts_across_batch_boundaries():
    """tracedistill's slots do not line up with the trainer's batches when B ∤ N."""
    reference = pytest.importorskip("tracedistill.sampling")
    types = ["a"] * 10 + ["b"] * 10  # 20 rows in batches of 8: it deals into 3 slots of ~7
    failures = sum(bool(balance_violations(
        types, reference.build_stratified_index_order(types, 8, seed), 8)) for seed in range(20))
    assert failures == 20
    assert not any(balance_violations(types, stratified_order(types, 8, seed), 8)
                   for seed in range(20))


def test_full_blocks_differ_by_at_most_one_per_type():
    types = ["a"] * 50 + ["b"] * 31 + ["c"] * 19
    order = stratified_order(types, 6, seed=3)
    for t in "abc":
        counts = [sum(types[i] == t for i in block) for block in blocks(order, 6)[:-1]]
        assert max(counts) - min(counts) <= 1


def test_deterministic_per_seed_and_epoch_and_different_across_them():
    types = [random.Random(i).choice("abc") for i in range(200)]
    first = stratified_order(types, 8, seed=1, epoch=0)
    assert stratified_order(types, 8, seed=1, epoch=0) == first
    assert stratified_order(types, 8, seed=1, epoch=1) != first
    assert stratified_order(types, 8, seed=2, epoch=0) != first
    assert len({tuple(stratified_order(types, 8, 1, e)) for e in range(5)}) == 5


def test_edge_cases():
    assert stratified_order([], 4, seed=0) == []
    assert sorted(stratified_order(["a"] * 3, 8, seed=0)) == [0, 1, 2]  # N < B
    assert sorted(stratified_order(["x", "y"], 1, seed=0)) == [0, 1]
    with pytest.raises(ValueError):
        stratified_order(["a"], 0, seed=0)


def test_shuffled_order():
    order = shuffled_order(100, seed=4, epoch=2)
    assert sorted(order) == list(range(100))
    assert shuffled_order(100, seed=4, epoch=2) == order
    assert shuffled_order(100, seed=4, epoch=3) != order
    assert shuffled_order(0, seed=4) == []


def test_ordered_sampler_follows_the_epoch():
    types = ["a", "b", "b", "c"] * 10
    sampler = OrderedSampler(types, batch_size=4, seed=9)
    assert len(sampler) == 40
    assert list(sampler) == stratified_order(types, 4, 9, 0)
    sampler.set_epoch(3)
    assert list(sampler) == stratified_order(types, 4, 9, 3) != stratified_order(types, 4, 9, 0)
    plain = OrderedSampler(types, batch_size=4, seed=9, stratify=False)
    plain.set_epoch(1)
    assert list(plain) == shuffled_order(40, 9, 1)
    with pytest.raises(ValueError):
        OrderedSampler(types, batch_size=0, seed=0)


def micro_cost(order, lengths, start, size, padded=False):
    rows = [lengths[i] for i in order[start:start + size]]
    return len(rows) * max(rows) if padded else sum(rows)


def test_largest_batch_first_moves_whole_blocks_and_leads_with_the_costliest_micro_batch():
    rng = random.Random(11)
    for trial in range(300):
        micro = rng.randint(1, 4)
        block = micro * rng.randint(1, 4)
        n = rng.randint(0, 60)
        lengths = [rng.randint(1, 500) for _ in range(n)]
        padded = trial % 2 == 1
        order = shuffled_order(n, seed=trial)
        moved = largest_batch_first(order, lengths, block, micro, padded=padded)
        assert sorted(moved) == list(range(n))
        full = n - n % block
        assert moved[full:] == order[full:]  # a short last block stays last
        before = [sorted(b) for b in blocks(order[:full], block)]
        after = [sorted(b) for b in blocks(moved[:full], block)]
        assert sorted(after) == sorted(before)  # blocks move whole
        if full:
            costs = [micro_cost(order, lengths, s, micro, padded) for s in range(0, full, micro)]
            assert micro_cost(moved, lengths, 0, micro, padded) == max(costs)
            assert after[1:] == [b for b in before if b != after[0]]  # the rest keep order


def test_largest_batch_first_costs_packed_and_padded_batches_differently():
    lengths = [10, 10, 10, 10, 30, 1, 1, 1]  # micro-batches of 4: packed 40 vs 33
    order = list(range(8))
    assert largest_batch_first(order, lengths, 4, 4) == order
    assert largest_batch_first(order, lengths, 4, 4, padded=True)[:4] == [4, 5, 6, 7]  # 120
    within = largest_batch_first(order, lengths, 8, 2)  # one block; [4, 5] costs 31
    assert within == [4, 5, 0, 1, 2, 3, 6, 7]
    with pytest.raises(ValueError, match="multiple"):
        largest_batch_first(order, lengths, 6, 4)


def test_ordered_sampler_with_lengths_keeps_the_balance_and_leads_with_the_largest_batch():
    rng = random.Random(5)
    types = [rng.choice("abc") for _ in range(90)]
    lengths = [rng.randint(20, 400) for _ in types]
    changed = 0
    for epoch in range(4):
        sampler = OrderedSampler(types, batch_size=8, seed=2, lengths=lengths,
                                 micro_batch_size=4)
        sampler.set_epoch(epoch)
        order = list(sampler)
        plain = stratified_order(types, 8, 2, epoch)
        changed += order != plain
        assert not balance_violations(types, order, 8)
        costs = [micro_cost(plain, lengths, s, 4) for s in range(0, 88, 4)]
        assert micro_cost(order, lengths, 0, 4) == max(costs)
    assert changed >= 3
    with pytest.raises(ValueError, match="89 lengths for 90 rows"):
        OrderedSampler(types, batch_size=8, seed=2, lengths=lengths[:-1])
