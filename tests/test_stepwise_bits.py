"""The stepwise trace of the bit manipulation family: the rule is found, not looked up.

Every claim a stepwise trace makes is recomputed here from the line's own text (and, for
the narrowing lists, from the copy lines above them) with this file's and
``test_puzzles``'s string-based helpers, not with the family's code.
"""

from __future__ import annotations

import re
from itertools import combinations

import pytest
from test_puzzles import bit_rule, bit_transform

from reasondistill.data.puzzles import bit_manipulation, generate_puzzles

LEVELS = (1, 2, 3)
N = 120
# the copies in the order the rules are enumerated (x itself is no level-1 rule)
NAMES = ["x", "not", "shl1", "shl2", "shl3", "shl4", "shr1", "shr2", "shr3", "shr4",
         *(f"rol{k}" for k in range(1, 8)), "rev"]
PAIR_OPS = ["and", "or", "xor"]

# "<rule> of <x> = <value or combination> ..." with what follows the computed value
CLAIM = re.compile(r"^(?:Query: )?(?P<rule>.+?) of (?P<x>[01]{8}) = (?P<work>.+?)"
                   r"(?P<tail>, xor [01]{8}|, as given|, want [01]{8}: rejected|)$")
COMBINED = re.compile(r"^(?P<expr>.+) = (?P<result>[01]{8})$")


@pytest.fixture(scope="module", params=LEVELS)
def level_pair(request):
    level = request.param
    compact = generate_puzzles(N, seed=5, families=["bit_manipulation"], level=level)
    stepwise = generate_puzzles(N, seed=5, families=["bit_manipulation"], level=level,
                                style="stepwise")
    return level, compact, stepwise


def examples_of(prompt: str) -> list[tuple[str, str]]:
    return [tuple(line.split(" -> ")) for line in prompt.splitlines()[2:-1]]


def xor(a: str, b: str) -> str:
    return "".join("1" if p != q else "0" for p, q in zip(a, b))


def shares_a_one(a: str, b: str) -> bool:
    return any(p == q == "1" for p, q in zip(a, b))


def parse_rule(name: str) -> tuple[str, list[str]]:
    """``("", [a])``, ``("and", [a, b])``, ``("maj", [a, b, c])`` ..."""
    if "(" in name:
        kind, args = name[:-1].split("(")
        return kind, args.split(", ")
    words = name.split()
    return ("", words) if len(words) == 1 else (words[1], [words[0], words[2]])


def order_key(name: str) -> tuple:
    """Simplest first: one copy, pairs, maj, ch; then by the copies' places in NAMES."""
    kind, parts = parse_rule(name)
    rank = {"": 0, "and": 1, "or": 1, "xor": 1, "maj": 2, "ch": 3}[kind]
    places = [NAMES.index(p) for p in parts]
    return (rank, *places, PAIR_OPS.index(kind) if rank == 1 else 0)


def checked_claims(line: str, outputs: dict[str, str], narrowed_output: str | None) -> str | None:
    """Recompute every value ``line`` claims; the rule it applies, or None."""
    match = CLAIM.match(line)
    if match is None:
        return None
    rule, x, work, tail = match["rule"], match["x"], match["work"], match["tail"]
    kind, parts = parse_rule(rule)
    if kind:
        combined = COMBINED.match(work)
        assert combined, line
        copies = [bit_transform(p, x) for p in parts]
        expected = (f" {kind} ".join(copies) if len(parts) == 2
                    else f"{kind}({', '.join(copies)})")
        assert combined["expr"] == expected, line
        value = combined["result"]
    else:
        value = work
    assert value == bit_rule(rule, x), line
    if tail.startswith(", xor "):
        assert narrowed_output is not None and tail[6:] == xor(value, narrowed_output), line
    elif tail == ", as given":
        assert outputs[x] == value, line
    elif tail:
        want = tail[len(", want "):-len(": rejected")]
        assert outputs[x] == want != value, line
    return rule


def list_after(line: str) -> list[str]:
    text = line.rsplit(": ", 1)[1]
    return [] if text == "none" else text.split(", ")


