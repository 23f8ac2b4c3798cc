"""The built-in puzzle suite: labels are right, traces come from the examples alone.

Labels are checked three ways: the trace's final answer, a fresh solve from the prompt
text alone, and an independent oracle in this file that evaluates the hidden rule kept in
``meta`` with its own (string-based) arithmetic.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from fractions import Fraction

import pytest

from reasondistill.data.example import Example
from reasondistill.data.format import assistant_completion
from reasondistill.data.puzzles import (
    DEFAULT_LEVELS,
    FAMILIES,
    FAMILY_MODULES,
    HARD_TYPES,
    TYPES,
    Ambiguous,
    PromptError,
    answer_in_trace,
    bit_manipulation,
    cipher,
    cryptarithm,
    equation_numeric,
    generate_puzzles,
    gravity,
    make_puzzle,
    numeral,
    solve,
    solve_from_prompt,
    unit_conversion,
    write_jsonl,
)
from reasondistill.data.puzzles.common import Draft
from reasondistill.errors import ConfigError

PER_FAMILY = 1500  # at the default level
PER_LEVEL = 150  # at every level


@pytest.fixture(scope="module")
def default_suite() -> list[Example]:
    return generate_puzzles(PER_FAMILY * len(FAMILIES), seed=11)


@pytest.fixture(scope="module")
def every_level() -> list[Example]:
    return [e for family in FAMILIES for level in FAMILY_MODULES[family].LEVELS
            for e in generate_puzzles(PER_LEVEL, seed=5, families=[family], level=level)]


# --- independent oracles: the hidden rule in meta, evaluated without the suite's code -------

def roman(n: int) -> str:
    table = [(1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"),
             (50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")]
    out = ""
    for value, symbols in table:
        while n >= value:
            out, n = out + symbols, n - value
    return out


def round_cents(x: Fraction) -> str:
    cents = (x * 100 + Fraction(1, 2)).__floor__()
    return f"{cents // 100}.{cents % 100:02d}"


def bit_transform(name: str, s: str) -> str:
    if name == "x":
        return s
    if name == "not":
        return "".join("1" if c == "0" else "0" for c in s)
    if name == "rev":
        return s[::-1]
    k = int(name[3:])
    return {"shl": s[k:] + "0" * k, "shr": "0" * k + s[:-k], "rol": s[k:] + s[:k]}[name[:3]]


def bit_rule(rule: str, s: str) -> str:
    if "(" in rule:  # maj(a, b, c) / ch(a, b, c)
        kind, args = rule[:-1].split("(")
        a, b, c = (bit_transform(n, s) for n in args.split(", "))
        if kind == "maj":
            return "".join(max(col, key=col.count) for col in zip(a, b, c))
        return "".join(y if x == "1" else z for x, y, z in zip(a, b, c))
    words = rule.split()
    if len(words) == 1:
        return bit_transform(words[0], s)
    a, b = bit_transform(words[0], s), bit_transform(words[2], s)
    table = {"and": lambda x, y: x & y, "or": lambda x, y: x | y, "xor": lambda x, y: x ^ y}
    return "".join(str(table[words[1]](int(x), int(y))) for x, y in zip(a, b))


def equation_rule(text: str, a: int, b: int) -> int:
    """``add``, ``sub-1``, ``concat+1 reversed`` ... evaluated on digit strings."""
    def flip(n: int) -> int:
        return int(str(n)[::-1])

    match = re.fullmatch(r"(\w+?)([+-]1)? ?(reversed)?", text)
    group, offset, reversed_ = match[1], int(match[2] or 0), bool(match[3])
    if reversed_:
        a, b = flip(a), flip(b)
    value = {"add": a + b, "sub": a - b, "absdiff": abs(a - b), "mul": a * b,
             "concat": int(f"{a}{b:02d}")}[group] + offset
    if reversed_:
        value = -flip(-value) if value < 0 else flip(value)
    return value


def oracle(example: Example) -> str:
    """The label the hidden rule in ``meta`` gives, computed independently of the suite."""
    rule, query = example.meta["hidden_rule"], example.prompt.splitlines()[-1].split(": ", 1)[1]
    family = example.meta["family"]
    if family == "gravity":
        t = Fraction(query[4:-1])
        return round_cents(Fraction(rule[4:]) * t * t / 2)
    if family == "unit_conversion":
        return round_cents(Fraction(rule[4:]) * Fraction(query.split()[0]))
    if family == "numeral":
        return roman(int(query))
    if family == "cipher":
        key = rule.split()[1]
        decrypt = {c: p for p, c in zip("abcdefghijklmnopqrstuvwxyz", key)}
        return "".join(decrypt.get(c, c) for c in query)
    if family == "bit_manipulation":
        return bit_rule(rule, query)
    if family == "equation_numeric":
        return str(equation_rule(rule[query[2]], int(query[:2]), int(query[3:])))
    symbol_of = rule["digits"]
    digit_of = {s: d for d, s in symbol_of.items()}
    a, b = (int("".join(digit_of[s] for s in pair)) for pair in (query[:2], query[3:]))
    value = equation_rule(rule["operators"][query[2]], a, b)
    return ("-" if value < 0 else "") + "".join(symbol_of[d] for d in str(abs(value)))


ANSWER_FORMS = {
    "gravity": r"\d+\.\d\d",
    "unit_conversion": r"\d+\.\d\d",
    "numeral": r"[IVXLCDM]+",
    "cipher": r"[a-z]+( [a-z]+)*",
    "bit_manipulation": r"[01]{8}",
    "equation_numeric": r"-?\d+",
    "cryptarithm": r"-?[^\s{}\\\-=]+",
}


def check_problems(examples: list[Example]) -> None:
    for e in examples:
        family = e.meta["family"]
        assert answer_in_trace(e.trace) == e.answer, e.id
        assert solve(e) == (e.trace, e.answer), e.id  # from the prompt text alone
        assert oracle(e) == e.answer, (e.id, e.meta["hidden_rule"], e.prompt)
        assert re.fullmatch(ANSWER_FORMS[family], e.answer), (e.id, e.answer)
        assert "\\boxed" not in e.trace and "think>" not in e.trace
        assert assistant_completion(e).endswith("</think>\n\\boxed{" + e.answer + "}")
        if family == "cipher":
            assert set(e.answer.split()) <= cipher.VOCABULARY


# --- the labels --------------------------------------------------------------------------------

def test_default_level_problems_are_right_and_resolve_from_their_prompts(default_suite):
    assert Counter(e.meta["family"] for e in default_suite) == {f: PER_FAMILY for f in FAMILIES}
    check_problems(default_suite)


def test_every_level_problems_are_right_and_resolve_from_their_prompts(every_level):
    assert {(e.meta["family"], e.difficulty) for e in every_level} == {
        (f, str(level)) for f in FAMILIES for level in FAMILY_MODULES[f].LEVELS}
    check_problems(every_level)


def test_the_story_text_is_noise():
    """Swapping the opening sentence for another story changes no answer."""
    for e in generate_puzzles(70, seed=2):
        rest = e.prompt.split(",", 1)[1]
        assert solve_from_prompt("Once upon a time in a far land," + rest,
                                 e.meta["family"]) == (e.trace, e.answer)


def test_the_solver_reads_the_examples():
    """A hand-written prompt with a different hidden constant gets that constant's answer."""
    prompt = ("In Alice's Wonderland, a secret unit conversion is applied to measurements.\n"
              "Here are some examples:\n10.0 m becomes 25.00\n40.0 m becomes 100.00\n"
              "Now, convert the following measurement: 3.3 m")
    trace, answer = unit_conversion.solve_from_prompt(prompt)
    assert answer == "8.25" and "2.500" in trace
    prompt = ("In Alice's Wonderland, the gravitational constant has been secretly changed.\n"
              "Here are some examples:\nFor t = 2.0s, distance = 20.00 m\n"
              "For t = 4.0s, distance = 80.00 m\n"
              "Now, determine the falling distance for this time: t = 3.0s")
    assert gravity.solve_from_prompt(prompt)[1] == "45.00"


