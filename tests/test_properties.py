"""Property-based tests (hypothesis) of three contracts the rest of the suite checks by example:

* the format contract (data/format.py + boxed.py): a label rendered as ``trace </think>
  \\boxed{label}`` is read back by the answer extractor;
* the answer extractor and comparer (evaluate/answers.py): the last box after ``</think>``,
  numbers compared by value whatever their formatting, whole numbers exactly;
* the stratified order (data/sampling.py): a permutation, deterministic, and every
  effective batch within one row of the global type shares.

CI-friendly: ~150 examples a property, no deadline, no example database written to the
checkout, and a fixed (derandomized) example stream when ``CI`` is set.
"""

from __future__ import annotations

import math
import os
from collections import Counter

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from reasondistill.boxed import box, iter_boxed
from reasondistill.data.example import Example
from reasondistill.data.format import (
    DROP_SHORT_TRACE,
    FormatSpec,
    RowDropped,
    assistant_completion,
    clean_trace,
)
from reasondistill.data.sampling import largest_batch_first, stratified_order
from reasondistill.evaluate.answers import (
    answer_kind,
    extract,
    extract_answer,
    follows_format,
    is_correct,
    parse_number,
)

PROPERTY = settings(max_examples=150, deadline=None, database=None,
                    derandomize=bool(os.environ.get("CI")),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

# --------------------------------------------------------------------------- strategies

# Pieces that stress the contract: braces, escapes, boxes, think tags (whole and split),
# whitespace, non-ASCII.
TRICKY = ["{", "}", "\\", "\\{", "\\}", "\\boxed{", "\\boxed{}", "</think>", "<think>", "<thi",
          "nk>", "</", "think>", " ", "\n", "\t", "$", "^", "_", "a", "x", "1", "0", ",", ".",
          "é", "∑", "−", "😀", "\\frac{1}{2}"]
tricky_text = st.lists(st.sampled_from(TRICKY), max_size=12).map("".join)
any_text = st.one_of(tricky_text, st.text(max_size=30))
# Loaders strip answers (data/example.py: as_answer_string), so a label never starts or ends
# with whitespace and is never empty.
labels = any_text.map(str.strip).filter(bool)


def render(answer: str, trace: str = "", spec: FormatSpec = FormatSpec()) -> str:
    """The assistant completion the student learns for this label (a trace long enough
    to be kept, then whatever ``trace`` adds)."""
    example = Example(id="x", prompt="p", answer=answer, trace="We reason it out. " + trace)
    return assistant_completion(example, spec)


def is_one_box(text: str) -> bool:
    """``text`` is a single balanced ``\\boxed{...}`` from start to end."""
    spans = list(iter_boxed(text))
    return len(spans) == 1 and spans[0][:2] == (0, len(text))


def plain_label(answer: str) -> bool:
    """A label the round trip reproduces byte for byte: no literal ``\\{``/``\\}`` (the box
    uses those to escape unbalanced braces, so extraction unescapes them), no ``</think>``
    (the extractor cuts at the last one) and not wholly one box (which is unwrapped)."""
    return ("\\{" not in answer and "\\}" not in answer and "</think>" not in answer
            and not is_one_box(answer))


# --------------------------------------------------------------------------- format contract


@PROPERTY
@given(answer=labels, trace=any_text)
def test_a_plain_label_is_read_back_exactly_from_its_record(answer, trace):
    assume(plain_label(answer))
    text = render(answer, trace)
    assert extract(text) == extract(text).__class__(answer, "final")
    assert follows_format(text)
    assert text.endswith(box(answer))


@PROPERTY
@given(answer=labels, trace=any_text)
@example(answer="A \\cup \\{3\\}", trace="")  # was graded wrong before is_correct unescaped
@example(answer="\\{", trace="")
def test_every_label_without_think_tags_is_graded_correct_against_its_own_record(answer, trace):
    """Literal ``\\{`` in a label (``A \\cup \\{3\\}``) comes back unescaped; the comparer
    must still accept a student that reproduced its training target exactly."""
    assume("</think>" not in answer and not is_one_box(answer))
    text = render(answer, trace)
    found = extract(text)
    assert found.source == "final"
    assert is_correct(found.answer, answer)


@PROPERTY
@given(answer=labels.filter(lambda a: "\\{" not in a and "\\}" not in a and "\\boxed" not in a))
def test_a_label_holding_a_think_tag_is_read_back_through_the_fallback(answer):
    """Not refused by the renderer: the extractor cuts at the label's own ``</think>``, finds
    no box after it and falls back to the last box anywhere, which is the label's."""
    assume("</think>" in answer)
    assert extract(render(answer)) == extract(render(answer)).__class__(answer, "fallback")


@PROPERTY
@given(inner=st.text(st.characters(blacklist_characters="{}\\", blacklist_categories=("Cs",)),
                     min_size=1, max_size=20).map(str.strip).filter(bool),
       depth=st.integers(1, 3))
def test_a_label_that_is_one_box_reads_as_its_content(inner, depth):
    assume("</think>" not in inner)
    answer = "\\boxed{" * depth + inner + "}" * depth
    assert extract_answer(render(answer)) == inner
    # ... and an empty box is no answer at all (the renderer does not refuse it).
    assert extract_answer(render("\\boxed{" * depth + "}" * depth)) is None


@PROPERTY
@given(trace=any_text, answer=labels, min_chars=st.integers(0, 12))
def test_a_record_is_dropped_with_its_reason_or_has_one_think_close_and_ends_in_the_box(
        trace, answer, min_chars):
    assume("think>" not in answer)
    spec = FormatSpec(min_trace_chars=min_chars)
    example = Example(id="x", prompt="p", answer=answer, trace=trace)
    try:
        text = assistant_completion(example, spec)
    except RowDropped as drop:
        assert drop.reason == DROP_SHORT_TRACE
        assert len(clean_trace(trace).strip()) < min_chars
        return
    assert text.count("</think>") == 1 and "<think>" not in text
    assert text.endswith("\n</think>\n" + box(answer))
    head = text[: -len("\n</think>\n" + box(answer))]
    assert head == head.rstrip() and list(iter_boxed(head)) == []


@PROPERTY
@given(answer=labels)
def test_the_answer_only_record_is_the_box_alone(answer):
    text = render(answer, spec=FormatSpec(answer_only=True))
    assert text == "</think>\n" + box(answer)
    if plain_label(answer):
        assert extract_answer(text) == answer and follows_format(text)


# --------------------------------------------------------------------------- extraction

# Answers that read back exactly from a box, and filler between boxes that holds no box,
# brace or think tag.
box_answers = labels.filter(plain_label)
filler = st.text(st.characters(blacklist_characters="{}\\<>", blacklist_categories=("Cs",)),
                 max_size=15)


@PROPERTY
@given(text=any_text)
def test_extraction_never_raises_and_reports_where_the_answer_came_from(text):
    found = extract(text)
    assert (found.answer is None) == (found.source == "none")
    if found.answer is not None:
        assert found.answer == found.answer.strip() and found.answer
    if follows_format(text):
        assert found.source == "final" and text.count("</think>") == 1


@PROPERTY
@given(drafts=st.lists(box_answers, max_size=3), finals=st.lists(box_answers, min_size=1,
                                                                    max_size=4),
       gaps=st.lists(filler, min_size=8, max_size=8))
def test_the_last_box_after_the_last_think_close_wins(drafts, finals, gaps):
    reasoning = gaps[0] + "".join(box(d) + gaps[1] for d in drafts)
    answer_part = "".join(gaps[2] + box(f) for f in finals) + gaps[3]
    text = reasoning + "</think>" + answer_part
    assert extract(text) == extract(text).__class__(finals[-1], "final")
    # No think close: the last box anywhere, flagged as a fallback.
    assert extract(reasoning + answer_part) == extract(text).__class__(finals[-1], "fallback")
    # A truncated box after the answer (generation cut off) changes nothing.
    assert extract(text + "\\boxed{" + gaps[4]) == extract(text)


@PROPERTY
@given(draft=box_answers, gap=filler)
def test_a_box_only_in_the_reasoning_is_a_fallback(draft, gap):
    text = gap + box(draft) + gap + "</think>" + gap
    assert extract(text) == extract(text).__class__(draft, "fallback")
    assert not follows_format(text)


# --------------------------------------------------------------------------- numbers

integers = st.one_of(st.integers(-10**6, 10**6), st.integers(-10**25, 10**25))


def whole_formats(n: int) -> list[str]:
    """Ways a grader (and ``parse_number``) reads as the whole number ``n``."""
    sign = "-" if n < 0 else ""
    digits = str(abs(n))
    grouped = f"{abs(n):,}"
    forms = [str(n), f"{n:,}", f"{n}.0", f"{n}.000", f"{sign}{grouped}.00", f"${n:,}",
             f"{sign}\\${grouped}", f"{n} apples", f"{n:,} (eggs)", f"{n}cm", f"{n} km/h",
             f"{n}%", f"{n} m^2", f"{n}.", f"\\text{{{n}}}", f"{sign}{digits[:1]}{{,}}{digits[1:]}"
             if len(digits) == 4 else str(n)]
    if n >= 0:
        forms.append(f"+{n}")
    else:
        forms.append(f"−{abs(n)}")  # U+2212 MINUS SIGN
    return forms


def numeric_label(n: int) -> bool:
    """``str(n)`` is compared as a number: not an 8+ character bit string, which is compared
    as its digits (answer_kind's documented exception)."""
    return answer_kind(str(n)) == "numeric"


@PROPERTY
@given(n=integers)
def test_an_integer_is_a_numeric_label_unless_it_is_a_bit_string(n):
    text = str(n)
    is_bits = len(text) >= 8 and set(text) <= {"0", "1"}
    assert answer_kind(text) == ("string" if is_bits else "numeric")


@PROPERTY
@given(n=integers, data=st.data())
def test_every_formatting_of_a_whole_number_equals_it_both_ways(n, data):
    assume(numeric_label(n))
    form = data.draw(st.sampled_from(whole_formats(n)))
    assert parse_number(form) == float(n)
    assert is_correct(form, str(n)), form
    assert is_correct(str(n), form), form


@PROPERTY
@given(n=integers, m=integers, data=st.data())
def test_whole_numbers_compare_exactly_and_symmetrically(n, m, data):
    assume(numeric_label(n) and numeric_label(m))
    a = data.draw(st.sampled_from(whole_formats(n)))
    b = data.draw(st.sampled_from(whole_formats(m)))
    assert is_correct(a, b) == is_correct(b, a) == (n == m), (a, b)
    assert not is_correct(str(n + 1), str(n))  # never off by one, however large


@PROPERTY
@given(n=st.integers(-10**9, 10**9))
def test_integer_tolerance_applies_the_relative_tolerance_to_whole_numbers(n):
    assume(numeric_label(n) and numeric_label(n + 1))
    close = is_correct(str(n + 1), str(n), integer_tolerance=True)
    if abs(n) >= 20_000:  # 1 <= 1e-4 * |n|, well clear of the boundary
        assert close
    elif abs(n) <= 5_000:
        assert not close


@PROPERTY
@given(whole=st.integers(-10**6, 10**6), frac=st.text("0123456789", min_size=1, max_size=6),
       zeros=st.integers(1, 4))
def test_trailing_zeros_do_not_change_a_decimal(whole, frac, zeros):
    sign = "-" if whole < 0 else ""
    label = f"{sign}{abs(whole):,}.{frac}"
    assume(answer_kind(label) == "numeric")
    padded = f"{whole}.{frac}{'0' * zeros}"
    assert is_correct(padded, label) and is_correct(label, padded)


finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)


