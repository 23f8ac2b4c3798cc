"""The order rows are trained in: type-stratified blocks that line up with the trainer's batches.

With a small effective batch (say 1 per device × 8 accumulation steps) a plain shuffle can
make a whole optimizer step one problem type. :func:`stratified_order` makes every block of
``batch_size`` consecutive positions (``batch_size`` = the *effective* batch: per-device ×
accumulation × world size) a proportional mix of the types.

The guarantee, for N rows of which ``c`` have type ``t``: the order is cut into blocks
``[0, B), [B, 2B), ...``; only the last block may be shorter (``N mod B`` rows), so the
blocks are exactly the trainer's batches. In every block of size ``m`` (full or last), the
number of rows of type ``t`` is ``floor(m·c/N)`` or ``ceil(m·c/N)`` — it differs from its
proportional share ``m·c/N`` by less than one row. (tracedistill dealt rows into
``ceil(N/B)`` equal-ish slots, so when B does not divide N its slots drifted across the
trainer's batch boundaries.)

Each epoch gets its own deterministic order (``seed``, ``epoch``). Given the rows' lengths,
:func:`largest_batch_first` then moves the epoch's most expensive micro-batch to the front
(whole blocks move, so the guarantee above is untouched). Pure standard library.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence


def stratified_order(types: Sequence[str], batch_size: int, seed: int,
                     epoch: int = 0) -> list[int]:
    """A permutation of ``range(len(types))`` whose ``batch_size`` blocks are type-balanced
    (see the module docstring for the exact guarantee)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    total = len(types)
    rng = _rng(seed, epoch)
    pools = _shuffled_pools(types, rng)
    n_full = total // batch_size
    base = {t: batch_size * len(p) // total for t, p in pools.items()}  # floor(B·c/N)
    extras = _extras_per_block(pools, base, batch_size, n_full, rng)

    order: list[int] = []
    taken = {t: 0 for t in pools}

    def take(t: str, count: int) -> list[int]:
        taken[t] += count
        return pools[t][taken[t] - count: taken[t]]

    for block_extras in extras:
        block = [i for t in pools for i in take(t, base[t] + (t in block_extras))]
        rng.shuffle(block)
        order.extend(block)
    last = [i for t in pools for i in take(t, len(pools[t]) - taken[t])]
    rng.shuffle(last)
    order.extend(last)
    return order


def _shuffled_pools(types: Sequence[str], rng: random.Random) -> dict[str, list[int]]:
    pools: dict[str, list[int]] = {}
    for position, type_ in enumerate(types):
        pools.setdefault(type_, []).append(position)
    pools = {t: pools[t] for t in sorted(pools)}  # independent of first appearance
    for positions in pools.values():
        rng.shuffle(positions)
    return pools


def _extras_per_block(pools: dict[str, list[int]], base: dict[str, int], batch_size: int,
                      n_full: int, rng: random.Random) -> list[set[str]]:
    """Which types get one row above ``base`` in each full block.

    Each full block has ``R = B − Σ base`` such slots. Type ``t`` gets ``e`` of them over the
    ``K`` full blocks, ``e`` = ``K·frac(B·c/N)`` rounded down or up (largest remainder, ties
    random), at most one per block. That keeps full blocks at floor/ceil of ``B·c/N`` and
    leaves the last block ``N·c/N − K·base − e``, which is within one row of ``r·c/N`` too.
    """
    if n_full == 0:
        return []
    total = sum(len(p) for p in pools.values())
    # K·frac(B·c/N) = numerator / N, computed exactly in integers.
    numerator = {t: n_full * (batch_size * len(p) - base[t] * total) for t, p in pools.items()}
    count = {t: num // total for t, num in numerator.items()}
    missing = n_full * (batch_size - sum(base.values())) - sum(count.values())
    tiebreak = {t: rng.random() for t in pools}
    for t in sorted(pools, key=lambda t: (-(numerator[t] % total), tiebreak[t]))[:missing]:
        count[t] += 1
    # Deal the extra slots round-robin over the blocks (in a random block order): a type's
    # slots are consecutive and it has at most K of them, so they land in distinct blocks.
    dealt = [t for t in rng.sample(list(pools), len(pools)) for _ in range(count[t])]
    blocks = list(range(n_full))
    rng.shuffle(blocks)
    per_block: list[set[str]] = [set() for _ in range(n_full)]
    for slot, t in enumerate(dealt):
        per_block[blocks[slot % n_full]].add(t)
    return per_block


def shuffled_order(n: int, seed: int, epoch: int = 0) -> list[int]:
    """A plain seeded permutation of ``range(n)``: the unstratified ablation."""
    order = list(range(n))
    _rng(seed, epoch).shuffle(order)
    return order


def _rng(seed: int, epoch: int) -> random.Random:
    # A string seed is hashed with SHA-512 by ``random``: stable across runs and platforms.
    return random.Random(f"reasondistill-order/{seed}/{epoch}")


def largest_batch_first(order: Sequence[int], lengths: Sequence[int], block_size: int,
                        micro_batch_size: int, *, padded: bool = False) -> list[int]:
    """``order`` with its most expensive micro-batch first.

    Why: a step's memory grows with its tokens, and memory a process touches for the first
    time is slow to get (page faults; on a small VM, seconds per GiB), while memory it has
    already held is reused for free. Met first, the largest batch makes the process's peak in
    step 1 and every later step fits in it; met late, each new largest batch grows the heap
    again. A run that cannot fit also fails in its first step instead of hours in (the reason
    transformers' ``LengthGroupedSampler`` puts its longest batch first).

    Cost of a micro-batch (``micro_batch_size`` consecutive rows): its tokens when packed,
    rows × longest row when ``padded``. The full ``block_size`` block (the effective batch)
    holding the costliest micro-batch moves to the front, and that micro-batch to the front of
    its block; blocks are moved whole, so their composition and alignment with the trainer's
    batches are unchanged, and a short last block stays last. Ties keep the earliest.
    """
    if block_size % micro_batch_size:
        raise ValueError(f"block_size {block_size} is not a multiple of micro_batch_size "
                         f"{micro_batch_size}")
    order = list(order)
    full = len(order) - len(order) % block_size

    def cost(start: int) -> int:
        rows = [lengths[i] for i in order[start:start + micro_batch_size]]
        return len(rows) * max(rows) if padded else sum(rows)

    if full == 0:
        return order
    costliest = max(range(0, full, micro_batch_size), key=cost)
    block = costliest - costliest % block_size
    members = order[block:block + block_size]
    offset = costliest - block
    lead = members[offset:offset + micro_batch_size]
    members = lead + members[:offset] + members[offset + micro_batch_size:]
    return members + order[:block] + order[block + block_size:]


class OrderedSampler:
    """A DataLoader sampler (any object with ``__iter__``/``__len__`` works; no torch here)
    that yields the current epoch's order. The trainer calls :meth:`set_epoch` each epoch,
    and a resumed run re-creates exactly the order it was interrupted in. With ``lengths``
    (tokens per row), each epoch's order is passed through :func:`largest_batch_first`."""

    def __init__(self, types: Sequence[str], batch_size: int, seed: int, *,
                 stratify: bool = True, lengths: Sequence[int] | None = None,
                 micro_batch_size: int | None = None, padded: bool = False) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if lengths is not None and len(lengths) != len(types):
            raise ValueError(f"{len(lengths)} lengths for {len(types)} rows")
        self.types = list(types)
        self.batch_size, self.seed, self.stratify = batch_size, seed, stratify
        self.lengths = None if lengths is None else list(lengths)
        self.micro_batch_size = micro_batch_size or batch_size
        self.padded = padded
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def order(self) -> list[int]:
        if self.stratify:
            order = stratified_order(self.types, self.batch_size, self.seed, self.epoch)
        else:
            order = shuffled_order(len(self.types), self.seed, self.epoch)
        if self.lengths is None:
            return order
        return largest_batch_first(order, self.lengths, self.batch_size,
                                   self.micro_batch_size, padded=self.padded)

    def __iter__(self) -> Iterator[int]:
        return iter(self.order())

    def __len__(self) -> int:
        return len(self.types)