def check_narrowing(lines: list[str], level: int, x: str, y: str) -> list[str]:
    """Recompute each narrowing list from the copy lines; the candidates in the order the
    trace tries them, each checked to map ``x`` to ``y``."""
    copy, diff = {}, {}
    for line in lines:
        match = re.fullmatch(rf"(\w+) of {x} = ([01]{{8}}), xor ([01]{{8}})", line)
        if match:
            copy[match[1]], diff[match[1]] = match[2], match[3]
    assert list(copy) == NAMES
    later = {n: NAMES[i + 1:] for i, n in enumerate(NAMES)}
    rest = iter(lines[lines.index(f"rev of {x} = {copy['rev']}, xor {diff['rev']}") + 1:])

    assert list_after(next(rest)) == [n for n in NAMES[1:] if diff[n] == "0" * 8]
    for op, bit in (("and", "1"), ("or", "0")):
        members = [n for n in NAMES if all(c == bit for c, t in zip(copy[n], y) if t == bit)]
        assert list_after(next(rest)) == members
        if len(members) > 1:
            assert next(rest).startswith(f"{op} pairs need xors sharing no 1")
        for i, a in enumerate(members[:-1]):
            line = next(rest)
            assert line.startswith(f"{op} {a} {diff[a]}: ")
            assert list_after(line) == [b for b in members[i + 1:]
                                        if not shares_a_one(diff[a], diff[b])]
    xor_line = next(rest)
    assert xor_line.startswith("xor pairs") and list_after(xor_line) == [
        f"{a} xor {b}" for a in NAMES for b in later[a] if copy[b] == diff[a]]
    triples, chosen = [], []
    if level >= 3:
        assert next(rest).startswith("maj needs")
        partners = {}
        for a in NAMES[:-1]:
            line = next(rest)
            assert line.startswith(f"maj {a} {diff[a]}: ")
            partners[a] = list_after(line)
            assert partners[a] == [b for b in later[a] if not shares_a_one(diff[a], diff[b])]
        triples = [f"maj({a}, {b}, {c})" for a, b, c in combinations(NAMES, 3)
                   if b in partners[a] and c in partners[a] and c in partners[b]]
        assert next(rest).rsplit(": ", 1)[1] == (", ".join(triples) or "none")
        assert next(rest).startswith("ch(a, b, c) needs")
        for a in NAMES:
            line = next(rest)
            match = re.fullmatch(rf"ch {a} {copy[a]}: b (.+); c (.+)", line)
            assert match, line
            bs = [b for b in NAMES if b != a
                  and all(d == "0" for d, s in zip(diff[b], copy[a]) if s == "1")]
            cs = [c for c in NAMES if c != a
                  and all(d == "0" for d, s in zip(diff[c], copy[a]) if s == "0")]
            assert match[1] == (", ".join(bs) or "none") and match[2] == (", ".join(cs) or "none")
            chosen += [f"ch({a}, {b}, {c})" for b in bs for c in cs if c != b]
    in_order = next(rest)
    assert in_order.startswith("In order: ")
    simple = in_order[len("In order: "):].removesuffix(", then maj and ch as listed")
    simple = [] if simple == "none" else simple.split(", ")
    candidates = simple + triples + chosen
    assert sorted(candidates, key=order_key) == candidates  # simplest first
    assert all(bit_rule(rule, x) == y for rule in candidates)
    return candidates


def all_rules(level: int) -> list[str]:
    rules = NAMES[1:]
    if level >= 2:
        rules += [f"{a} {op} {b}" for a, b in combinations(NAMES, 2) for op in PAIR_OPS]
    if level >= 3:
        rules += [f"maj({a}, {b}, {c})" for a, b, c in combinations(NAMES, 3)]
        rules += [f"ch({a}, {b}, {c})" for a in NAMES for b in NAMES for c in NAMES
                  if len({a, b, c}) == 3]
    return rules


# --- tests -------------------------------------------------------------------------------------

def test_stepwise_is_a_bit_manipulation_style():
    assert bit_manipulation.STYLES == ("compact", "stepwise")


def test_stepwise_reaches_the_compact_traces_rule(level_pair):
    """Same problems, re-solved from the prompt: test_puzzles' stepwise test, which covers
    this family too. Here: the rule the search ends at is the one compact names."""
    level, compact, stepwise = level_pair
    for e, c in zip(stepwise, compact, strict=True):
        rule = c.trace.splitlines()[0].removeprefix("Rule: ")
        lines = e.trace.splitlines()
        assert f"So the rule is {rule}" in lines, e.id  # the compact trace's rule
        assert lines[-1].startswith(f"Check: {rule} fits all "), e.id
        assert lines[-2].startswith(f"Query: {rule} of "), e.id
        assert lines[-2].endswith(f" = {e.answer}"), e.id