@PROPERTY
@given(a=finite, b=finite)
def test_a_number_never_equals_a_clearly_different_number(a, b):
    rel_tol = 1e-4
    label = repr(b)
    assume(answer_kind(label) == "numeric")
    far = abs(a - b) > 2 * rel_tol * abs(b) if b != 0 else abs(a) > 2 * rel_tol
    assume(far)
    assert not is_correct(repr(a), label, rel_tol=rel_tol)


@PROPERTY
@given(b=finite.filter(lambda x: not x.is_integer()), delta=st.floats(-0.5, 0.5))
def test_a_decimal_within_half_the_tolerance_is_correct(b, delta):
    rel_tol = 1e-4
    a = b * (1 + delta * rel_tol)
    assume(math.isfinite(a) and abs(a - b) <= 0.5 * rel_tol * abs(b))
    assert is_correct(repr(a), repr(b), rel_tol=rel_tol)


@PROPERTY
@given(digits=st.text("0123456789", min_size=1, max_size=10))
def test_zero_led_digit_strings_compare_as_digits_not_values(digits):
    label = "0" + digits
    assert answer_kind(label) == "string"
    assert not is_correct(str(int(label)), label)
    assert is_correct(f"  {label} ", label)


# --------------------------------------------------------------------------- stratified order