def test_traces_are_short_steps_ending_in_a_check_line(default_suite):
    for e in default_suite:
        lines = e.trace.splitlines()
        assert lines[-1].startswith("Check: ")
        assert sum(line.startswith("Check: ") for line in lines) == 1
        assert max(map(len, lines)) <= 160, (e.id, max(lines, key=len))
        assert len(lines) <= 40, e.id


# --- ambiguity is detected ---------------------------------------------------------------------

def prompt_of(story: str, lines: list[str], query: str) -> str:
    return "\n".join([f"In Alice's Wonderland, {story}", "Here are some examples:", *lines,
                      f"Now, determine the answer for: {query}"])


def test_bit_rules_that_fit_but_disagree_on_the_query_are_ambiguous():
    story = f"{bit_manipulation.STORY} {bit_manipulation.CLASS_TEXT[1]}"
    # shl1 and rol1 both map 00000001 -> 00000010 and 00100000 -> 01000000 ...
    ambiguous = prompt_of(story, ["00000001 -> 00000010", "00100000 -> 01000000"], "10000000")
    with pytest.raises(Ambiguous):
        bit_manipulation.solve_from_prompt(ambiguous)
    # ... but agree on 00000100, and 10000000 -> 00000001 tells rol1 apart.
    agreeing = prompt_of(story, ["00000001 -> 00000010", "00100000 -> 01000000"], "00000100")
    assert bit_manipulation.solve_from_prompt(agreeing)[1] == "00001000"
    decided = prompt_of(story, ["00000001 -> 00000010", "10000000 -> 00000001"], "10000000")
    assert bit_manipulation.solve_from_prompt(decided)[1] == "00000001"


