"""Answer extraction and checking: the rules a grader applies."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from reasondistill.evaluate.answers import (
    Extraction,
    answer_kind,
    extract,
    extract_answer,
    follows_format,
    is_correct,
    parse_number,
    run_with_deadline,
)

# --------------------------------------------------------------------------- extraction


def test_answer_after_think_wins_over_box_in_reasoning():
    text = "Try \\boxed{3} first... no.\n</think>\n\\boxed{5}"
    assert extract(text) == Extraction("5", "final")


def test_box_only_inside_reasoning_is_a_flagged_fallback():
    text = "It is \\boxed{7} I think.\n</think>\nThe answer is seven."
    assert extract(text) == Extraction("7", "fallback")


def test_no_think_tag_is_fallback():
    assert extract("so \\boxed{12}") == Extraction("12", "fallback")


def test_last_box_after_think_wins():
    assert extract_answer("</think> \\boxed{1} then \\boxed{2}") == "2"


def test_last_think_tag_counts():
    text = "</think> \\boxed{1} <think> more </think> \\boxed{9}"
    assert extract(text) == Extraction("9", "final")


def test_nested_braces():
    text = "</think>\n\\boxed{\\frac{1}{\\sqrt{2}}}"
    assert extract_answer(text) == "\\frac{1}{\\sqrt{2}}"


def test_missing_box():
    assert extract("</think> the answer is 5") == Extraction(None, "none")
    assert extract_answer("") is None


def test_unbalanced_box_is_skipped_and_earlier_box_used():
    # a truncated final box does not count; the balanced one in the reasoning is the fallback
    text = "guess \\boxed{4}\n</think>\n\\boxed{\\frac{1}{2"
    assert extract(text) == Extraction("4", "fallback")
    assert extract("</think> \\boxed{12") == Extraction(None, "none")


def test_whitespace_stripped_and_escaped_braces_unescaped():
    assert extract_answer("</think>\\boxed{  a\\}b  }") == "a}b"
    assert extract_answer("</think>\\boxed{\\{x}") == "{x"


def test_empty_box_is_not_an_answer_and_double_box_unwraps():
    assert extract("</think> put it in \\boxed{} like \\boxed{ }") == Extraction(None, "none")
    assert extract_answer("</think>\\boxed{\\boxed{5}}") == "5"


def test_follows_format():
    assert follows_format("reasoning\n</think>\n\\boxed{5}")
    assert not follows_format("a </think> b </think> \\boxed{5}")  # two think ends
    assert not follows_format("\\boxed{5} </think> done")  # box before the tag
    assert not follows_format("\\boxed{5}")


# --------------------------------------------------------------------------- kinds


@pytest.mark.parametrize("label, kind", [
    ("XIV", "string"), ("C", "string"), ("(B)", "string"), ("00010101", "string"),
    ("10110011", "string"), ("007", "string"), ("hello world", "string"),
    ("42", "numeric"), ("-1,234.5", "numeric"), ("3/4", "numeric"), ("\\frac{3}{4}", "numeric"),
    ("12%", "numeric"), ("$5", "numeric"), ("12 cm", "numeric"), ("0", "numeric"),
    ("\\sqrt{2}", "latex"), ("x^2+1", "latex"), ("2x+3", "latex"), ("(1, 2)", "latex"),
    ("60 (eggs)", "numeric"), ("$5.00 per hour", "numeric"), ("100 m^2", "numeric"),
    ("3x", "latex"), ("3(x)", "latex"), ("5 x", "latex"), ("5 x^2", "latex"),
])
def test_answer_kind(label, kind):
    assert answer_kind(label) == kind


@pytest.mark.parametrize("text, value", [
    ("1,234", 1234.0), ("-1,234.5", -1234.5), ("$1,000,000", 1e6), ("\\$5", 5.0),
    ("45%", 45.0), ("3/4", 0.75), ("-3/4", -0.75), ("\\frac{3}{4}", 0.75),
    ("\\dfrac{-3}{4}", -0.75), ("-\\frac{1}{8}", -0.125), ("5.", 5.0), ("12 cm", 12.0),
    ("3.5 km/h", 3.5), ("12cm", 12.0), ("30^\\circ", 30.0), ("1{,}234", 1234.0),
    ("1.5 \\times 10^{3}", 1500.0), ("\\text{7 apples}", 7.0), ("−2", -2.0),
    ("1,2", None), ("3x", None), ("abc", None), ("", None), ("1/0", None),
    ("60 (eggs)", 60.0), ("60(eggs).", 60.0), ("$5.00 per hour", 5.0), ("\\$5.00/hour", 5.0),
    ("100 m^2", 100.0), ("100\\text{ m}^{2}", 100.0), ("9.8 m/s^2", 9.8), ("12 apples (total)", 12.0),
    ("£5", 5.0), ("30°C", 30.0), ("3(x)", None), ("5 x", None), ("5 x^2", None), ("4 pi", None),
])
def test_parse_number(text, value):
    assert parse_number(text) == value


# --------------------------------------------------------------------------- comparison


@pytest.mark.parametrize("predicted, label", [
    ("1,234", "1234"), ("-1,234.5", "-1234.5"), ("-1234.50", "-1,234.5"), ("$12", "12"),
    ("12.", "12"), ("45%", "45"), ("0.75", "3/4"), ("\\frac{3}{4}", "0.75"),
    ("\\dfrac{3}{4}", "3/4"), ("-\\frac{1}{2}", "-0.5"), ("12 cm", "12"), ("7", "7 apples"),
    ("XIV", "XIV"), ("  hello   world ", "hello world"), ("00010101", "00010101"),
    ("A", "A"), ("\\sqrt{4}", "2"), ("x = 5", "5"),
])
def test_correct(predicted, label):
    assert is_correct(predicted, label)


@pytest.mark.parametrize("predicted, label", [
    ("10101", "00010101"),  # a bit string is not its numeric value
    ("21", "00010101"),
    ("00010100", "00010101"),
    ("xiv", "XIV"), ("14", "XIV"), ("B", "A"), ("hello", "hello world"),
    ("-5", "5"), ("1234", "-1,234"), ("0.7", "3/4"), ("3x", "3"), ("1,2", "12"),
    (None, "5"), ("", "5"),
])
def test_wrong(predicted, label):
    assert not is_correct(predicted, label)


# Label formats from math word-problem datasets (GSM8K, MATH, AQuA, SVAMP, ASDiv, MAWPS) and
# the answers models box for them. A number with units or words after it, in the label or in
# the prediction, is that number; whole numbers compare exactly, other numbers within rel_tol.
GRADER_CASES = [
    # words in parentheses (GSM8K-style rationales, MAWPS)
    pytest.param("60", "60 (eggs)", True, id="label-words-in-parens"),
    pytest.param("60 (eggs)", "60", True, id="pred-words-in-parens"),
    pytest.param("61", "60 (eggs)", False, id="label-words-in-parens-off-by-one"),
    pytest.param("18", "18 (dollars)", True, id="label-dollars-in-parens"),
    pytest.param("$18", "18 (dollars)", True, id="pred-currency-label-parens"),
    # unit words
    pytest.param("60 eggs", "60", True, id="pred-unit-word"),
    pytest.param("12", "12 apples", True, id="label-unit-word"),
    pytest.param("12 oranges", "12 apples", True, id="units-are-not-compared"),
    pytest.param("13 apples", "12 apples", False, id="unit-word-off-by-one"),
    pytest.param("5", "5 hours", True, id="label-hours"),
    pytest.param("5 hours", "5", True, id="pred-hours"),
    pytest.param("6", "5 hours", False, id="label-hours-wrong"),
    pytest.param("3.5", "3.5 km/h", True, id="label-speed"),
    pytest.param("3.5 km/h", "3.5", True, id="pred-speed"),
    pytest.param("3.6", "3.5 km/h", False, id="label-speed-wrong"),
    pytest.param("12", "12\\text{ cm}", True, id="label-tex-text-unit"),
    pytest.param("12 cm", "12\\text{ cm}", True, id="both-units"),
    pytest.param("100", "100 m^2", True, id="label-square-unit"),
    pytest.param("100 \\text{ m}^{2}", "100", True, id="pred-tex-square-unit"),
    pytest.param("101", "100 m^2", False, id="label-square-unit-wrong"),
    pytest.param("30", "30^\\circ", True, id="label-degrees"),
    # currency
    pytest.param("5", "$5.00 per hour", True, id="label-rate-with-currency"),
    pytest.param("$5/hour", "5", True, id="pred-rate-with-currency"),
    pytest.param("5.5", "$5.00 per hour", False, id="label-rate-wrong"),
    pytest.param("$5.00", "5", True, id="cents-zero-equals-whole"),
    pytest.param("18", "\\$18", True, id="label-escaped-dollar"),
    pytest.param("1234.5", "$1,234.50", True, id="label-currency-thousands-cents"),
    pytest.param("\\$1,234.50", "1234.5", True, id="pred-currency-thousands-cents"),
    pytest.param("1235.50", "$1,234.50", False, id="currency-off-by-a-dollar"),
    pytest.param("$1,000,000", "1000000 dollars", True, id="million-dollars"),
    # percentages
    pytest.param("40", "40%", True, id="label-percent"),
    pytest.param("40\\%", "40", True, id="pred-tex-percent"),
    pytest.param("0.4", "40%", False, id="percent-is-not-a-fraction"),
    # thousands separators
    pytest.param("1250", "1,250 people", True, id="label-thousands-and-word"),
    pytest.param("1,250", "1,250 people", True, id="both-thousands"),
    pytest.param("1,251", "1,250 people", False, id="thousands-off-by-one"),
    # large integers: rel_tol 1e-4 would accept these off-by-ones
    pytest.param("109045", "109044", False, id="large-int-off-by-one-up"),
    pytest.param("109043", "109044", False, id="large-int-off-by-one-down"),
    pytest.param("109,044", "109044", True, id="large-int-with-separator"),
    pytest.param("109045.0", "109044", False, id="large-int-off-by-one-as-decimal"),
    pytest.param("109045 (eggs)", "109044 (eggs)", False, id="large-int-with-words-off-by-one"),
    pytest.param("12345678901234567891", "12345678901234567890", False,
                 id="20-digit-off-by-one-beyond-float-precision"),
    pytest.param("12,345,678,901,234,567,890", "12345678901234567890", True,
                 id="20-digit-with-separators"),
    pytest.param("5.0", "5", True, id="decimal-whole-equals-int"),
    pytest.param("5", "5.0", True, id="int-equals-decimal-whole-label"),
    # negatives
    pytest.param("-5", "-5 degrees", True, id="negative-with-unit"),
    pytest.param("5", "-5 degrees", False, id="negative-sign-matters"),
    pytest.param("−7", "-7", True, id="unicode-minus"),
    pytest.param("-1,250", "-1250", True, id="negative-thousands"),
    # decimals keep the relative tolerance
    pytest.param("1234.55", "1234.5", True, id="decimal-within-rel-tol"),
    pytest.param("0.33333", "1/3", True, id="rounded-fraction-within-rel-tol"),
    pytest.param("0.333", "1/3", False, id="rounded-fraction-outside-rel-tol"),
    pytest.param("2.50", "2.5", True, id="trailing-zero-decimal"),
    pytest.param("2.6", "2.5 km", False, id="decimal-with-unit-wrong"),
    pytest.param("1.5 \\times 10^{3}", "1500", True, id="scientific-keeps-tolerance"),
    # what must stay as it was
    pytest.param("3", "3x", False, id="coefficient-is-math-not-number"),
    pytest.param("5", "5 x", False, id="spaced-coefficient-is-math"),
    pytest.param("5x", "5 x", True, id="spaced-coefficient-symbolic"),
    pytest.param("10101", "00010101", False, id="bit-string-stays-string"),
    pytest.param("5", "V", False, id="roman-stays-string"),
    pytest.param("100", "C", False, id="roman-c-is-not-100"),
]


@pytest.mark.parametrize("predicted, label, expected", GRADER_CASES)
def test_dataset_label_formats(predicted, label, expected):
    assert is_correct(predicted, label) is expected


def test_boxed_answer_with_words_end_to_end():
    assert is_correct(extract_answer("</think>\\boxed{60 eggs}"), "60")
    assert is_correct(extract_answer("</think>\\boxed{60}"), "60 (eggs)")
    assert not is_correct(extract_answer("</think>\\boxed{109045}"), "109044")


def test_integer_tolerance_restores_rel_tol_for_whole_numbers():
    assert is_correct("109045", "109044", integer_tolerance=True)
    assert is_correct("109045.0", "109044 (eggs)", integer_tolerance=True)
    assert not is_correct("109055", "109044", integer_tolerance=True)  # 1e-4 is still the bar
    assert not is_correct("109045", "109044", integer_tolerance=False)
    # non-integers use rel_tol either way
    assert is_correct("100.005", "100", integer_tolerance=False)
    assert is_correct("1234.55", "1234.5", integer_tolerance=False)


def test_relative_tolerance():
    assert is_correct("100.5", "100", rel_tol=1e-2)
    assert not is_correct("100.5", "100", rel_tol=1e-4)
    assert is_correct("100.005", "100", rel_tol=1e-4)
    assert not is_correct("-100.5", "100", rel_tol=1e-2)


def test_zero_label_uses_absolute_tolerance():
    assert is_correct("0.00005", "0", rel_tol=1e-4)
    assert not is_correct("0.001", "0", rel_tol=1e-4)


@pytest.mark.parametrize("predicted, label, expected", [
    ("2^{1/2}", "\\sqrt{2}", True),
    ("(x+1)^2", "x^2+2x+1", True),
    ("3+2x", "2x+3", True),
    ("(1,2)", "(1, 2)", True),
    ("\\frac{\\pi}{2}", "\\pi/2", True),
    ("\\sqrt{3}", "\\sqrt{2}", False),
    ("x^2-1", "x^2+2x+1", False),
])
def test_latex_equivalence(predicted, label, expected):
    assert is_correct(predicted, label) is expected


def test_math_verify_from_worker_threads():
    """math-verify's own timeout uses signal.alarm (main thread only); ours must not."""
    cases = [("2^{1/2}", "\\sqrt{2}", True), ("\\sqrt{3}", "\\sqrt{2}", False)]
    results: dict[int, bool] = {}
    errors: list[BaseException] = []

    def check(i: int, predicted: str, label: str) -> None:
        try:
            results[i] = is_correct(predicted, label)
        except BaseException as error:  # pragma: no cover - the failure being tested
            errors.append(error)

    threads = [threading.Thread(target=check, args=(i, p, g)) for i, (p, g, _) in
               enumerate(cases)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert results == {i: expected for i, (_, _, expected) in enumerate(cases)}


def test_deadline_returns_sentinel_and_reraises():
    event = threading.Event()
    slow = run_with_deadline(lambda: event.wait(5), 0.05)
    event.set()
    assert slow is not True and slow is not False  # the timed-out sentinel
    assert run_with_deadline(lambda: 3, 1.0) == 3
    with pytest.raises(ZeroDivisionError):
        run_with_deadline(lambda: 1 / 0, 1.0)


def test_symbolic_timeout_counts_as_wrong(monkeypatch):
    from reasondistill.evaluate import answers

    event = threading.Event()
    monkeypatch.setattr(answers, "_math_verify", lambda p, g: event.wait(5))
    try:
        assert not is_correct("\\sqrt{2}", "2^{1/2}", timeout_s=0.05)
    finally:
        event.set()


def test_module_imports_without_math_verify_or_torch():
    code = ("import sys, reasondistill.evaluate.answers as a, reasondistill.evaluate.metrics;"
            "a.is_correct('1,000', '1000');"
            "print(sorted(m for m in ('torch', 'math_verify', 'sympy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