type_lists = st.lists(st.sampled_from(["add", "mul", "sub", "div", "x"]), max_size=120)


def blocks(order: list[int], size: int) -> list[list[int]]:
    return [order[i:i + size] for i in range(0, len(order), size)]


@PROPERTY
@given(types=type_lists, batch=st.integers(1, 40), seed=st.integers(0, 2**32),
       epoch=st.integers(0, 5))
def test_the_order_is_a_deterministic_permutation(types, batch, seed, epoch):
    order = stratified_order(types, batch, seed, epoch)
    assert sorted(order) == list(range(len(types)))
    assert stratified_order(list(types), batch, seed, epoch) == order


@PROPERTY
@given(types=type_lists, batch=st.integers(1, 40), seed=st.integers(0, 2**32),
       epoch=st.integers(0, 5))
def test_every_effective_batch_is_within_one_row_of_the_global_shares(types, batch, seed, epoch):
    """The module's guarantee: in every block of size m (the trainer's batches: full blocks,
    then a shorter last one), a type with c of the N rows has floor(m·c/N) or ceil(m·c/N)."""
    order = stratified_order(types, batch, seed, epoch)
    total, counts = len(types), Counter(types)
    chunks = blocks(order, batch)
    assert all(len(chunk) == batch for chunk in chunks[:-1])
    for chunk in chunks:
        m, here = len(chunk), Counter(types[i] for i in chunk)
        for t, c in counts.items():
            low, high = m * c // total, -(-m * c // total)
            assert low <= here[t] <= high, (t, m, c, total, here[t])


@PROPERTY
@given(types=type_lists.filter(bool), data=st.data(), seed=st.integers(0, 2**16),
       padded=st.booleans())
def test_largest_batch_first_moves_whole_blocks_and_leads_with_the_costliest(types, data,
                                                                             seed, padded):
    micro = data.draw(st.integers(1, 8))
    batch = micro * data.draw(st.integers(1, 5))
    lengths = data.draw(st.lists(st.integers(1, 500), min_size=len(types),
                                 max_size=len(types)))
    order = stratified_order(types, batch, seed)
    moved = largest_batch_first(order, lengths, batch, micro, padded=padded)
    assert sorted(moved) == sorted(order)
    full = len(order) - len(order) % batch
    assert sorted(map(sorted, blocks(moved[:full], batch))) == \
        sorted(map(sorted, blocks(order[:full], batch)))
    assert moved[full:] == order[full:]  # a short last block stays last
    if full:
        def cost(rows):
            sizes = [lengths[i] for i in rows]
            return len(sizes) * max(sizes) if padded else sum(sizes)

        assert cost(moved[:micro]) == max(cost(order[i:i + micro])
                                          for i in range(0, full, micro))