def test_cipher_word_the_vocabulary_cannot_decide_is_ambiguous():
    story = cipher.STORY
    # "ab" -> no letters of "xyz" are known: three-letter words like "cat", "key", "map" fit.
    ambiguous = prompt_of(story, ["qr -> in"], "xyz")
    with pytest.raises(Ambiguous):
        cipher.solve_from_prompt(ambiguous)
    # Cipher letters are one-to-one: once "xyz" is "the", an unknown letter cannot be t, h
    # or e, so of the three-letter words only "map" is left.
    trace, answer = cipher.solve_from_prompt(prompt_of(story, ["xyz -> the"], "abc"))
    assert answer == "map" and "a=m b=a c=p" in trace
    # "?ueen" fits only "queen" (no other vocabulary word ends in "ueen").
    trace, answer = cipher.solve_from_prompt(prompt_of(story, ["bccs -> ueen"], "zbccs"))
    assert answer == "queen" and "fits only the word queen" in trace


def test_gravity_examples_that_do_not_pin_g_are_ambiguous():
    story = "the gravitational constant has been secretly changed."
    # t = 0.1 s: distances of a few millimetres allow g anywhere in a wide band.
    ambiguous = prompt_of(story, ["For t = 0.10s, distance = 0.05 m"], "t = 9.00s")
    with pytest.raises(Ambiguous):
        gravity.solve_from_prompt(ambiguous)


def test_equation_sub_and_absdiff_disagreeing_on_the_query_is_ambiguous():
    # Five operators -> level 3, where '%' could be sub or absdiff (52%21 = 31 fits both).
    lines = ["52%21 = 31", "93%41 = 52", "11+11 = 22", "12*13 = 156", "21/13 = 2113",
             "31&12 = 43"]
    with pytest.raises(Ambiguous):
        equation_numeric.solve_from_prompt(prompt_of("rules", lines, "21%52"))
    assert equation_numeric.solve_from_prompt(prompt_of("rules", lines, "52%21"))[1] == "31"


def test_cryptarithm_explanations_that_disagree_on_the_query_are_ambiguous():
    # 12+34 = 46 and 21*13 = 273 in symbols; '/' is the unused group (sub, level 1 guess).
    lines = ['!"+#$ = $&', '"!*!# = "\'#']
    examples, _ = cryptarithm.parse(prompt_of("symbols", lines, '!!/!!'))
    found = cryptarithm.explanations(examples, level=1)
    assert len({tuple(sorted(e.digits.items())) for e in found}) == 3  # '#' is 3, 4 or 2
    with pytest.raises(Ambiguous, match="disagree"):  # 11-12 = -1 '-!', or 11-14 = -3 '-$'
        cryptarithm.solve_from_prompt(prompt_of("symbols", lines, '!!/!"'))
    # 14-11 = 3, 15-11 = 4 and 13-11 = 2 are all written '#' under their explanations
    assert cryptarithm.solve_from_prompt(prompt_of("symbols", lines, "!$/!!"))[1] == "#"