def test_every_computed_value_is_right(level_pair):
    """Each copy, combination, xor and verdict, recomputed from the line's own text."""
    level, _, stepwise = level_pair
    claims = 0
    for e in stepwise:
        outputs = dict(examples_of(e.prompt))
        header = re.search(r"example \d+, ([01]{8}) -> ([01]{8})$", e.trace.splitlines()[0])
        narrowed_output = header[2] if header else None
        for line in e.trace.splitlines():
            claims += checked_claims(line, outputs, narrowed_output) is not None
    assert claims > N * 10


def test_the_rule_is_found_by_trying_candidates_in_order(level_pair):
    """The candidates are tried simplest first; each one's lines run over the examples in
    order up to its first mismatch (rejected); the first that matches them all is the rule."""
    level, _, stepwise = level_pair
    rejected_first = 0
    for e in stepwise:
        examples = examples_of(e.prompt)
        lines = e.trace.splitlines()
        rule = next(line for line in lines if line.startswith("So the rule is "))[15:]
        if level == 1:
            assert lines[0] == f"Try in order: {', '.join(NAMES[1:])}"
            candidates, remaining = NAMES[1:], examples
        else:
            header = re.fullmatch(r"Narrow with the first output with 3 to 5 ones \(else 1 to "
                                  r"7\): example (\d+), ([01]{8}) -> ([01]{8})", lines[0])
            assert header, lines[0]
            k = int(header[1]) - 1
            assert examples[k] == (header[2], header[3])
            ones = [y.count("1") for _, y in examples]
            evenness = [0 if 3 <= n <= 5 else 1 if 1 <= n <= 7 else 2 for n in ones]
            assert k == evenness.index(min(evenness))
            candidates = check_narrowing(lines, level, header[2], header[3])
            remaining = examples[:k] + examples[k + 1:]
        tried = [(line, checked_claims(line, dict(examples), None)) for line in lines
                 if line.endswith((", as given", ": rejected"))]
        order = list(dict.fromkeys(r for _, r in tried))
        assert order == candidates[:len(order)] and order[-1] == rule, e.id
        for candidate in order:
            own = [line for line, r in tried if r == candidate]
            xs = [re.search(r" of ([01]{8}) = ", line)[1] for line in own]
            assert xs == [x for x, _ in remaining[:len(own)]], (e.id, candidate)
            assert all(line.endswith(", as given") for line in own[:-1]), (e.id, candidate)
            if candidate == rule:
                assert len(own) == len(remaining) and own[-1].endswith(", as given")
            else:
                assert own[-1].endswith(": rejected"), (e.id, candidate)
        first_reject = next((i for i, (line, _) in enumerate(tried)
                             if line.endswith(": rejected")), None)
        first_accept_line = next(i for i, (_, r) in enumerate(tried) if r == rule)
        rejected_first += first_reject is not None and first_reject < first_accept_line
    assert rejected_first >= 0.6 * N  # most rules are found after rejecting others


@pytest.mark.parametrize("level", [2, 3])
def test_the_narrowing_leaves_every_rule_that_fits_its_example(level):
    """Completeness: brute force over every rule of the level, with the oracle (level 1
    tries every transform)."""
    rules = all_rules(level)
    count = N if level == 2 else 12  # 6000 rules each at level 3
    for e in generate_puzzles(count, seed=5, families=["bit_manipulation"], level=level,
                              style="stepwise"):
        lines = e.trace.splitlines()
        x, y = re.search(r"([01]{8}) -> ([01]{8})$", lines[0]).groups()
        assert check_narrowing(lines, level, x, y) == [r for r in rules
                                                        if bit_rule(r, x) == y], e.id


def test_a_candidate_that_fits_one_example_is_rejected_at_the_next():
    story = f"{bit_manipulation.STORY} {bit_manipulation.CLASS_TEXT[1]}"
    prompt = "\n".join([f"In Alice's Wonderland, {story}", "Here are some examples:",
                        "00000001 -> 00000010", "10000000 -> 00000001",
                        "Now, determine the output for: 10000000"])
    trace, answer = bit_manipulation.solve_from_prompt(prompt, "stepwise")
    assert answer == "00000001"
    lines = trace.splitlines()
    assert lines[1:4] == [
        "not of 00000001 = 11111110, want 00000010: rejected",
        "shl1 of 00000001 = 00000010, as given",
        "shl1 of 10000000 = 00000000, want 00000001: rejected",
    ]
    assert lines[-4:] == [
        "rol1 of 10000000 = 00000001, as given",
        "So the rule is rol1",
        "Query: rol1 of 10000000 = 00000001",
        "Check: rol1 fits all 2 examples, so the answer is 00000001",
    ]
