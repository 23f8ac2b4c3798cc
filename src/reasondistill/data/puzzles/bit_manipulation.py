"""Bit manipulation: a secret 8-bit -> 8-bit rule built from shifted/rotated copies.

The prompt names the rule class of its level (:data:`CLASS_TEXT`):

1. one transform of ``x``: NOT, shift left/right by 1-4, rotate left by 1-7, bit reversal;
2. two transforms (``x`` itself allowed) combined with AND, OR or XOR;
3. also the majority or the choice (``a ? b : c``, bit by bit) of three transforms.

The solver enumerates every rule of the named class (and the simpler ones) that fits all
examples — all examples at once, as one packed integer per transform, so this stays fast —
and refuses (:class:`Ambiguous`) unless every fitting rule gives the same query output.
The ``compact`` trace names the first fitting rule (simplest first) and computes it bit by
bit. The ``stepwise`` trace finds that same rule by trying candidates on the examples:

- level 1: each transform in turn on the examples until one differs (rejected); the first
  that matches every example is the rule.
- levels 2-3: the copies of one example's input, each xor the output (1 where it differs);
  one local check per line narrows the combinations to those that fit that example (a pair
  fits where its xors share no 1, an xor pair where one copy's xor is the other copy ...);
  those are then tried, simplest first, on the other examples as in level 1.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from reasondistill.data.puzzles.common import (
    Ambiguous,
    Draft,
    PromptError,
    check_line,
    render_prompt,
    split_prompt,
)

NAME = "bit_manipulation"
LEVELS = (1, 2, 3)
STYLES = ("compact", "stepwise")
VARIANTS = ("",)
BITS = 8
MASK = (1 << BITS) - 1
STORY = "a secret rule transforms 8-bit binary numbers."
CLASS_TEXT = {
    1: "The rule is one shift, rotation, reversal or NOT of the bits.",
    2: "The rule combines two shifted, rotated, reversed or inverted copies with AND, OR or XOR.",
    3: "The rule combines shifted, rotated, reversed or inverted copies with AND, OR, XOR, "
       "majority or choice.",
}
ASK = "determine the output for"
EXAMPLES_BY_LEVEL = {1: 6, 2: 8, 3: 10}


def rotate_left(x: int, k: int) -> int:
    return ((x << k) | (x >> (BITS - k))) & MASK


TRANSFORMS: dict[str, Callable[[int], int]] = {
    "x": lambda x: x,
    "not": lambda x: x ^ MASK,
    **{f"shl{k}": (lambda x, k=k: (x << k) & MASK) for k in range(1, 5)},
    **{f"shr{k}": (lambda x, k=k: x >> k) for k in range(1, 5)},
    **{f"rol{k}": (lambda x, k=k: rotate_left(x, k)) for k in range(1, BITS)},
    "rev": lambda x: int(f"{x:08b}"[::-1], 2),
}
NAMES = tuple(TRANSFORMS)
UNARY = NAMES[1:]  # level 1 leaves out the identity

COMBINE = {  # name -> (bitwise function of packed ints given the all-ones mask, per-bit text)
    "and": (lambda m, a, b: a & b, "{0}&{1}={r}"),
    "or": (lambda m, a, b: a | b, "{0}|{1}={r}"),
    "xor": (lambda m, a, b: a ^ b, "{0}^{1}={r}"),
    "maj": (lambda m, a, b, c: (a & b) | (a & c) | (b & c), "maj{0}{1}{2}={r}"),
    "ch": (lambda m, a, b, c: (a & b) | ((a ^ m) & c), "{0}?{1}:{2}={r}"),
}


@dataclass(frozen=True)
class BitRule:
    combine: str  # "" for a single transform, else a key of COMBINE
    parts: tuple[str, ...]

    @property
    def name(self) -> str:
        if not self.combine:
            return self.parts[0]
        if len(self.parts) == 2:
            return f"{self.parts[0]} {self.combine} {self.parts[1]}"
        return f"{self.combine}({', '.join(self.parts)})"

    def apply(self, x: int) -> int:
        values = [TRANSFORMS[p](x) for p in self.parts]
        return values[0] if not self.combine else COMBINE[self.combine][0](MASK, *values)


def bits(x: int) -> str:
    return f"{x:08b}"


def draw_rule(rng: random.Random, level: int) -> BitRule:
    if level == 1:
        return BitRule("", (rng.choice(UNARY),))
    if level == 2:
        return BitRule(rng.choice(("and", "or", "xor")), tuple(rng.sample(NAMES, 2)))
    return BitRule(rng.choice(("maj", "ch")), tuple(rng.sample(NAMES, 3)))


def draw(rng: random.Random, level: int, variant: str = "") -> Draft:
    while True:
        rule = draw_rule(rng, level)
        inputs = rng.sample(range(1 << BITS), EXAMPLES_BY_LEVEL[level] + 1)
        outputs = [rule.apply(x) for x in inputs]
        if len(set(outputs)) > 2:  # a (nearly) constant rule teaches nothing
            break
    lines = [f"{bits(x)} -> {bits(y)}" for x, y in zip(inputs[:-1], outputs)]
    prompt = render_prompt(rng, f"{STORY} {CLASS_TEXT[level]}", lines, ASK, bits(inputs[-1]))
    return Draft(prompt, bits(outputs[-1]), rule.name)


def parse(prompt: str) -> tuple[int, list[tuple[int, int]], int]:
    """The rule class level the story names, the example pairs, the query."""
    parts = split_prompt(prompt)
    levels = [lvl for lvl, text in CLASS_TEXT.items() if text in parts.story]
    if len(levels) != 1:
        raise PromptError("the prompt does not name one bit-rule class")
    pairs = []
    for line in parts.example_lines:
        x, arrow, y = line.partition(" -> ")
        if not (arrow and is_byte(x) and is_byte(y)):
            raise PromptError(f"not a bit manipulation example: {line!r}")
        pairs.append((int(x, 2), int(y, 2)))
    if not is_byte(parts.query):
        raise PromptError(f"not an 8-bit query: {parts.query!r}")
    return levels[0], pairs, int(parts.query, 2)


def is_byte(text: str) -> bool:
    return len(text) == BITS and set(text) <= {"0", "1"}


def pack(values: list[int]) -> int:
    """Bytes side by side in one integer, so one bitwise operation acts on all of them."""
    return sum(v << (BITS * i) for i, v in enumerate(values))


def fitting_rules(pairs: list[tuple[int, int]], level: int) -> Iterator[BitRule]:
    """Every rule of ``level`` or below that maps each example input to its output.

    Each transform's outputs on all examples are packed into one integer (8 bits per
    example), so one bitwise operation tests a rule on every example at once; the
    three-input rules are pruned on the positions their first inputs already decide.
    """
    m = (1 << (BITS * len(pairs))) - 1
    packed = {name: pack([fn(x) for x, _ in pairs]) for name, fn in TRANSFORMS.items()}
    target = pack([y for _, y in pairs])
    yield from (BitRule("", (n,)) for n in UNARY if packed[n] == target)
    if level < 2:
        return
    for i, a in enumerate(NAMES):
        for b in NAMES[i + 1:]:
            for op in ("and", "or", "xor"):
                if COMBINE[op][0](m, packed[a], packed[b]) == target:
                    yield BitRule(op, (a, b))
    if level < 3:
        return
    for i, a in enumerate(NAMES):  # maj: where a == b the output is a; elsewhere it is c
        for j in range(i + 1, len(NAMES)):
            b = NAMES[j]
            differ = packed[a] ^ packed[b]
            if (packed[a] ^ target) & ~differ & m:
                continue
            yield from (BitRule("maj", (a, b, c)) for c in NAMES[j + 1:]
                        if not (packed[c] ^ target) & differ)
    for a in NAMES:  # ch: where a is 1 the output is b, elsewhere c
        for b in NAMES:
            if b == a or (packed[b] ^ target) & packed[a]:
                continue
            yield from (BitRule("ch", (a, b, c)) for c in NAMES if c not in (a, b)
                        and not (packed[c] ^ target) & (packed[a] ^ m))


def bit_by_bit(rule: BitRule, x: int) -> list[str]:
    """The trace lines computing ``rule(x)``: each copy, then the combination per bit."""
    copies = [TRANSFORMS[p](x) for p in rule.parts]
    lines = [f"{p} = {bits(v)}" for p, v in zip(rule.parts, copies)]
    if rule.combine:
        template = COMBINE[rule.combine][1]
        columns = zip(*(bits(v) for v in copies), bits(rule.apply(x)))
        lines.append(" ".join(template.format(*col[:-1], r=col[-1]) for col in columns))
    return lines


def solve_from_prompt(prompt: str, style: str = "compact") -> tuple[str, str]:
    level, pairs, query = parse(prompt)
    rules = list(fitting_rules(pairs, level))
    if not rules:
        raise PromptError("no rule of the named class fits the examples")
    if len({r.apply(query) for r in rules}) != 1:
        raise Ambiguous(f"{len(rules)} rules fit the examples and disagree on the query")
    rule = rules[0]
    answer = bits(rule.apply(query))
    if style == "stepwise":
        return "\n".join(stepwise_trace(level, pairs, query, rule)), answer
    x, y = pairs[0]
    trace = [f"Rule: {rule.name}", f"Query x = {bits(query)}", *bit_by_bit(rule, query)]
    if rule.combine:
        trace.append(f"Result {answer}")
    trace.append(check_line(f"{rule.name} turns {bits(x)} into {bits(y)} as given", answer))
    return "\n".join(trace), answer


# --- the stepwise style ------------------------------------------------------------------------

def names(items) -> str:
    return ", ".join(items) or "none"


def applied(rule: BitRule, x: int) -> str:
    """``rule`` on ``x`` in one line: ``shl1 and rev of X = A and B = R``."""
    copies = [bits(TRANSFORMS[p](x)) for p in rule.parts]
    result = bits(rule.apply(x))
    if not rule.combine:
        return f"{rule.name} of {bits(x)} = {result}"
    if len(copies) == 2:
        return f"{rule.name} of {bits(x)} = {copies[0]} {rule.combine} {copies[1]} = {result}"
    return f"{rule.name} of {bits(x)} = {rule.combine}({', '.join(copies)}) = {result}"


def try_candidates(candidates: list[BitRule], examples: list[tuple[int, int]],
                   rule: BitRule) -> list[str]:
    """Each candidate, in order, on the examples in order: rejected at its first mismatch;
    the first one that matches them all is ``rule``."""
    lines = []
    for candidate in candidates:
        for x, y in examples:
            fits = candidate.apply(x) == y
            lines.append(f"{applied(candidate, x)}, "
                         + ("as given" if fits else f"want {bits(y)}: rejected"))
            if not fits:
                break
        else:
            if candidate != rule:
                raise AssertionError(f"{candidate.name} fits before {rule.name}")
            return lines + [f"So the rule is {rule.name}"]
    raise AssertionError(f"{rule.name} is not among the candidates")


def narrow(x: int, y: int, level: int) -> tuple[list[str], list[BitRule]]:
    """The copies of ``x``, each xor ``y`` (its *difference*: 1 where it differs from the
    output), and one local check per line that leave exactly the rules of ``level`` mapping
    ``x`` to ``y``, returned simplest first as :func:`fitting_rules` yields them.

    A rule fits where its copies' differences allow it: one copy alone when it has none; an
    ``and`` (``or``) pair of copies with 1 (0) wherever ``y`` has 1 (0) when their differences
    share no 1; ``a xor b`` when ``b`` is ``a``'s difference; ``maj`` when no two of its three
    differences share a 1; ``ch(a, b, c)`` when ``b`` has no difference where ``a`` has 1 and
    ``c`` none where ``a`` has 0."""
    copy = {n: TRANSFORMS[n](x) for n in NAMES}
    diff = {n: v ^ y for n, v in copy.items()}
    later = {n: NAMES[i + 1:] for i, n in enumerate(NAMES)}
    lines = [f"Copies, each xor {bits(y)} (1 where it differs):"]
    lines += [f"{n} of {bits(x)} = {bits(v)}, xor {bits(diff[n])}" for n, v in copy.items()]
    alone = [n for n in UNARY if not diff[n]]
    lines.append(f"Alone, xor 00000000: {names(alone)}")
    found = [BitRule("", (n,)) for n in alone]
    for op, keeps, where in (("and", lambda v: v & y == y, 1), ("or", lambda v: v | y == y, 0)):
        members = [n for n in NAMES if keeps(copy[n])]
        lines.append(f"{op} needs copies with {where} wherever {bits(y)} has {where}: "
                     f"{names(members)}")
        if len(members) > 1:
            lines.append(f"{op} pairs need xors sharing no 1, later partners:")
        for i, a in enumerate(members[:-1]):
            partners = [b for b in members[i + 1:] if not diff[a] & diff[b]]
            lines.append(f"{op} {a} {bits(diff[a])}: {names(partners)}")
            found += [BitRule(op, (a, b)) for b in partners]
    xor_pairs = [(a, b) for a in NAMES for b in later[a] if copy[b] == diff[a]]
    lines.append("xor pairs, a xor equal to a later copy: "
                 + names(f"{a} xor {b}" for a, b in xor_pairs))
    found += [BitRule("xor", pair) for pair in xor_pairs]
    if level >= 3:
        lines.append("maj needs xors sharing no 1, later partners:")
        partners = {a: [b for b in later[a] if not diff[a] & diff[b]] for a in NAMES[:-1]}
        lines += [f"maj {a} {bits(diff[a])}: {names(bs)}" for a, bs in partners.items()]
        triples = [(a, b, c) for a, bs in partners.items() for b in bs for c in bs
                   if c in partners.get(b, ())]
        lines.append("maj triples, the third a partner of the second: "
                     + names(BitRule("maj", t).name for t in triples))
        found += [BitRule("maj", t) for t in triples]
        lines.append("ch(a, b, c) needs b with xor 0 where a has 1, c with xor 0 where a has 0:")
        for a in NAMES:
            bs = [b for b in NAMES if b != a and not diff[b] & copy[a]]
            cs = [c for c in NAMES if c != a and not diff[c] & ~copy[a] & MASK]
            lines.append(f"ch {a} {bits(copy[a])}: b {names(bs)}; c {names(cs)}")
            found += [BitRule("ch", (a, b, c)) for b in bs for c in cs if c != b]
    in_order = list(fitting_rules([(x, y)], level))
    if len(found) != len(set(found)) or set(found) != set(in_order):
        raise AssertionError("the stepwise narrowing disagrees with the packed search: "
                             f"{set(found) ^ set(in_order)}")
    lines.append("In order: " + names(r.name for r in in_order if len(r.parts) < 3)
                 + (", then maj and ch as listed" if level >= 3 else ""))
    return lines, in_order


def evenness(y: int) -> int:
    """0 for an output with 3 to 5 ones, 1 for 1 to 7, 2 for all 0s or all 1s. The more even
    the output, the fewer candidates its example leaves (every and of two copies with no 1
    in common maps to 00000000), and the shorter the trace."""
    ones = bin(y).count("1")
    return 0 if 3 <= ones <= 5 else 1 if 1 <= ones <= 7 else 2


def stepwise_trace(level: int, pairs: list[tuple[int, int]], query: int,
                   rule: BitRule) -> list[str]:
    """Level 1 tries every transform on the examples; levels 2-3 first narrow the candidates
    with one example (:func:`evenness`), then try those on the other examples."""
    if level == 1:
        lines = [f"Try in order: {', '.join(UNARY)}"]
        lines += try_candidates([BitRule("", (n,)) for n in UNARY], pairs, rule)
    else:
        first = min(range(len(pairs)), key=lambda i: (evenness(pairs[i][1]), i))
        x, y = pairs[first]
        lines = [f"Narrow with the first output with 3 to 5 ones (else 1 to 7): example "
                 f"{first + 1}, {bits(x)} -> {bits(y)}"]
        narrowed, candidates = narrow(x, y, level)
        lines += narrowed
        lines += try_candidates(candidates, pairs[:first] + pairs[first + 1:], rule)
    answer = bits(rule.apply(query))
    lines += [f"Query: {applied(rule, query)}",
              check_line(f"{rule.name} fits all {len(pairs)} examples", answer)]
    return lines