def test_every_cryptarithm_explanation_is_one_to_one_and_fits_every_example():
    for e in generate_puzzles(60, seed=8, families=["cryptarithm"], level=2):
        examples, query = cryptarithm.parse(e.prompt)
        for found in cryptarithm.explanations(examples, level=2):
            assert len(set(found.digits.values())) == len(found.digits)
            symbol_of = {d: s for s, d in found.digits.items()}
            for eq in examples:
                a, b = (int("".join(str(found.digits[s]) for s in pair))
                        for pair in (eq.left[:2], eq.left[2:]))
                written = cryptarithm.encode(found.rules[eq.op].apply(a, b), symbol_of)
                assert written == ("-" if eq.negative else "") + eq.result


def test_the_generator_redraws_ambiguous_problems(monkeypatch):
    real = gravity.draw
    calls = []

    def first_ambiguous(rng, level, variant=""):
        calls.append(1)
        if len(calls) == 1:
            story = "the gravitational constant has been secretly changed."
            return Draft(prompt_of(story, ["For t = 0.10s, distance = 0.05 m"], "t = 9.00s"),
                         "1.00", "g = ?")
        return real(rng, level, variant)

    monkeypatch.setattr(gravity, "draw", first_ambiguous)
    example = make_puzzle("gravity", seed=0, index=0, level=1)
    assert example.meta["draws"] == 2 and len(calls) == 2


def test_a_solver_that_disagrees_with_the_hidden_rule_is_an_error(monkeypatch):
    real = FAMILY_MODULES["numeral"].draw

    def wrong_label(rng, level, variant=""):
        draft = real(rng, level, variant)
        return Draft(draft.prompt, draft.answer + "I", draft.rule)

    monkeypatch.setattr(FAMILY_MODULES["numeral"], "draw", wrong_label)
    with pytest.raises(RuntimeError, match="hidden rule"):
        make_puzzle("numeral", seed=0, index=0, level=1)


def test_a_malformed_prompt_is_a_prompt_error():
    with pytest.raises(PromptError):
        gravity.solve_from_prompt("In Wonderland, nothing.\nNow, answer: 3")


# --- determinism, ids, types -------------------------------------------------------------------

def test_same_seed_same_problems_other_seed_other_problems():
    first = [e.to_dict() for e in generate_puzzles(140, seed=3)]
    assert first == [e.to_dict() for e in generate_puzzles(140, seed=3)]
    other = [e.to_dict() for e in generate_puzzles(140, seed=4)]
    assert all(a["prompt"] != b["prompt"] for a, b in zip(first, other))


def test_results_are_stable_across_processes():
    code = ("import json; from reasondistill.data.puzzles import generate_puzzles; "
            "print(json.dumps([e.to_dict() for e in generate_puzzles(14, seed=9)]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "123", "PATH": ""})
    assert json.loads(out.stdout) == [e.to_dict() for e in generate_puzzles(14, seed=9)]


def test_fewer_families_or_problems_leave_the_others_unchanged():
    everything = generate_puzzles(70, seed=1)
    only_cipher = generate_puzzles(10, seed=1, families=["cipher"])
    assert only_cipher == [e for e in everything if e.meta["family"] == "cipher"]
    assert generate_puzzles(35, seed=1) == everything[:35]
    # the order in which families are named does not matter
    assert generate_puzzles(20, seed=1, families=["numeral", "gravity"]) == \
        generate_puzzles(20, seed=1, families=["gravity", "numeral"])


def test_ids_unique_types_and_difficulties_set(default_suite, every_level):
    everything = default_suite + every_level
    assert len({e.id for e in default_suite}) == len(default_suite)
    assert len({e.id for e in every_level}) == len(every_level)
    assert {e.type for e in everything} == set(TYPES)
    assert HARD_TYPES < set(TYPES)
    for e in default_suite:
        assert e.difficulty == str(DEFAULT_LEVELS[e.meta["family"]])
        assert e.id == f"puz-{e.meta['family']}-L{e.difficulty}-11-{e.meta['index']}"


def test_problems_are_dealt_round_robin():
    examples = generate_puzzles(23, seed=0)
    assert [e.meta["family"] for e in examples[:7]] == list(FAMILIES)
    counts = Counter(e.meta["family"] for e in examples)
    assert max(counts.values()) - min(counts.values()) <= 1
    assert generate_puzzles(0) == []


def test_deduce_and_guess_alternate():
    examples = generate_puzzles(8, families=["equation_numeric", "cryptarithm"])
    assert Counter(e.type for e in examples) == {
        "equation_numeric_deduce": 2, "equation_numeric_guess": 2,
        "cryptarithm_deduce": 2, "cryptarithm_guess": 2}


# --- errors and files ---------------------------------------------------------------------------

def test_unknown_family_names_the_allowed_ones_with_a_hint():
    with pytest.raises(ConfigError) as error:
        generate_puzzles(5, families=["gravity", "cyphre"])
    message = str(error.value)
    assert "'cyphre'" in message and "did you mean 'cipher'" in message
    assert all(name in message for name in FAMILIES)
    with pytest.raises(ConfigError, match="allowed: 1, 2, 3"):
        generate_puzzles(5, families=["gravity"], level=4)
    with pytest.raises(ConfigError):
        generate_puzzles(5, families=[])
    with pytest.raises(ConfigError):
        generate_puzzles(-1)


def test_write_jsonl_round_trips_atomically(tmp_path):
    examples = generate_puzzles(14, seed=6)
    path = write_jsonl(examples, tmp_path / "sub" / "puzzles.jsonl")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [Example.from_dict(row) for row in rows] == examples
    assert [p.name for p in path.parent.iterdir()] == ["puzzles.jsonl"]  # no temp file left


def test_the_suite_imports_without_torch():
    code = ("import sys, reasondistill.data.puzzles; "
            "heavy = [m for m in ('torch', 'transformers', 'numpy') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- the stepwise trace style -------------------------------------------------------------------

STEPWISE_FAMILIES = [f for f in FAMILIES if "stepwise" in FAMILY_MODULES[f].STYLES]
ARITHMETIC_FAMILIES = ["gravity", "unit_conversion", "equation_numeric"]
# a column of a sum, a difference or a product: only one-digit numbers and a carry
COLUMN = re.compile(r"^(ones|tens|hundreds|thousands|ten-thousands|hundred-thousands|10\^\d+): ")
DIGIT_OPERATION = re.compile(r"(\d+) ?([+\-*<]) ?(\d+)")
# one factor times one digit, written digit by digit (a partial product, a division's trial)
DIGIT_ROW = re.compile(r"(\d+) ?\* ?(\d)(?: \(\w[\w-]* digit\))?: ((?:\d\*\d[^;>]*;? ?)+) -> (\d+)")


def test_stepwise_is_written_for_every_family_but_cryptarithm():
    assert STEPWISE_FAMILIES == [f for f in FAMILIES if f != "cryptarithm"]
    with pytest.raises(ConfigError, match="not written for cryptarithm.*numeral"):
        generate_puzzles(4, families=["cryptarithm", "numeral"], style="stepwise")


@pytest.mark.parametrize("family", STEPWISE_FAMILIES)
def test_stepwise_traces_solve_the_same_problems_from_their_prompts(family):
    levels = FAMILY_MODULES[family].LEVELS
    for level in levels:
        compact = generate_puzzles(120, seed=5, families=[family], level=level)
        stepwise = generate_puzzles(120, seed=5, families=[family], level=level,
                                    style="stepwise")
        assert [(e.id, e.prompt, e.answer) for e in stepwise] == \
            [(e.id, e.prompt, e.answer) for e in compact]
        for e, c in zip(stepwise, compact):
            assert e.meta["trace_style"] == "stepwise" and e.trace != c.trace
            assert answer_in_trace(e.trace) == e.answer, e.id
            assert solve(e) == (e.trace, e.answer), e.id  # from the prompt text alone
            assert oracle(e) == e.answer


@pytest.mark.parametrize("family", ARITHMETIC_FAMILIES)
def test_stepwise_arithmetic_never_leaps(family):
    """Every column line of a stepwise trace works on one-digit numbers (plus a carry or a
    borrowed 1x), and every product of a number by one digit is written digit by digit and
    is right: no multi-digit result is stated without its steps."""
    columns = rows = 0
    for level in FAMILY_MODULES[family].LEVELS:
        for e in generate_puzzles(60, seed=3, families=[family], level=level, style="stepwise"):
            for line in e.trace.splitlines():
                if COLUMN.match(line):
                    columns += 1
                    for a, _, b in DIGIT_OPERATION.findall(line.split(": ", 1)[1]):
                        assert len(a) <= 2 and len(b) == 1, (e.id, line)
                        assert len(a) == 1 or a.startswith("1"), (e.id, line)
                for factor, digit, steps, product in DIGIT_ROW.findall(line):
                    rows += 1
                    assert int(factor) * int(digit) == int(product), (e.id, line)
                    for a, _, b in DIGIT_OPERATION.findall(steps):
                        assert len(a) == 1 and len(b) == 1, (e.id, line)
    assert columns > 500 and rows > 100


def test_stepwise_decimal_arithmetic_is_exact():
    """Long division, decimal products and rounding agree with Python's decimals."""
    import random
    from decimal import ROUND_DOWN, Decimal

    from reasondistill.data.puzzles.common import cents
    from reasondistill.data.puzzles.stepwise import (
        decimal_mul_steps,
        decimals,
        div_steps,
        round_steps,
    )

    rng = random.Random(0)
    for _ in range(2000):
        a = Decimal(rng.randint(1, 99999)).scaleb(-rng.randint(0, 6))
        b = Decimal(rng.randint(1, 99999)).scaleb(-rng.randint(0, 4))
        places = rng.randint(0, 4)
        _, quotient = div_steps(a, b, places)
        cut = max(places, decimals(a.scaleb(decimals(b))))
        assert quotient == (a / b).quantize(Decimal(1).scaleb(-cut), rounding=ROUND_DOWN)
        _, product = decimal_mul_steps(a, b)
        assert product == a * b
        assert round_steps(product, 2)[1] == cents(product)


def test_stepwise_scaling_reads_the_constant_by_long_division():
    e = generate_puzzles(1, seed=1, families=["unit_conversion"], level=2, style="stepwise")[0]
    lines = e.trace.splitlines()
    assert lines[0].startswith("k = out/in, read off the largest input: ")
    assert lines[1].endswith("long division:")
    assert any(line.startswith("remainder ") for line in lines)
    k = next(line for line in lines if re.fullmatch(r"k = \d+\.\d+", line))
    assert k == f"k = {e.meta['hidden_rule'].split(' = ')[1]}"


def test_stepwise_candidates_are_tried_and_rejected_in_order():
    e = generate_puzzles(1, seed=0, families=["equation_numeric"], style="stepwise")[0]
    tried = [line.split(" on ")[0][4:] for line in e.trace.splitlines()
             if line.startswith("Try ")]
    rejected = [line for line in e.trace.splitlines() if ", so '" in line and " is not " in line]
    assert tried[0] == "add" and rejected  # the first problem's rule is not add
    assert e.trace.index(rejected[0]) < e.trace.index("So '")


def test_stepwise_cipher_reads_each_letter_off_an_example():
    e = generate_puzzles(1, seed=0, families=["cipher"], level=2, style="stepwise")[0]
    examples = [line.split(" -> ") for line in e.prompt.splitlines()[2:-1]]
    looked_up = re.findall(r"^(\w): (\w+)=(\w+), letter (\d+) -> (\w)$", e.trace, re.M)
    assert looked_up
    for letter, cipher_word, plain_word, place, plain in looked_up:
        assert any(cipher_word in c.split() and plain_word in p.split() for c, p in examples)
        assert cipher_word[int(place) - 1] == letter and plain_word[int(place) - 1] == plain


def test_stepwise_numeral_builds_each_place_from_its_symbols():
    trace, answer = numeral.solve_from_prompt(
        "In Alice's Wonderland, numbers are secretly converted into a different numeral "
        "system.\nHere are some examples:\n12 -> XII\n40 -> XL\n"
        "Now, write this number in the Wonderland numeral system: 1994", "stepwise")
    assert answer == "MCMXCIV"
    assert trace.splitlines()[1:5] == [
        "thousands digit 1: 1 times M = M", "hundreds digit 9: 10 - 1, C before M = CM",
        "tens digit 9: 10 - 1, X before C = XC", "ones digit 4: 5 - 1, I before V = IV"]
