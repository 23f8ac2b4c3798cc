"""Answer checking: read the model's final ``\\boxed{}`` and compare it with the label.

This is what the grader does, so it is strict where the grader is strict and lenient only
where a human grader would be:

* **Extraction** takes the last balanced box *after* the last ``</think>`` (a box inside the
  reasoning is a draft, not the answer). Failing that, the last box anywhere is used and
  flagged ``"fallback"`` so format breakage is visible in the metrics.
* **Comparison** depends on the *label's* kind (:func:`answer_kind`): strings (Roman
  numerals, bit strings, cipher words, option letters) must match exactly after whitespace
  normalisation — ``00010101`` is not ``10101``; LaTeX goes to ``math-verify``; numbers are
  compared by value after removing currency, thousands separators, percent signs and the
  unit or words after them, on either side. Word-problem datasets (GSM8K, SVAMP, ASDiv,
  MAWPS, AQuA) write labels such as ``60 (eggs)``, ``$5.00 per hour`` or ``100 m^2``, and a
  model boxes ``60 eggs``; a grader reads all of those as the number.
* **Whole numbers compare exactly** (``109045`` is not ``109044``, as in lm-eval's exact
  match and ``math-verify``): the relative tolerance is there for rounded decimals, and at
  1e-4 it would accept an off-by-one on any integer above 10,000. "Whole" means written as a
  plain decimal with an integral value (``5``, ``1,250``, ``$5.00``; so ``5.0`` equals ``5``),
  compared as Python integers so 20-digit labels stay exact. Fractions, scientific notation
  and other decimals keep the tolerance, and ``integer_tolerance=True`` restores it for
  whole numbers too.

``math-verify`` enforces its timeouts with ``signal.alarm``, which only works on the main
thread. We switch those off and run every symbolic check on a short-lived daemon thread with
our own deadline, so :func:`is_correct` works from any thread (a generation worker, a
thread pool) and a pathological expression costs at most ``timeout_s``, never a hang.
The module imports only the standard library; ``math_verify`` (slow to import) is loaded on
the first symbolic comparison.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from reasondistill.boxed import iter_boxed, unescape_braces

THINK_CLOSE = "</think>"
SYMBOLIC_TIMEOUT_S = 5.0

Source = Literal["final", "fallback", "none"]
Kind = Literal["string", "numeric", "latex"]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- extraction


@dataclass(frozen=True)
class Extraction:
    """The extracted answer and where it came from.

    ``source`` is ``"final"`` for a box after the last ``</think>`` (the format contract),
    ``"fallback"`` for a box elsewhere (no ``</think>``, or only boxes in the reasoning), and
    ``"none"`` when the text holds no usable box (``answer`` is then None).
    """

    answer: str | None
    source: Source


def _last_box(text: str) -> str | None:
    """Content of the last balanced, non-empty box in ``text``, unwrapped and unescaped.

    An empty ``\\boxed{}`` is skipped: it is the instruction echoed back, not an answer.
    ``\\boxed{\\boxed{5}}`` reads as ``5``.
    """
    answer = None
    for _, _, content in iter_boxed(text):
        content = _unwrap_box(content.strip())
        if content:
            answer = content
    return None if answer is None else unescape_braces(answer).strip()


def _unwrap_box(content: str) -> str:
    while content.startswith("\\boxed{"):
        spans = list(iter_boxed(content))
        if len(spans) != 1 or spans[0][:2] != (0, len(content)):
            break
        content = spans[0][2].strip()
    return content


def extract(text: str) -> Extraction:
    """Find the answer in a generation (see :class:`Extraction` for the rules)."""
    cut = text.rfind(THINK_CLOSE)
    if cut >= 0:
        answer = _last_box(text[cut + len(THINK_CLOSE) :])
        if answer is not None:
            return Extraction(answer, "final")
    answer = _last_box(text)
    if answer is not None:
        return Extraction(answer, "fallback")
    return Extraction(None, "none")


def extract_answer(text: str) -> str | None:
    """The answer :func:`extract` finds, or None."""
    return extract(text).answer


def follows_format(text: str) -> bool:
    """True when a generation keeps the contract: exactly one ``</think>`` and the boxed
    answer after it (what the student was trained to emit)."""
    return text.count(THINK_CLOSE) == 1 and extract(text).source == "final"


# --------------------------------------------------------------------------- numbers

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_THOUSANDS = re.compile(r"^([+-]?)(\d{1,3}(?:,\d{3})+)(\.\d*)?$")
_PLAIN = re.compile(rf"^{_NUMBER}$")
_WHOLE = re.compile(r"^([+-]?\d+)(?:\.0*)?$")  # "5", "-1250", "5.00": no exponent, no fraction
_SLASH_FRACTION = re.compile(rf"^({_NUMBER})\s*/\s*({_NUMBER})$")
_TEX_FRACTION = re.compile(r"^([+-]?)\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}$")
_TEX_FRACTION_SHORT = re.compile(r"^([+-]?)\\[dt]?frac(\d)(\d)$")  # \frac34
_SCIENTIFIC = re.compile(rf"^({_NUMBER})\s*(?:\\times|\\cdot|×|\*)\s*10\^\{{?([+-]?\d+)\}}?$")

# What may follow a number without changing it: one or more unit pieces, read from the end.
# A word ("cm", "km/h", "m²") holds no space, so a run of words splits one way only and the
# repeated group cannot backtrack exponentially. Glued to the number a word or a word in
# parentheses takes 2+ letters, so "3x" and "3(x)" stay math; a power ("m^2") only follows a
# length unit, so "5 x^2" stays math too.
_WORD = r"[A-Za-zµ][A-Za-zµ/.\-²³]*"
_GLUED_WORD = r"[A-Za-zµ]{2,}[A-Za-zµ/.\-²³]*"
_POWER_UNIT = r"(?:[kcdm]?m|in|ft|yd|mi|units?|[A-Za-z]+\s*/\s*s)\s*\^\s*\{?[23]\}?"
_UNIT_SUFFIX = re.compile(
    r"(?:\s*(?:\^\{?\\circ\}?|°)[CFK]?"  # 30^\circ, 30°, 30°C
    rf"|\s+(?:{_POWER_UNIT}|{_WORD}|\(\s*{_WORD}(?:\s+{_WORD})*\s*\))"  # 5 hours, 60 (eggs)
    rf"|(?<=\d)(?:{_POWER_UNIT}|{_GLUED_WORD}|\(\s*{_GLUED_WORD}(?:\s+{_WORD})*\s*\))"  # 12cm
    rf"|(?<=\d)\s*/\s*{_GLUED_WORD}"  # $5.00/hour
    r")+$"
)
_MAX_UNIT_TEXT = 200
_TEX_TEXT = re.compile(r"\\(?:text|mathrm|textbf|mbox)\{([^{}]*)\}")
_MATH_WORDS = {"sqrt", "pi", "sin", "cos", "tan", "log", "ln", "exp", "inf", "oo"}
_VARIABLES = {"x", "y", "z", "n", "i"}  # "5 x" is 5x, not 5 of a unit called x


def _clean_numeric(text: str) -> str:
    """Strip what surrounds a number without changing its value: currency signs, ``%``,
    math-mode delimiters, LaTeX spacing, ``\\text{}`` wrappers, a trailing full stop."""
    s = text.strip().replace("−", "-").replace("\\!", "").replace("\\,", "").replace("\\ ", " ")
    s = _TEX_TEXT.sub(lambda m: " " + m.group(1) + " ", s)
    s = s.replace("\\$", "").replace("$", "").replace("\\%", "").replace("%", "")
    s = re.sub("[€£¥₹]", "", s)
    s = s.replace("{,}", ",").replace("\\left", "").replace("\\right", "")
    s = s.strip()
    if s.endswith("."):
        s = s[:-1].rstrip()
    return s


def _strip_units(s: str) -> str:
    """``s`` without the unit words after its number (``60 (eggs)`` → ``60``), or unchanged
    when there are none or they name a variable or a function (``5 x``, ``4 pi``). Text
    longer than ``_MAX_UNIT_TEXT`` is not a number with units (and the end-anchored search
    is quadratic in the length)."""
    m = _UNIT_SUFFIX.search(s) if len(s) <= _MAX_UNIT_TEXT else None
    if m is None:
        return s
    words = re.findall(r"[A-Za-z]+", m.group(0))
    if any(word in _VARIABLES or word.lower() in _MATH_WORDS for word in words):
        return s
    return s[: m.start()]


def _plain(s: str) -> str | None:
    """``s`` in plain decimal notation (thousands separators dropped), or None."""
    s = s.strip()
    thousands = _THOUSANDS.match(s)
    if thousands:
        s = thousands.group(1) + thousands.group(2).replace(",", "") + (thousands.group(3) or "")
    return s if _PLAIN.match(s) else None


def _plain_number(s: str) -> float | None:
    plain = _plain(s)
    return None if plain is None else float(plain)


def _value(s: str) -> float | None:
    """A number, a fraction (``3/4``, ``\\frac{3}{4}``) or scientific notation, else None."""
    number = _plain_number(s)
    if number is not None:
        return number
    for pattern in (_TEX_FRACTION, _TEX_FRACTION_SHORT):
        m = pattern.match(s)
        if m:
            num, den = _plain_number(m.group(2)), _plain_number(m.group(3))
            if num is None or not den:
                return None
            return (-1.0 if m.group(1) == "-" else 1.0) * num / den
    m = _SLASH_FRACTION.match(s)
    if m:
        num, den = float(m.group(1)), float(m.group(2))
        return num / den if den else None
    m = _SCIENTIFIC.match(s)
    if m:
        return float(m.group(1)) * 10.0 ** int(m.group(2))
    return None


@dataclass(frozen=True)
class _Number:
    value: float
    whole: int | None  # the exact value when written as a whole number ("1,250", "$5.00")


def _read_number(text: str) -> _Number | None:
    s = _clean_numeric(text)
    if not s:
        return None
    value = _value(s)
    if value is None:
        without_units = _strip_units(s)
        if without_units != s:
            s = _clean_numeric(without_units)
            value = _value(s)
    if value is None or math.isnan(value) or math.isinf(value):
        return None
    plain = _plain(s)
    whole = _WHOLE.match(plain) if plain is not None else None
    return _Number(value, int(whole.group(1)) if whole else None)


def parse_number(text: str) -> float | None:
    """The numeric value of an answer, or None when it is not (just) a number.

    Accepts ``-1,234.5``, ``$12``, ``45%`` (read as 45), ``3/4``, ``\\frac{3}{4}``,
    ``\\dfrac``, ``1.5 \\times 10^{3}``, ``12 cm``, ``60 (eggs)``, ``$5.00 per hour``,
    ``100 m^2``, ``30^\\circ`` and a trailing full stop. Commas count only as thousands
    separators (``1,2`` is not a number).
    """
    number = _read_number(text)
    return None if number is None else number.value


def numbers_close(predicted: float, label: float, rel_tol: float) -> bool:
    """Within ``rel_tol`` of the label (relative to the label; absolute when it is 0)."""
    if label == 0:
        return abs(predicted) <= rel_tol
    return abs(predicted - label) <= rel_tol * abs(label)


def _numbers_match(predicted: _Number, label: _Number, rel_tol: float,
                   integer_tolerance: bool) -> bool:
    """Whole numbers exactly (unless ``integer_tolerance``), anything else within rel_tol."""
    if not integer_tolerance and predicted.whole is not None and label.whole is not None:
        return predicted.whole == label.whole
    return numbers_close(predicted.value, label.value, rel_tol)


# --------------------------------------------------------------------------- kinds

_ROMAN = re.compile(r"^[IVXLCDM]+$")
_OPTION = re.compile(r"^\(?[A-E]\)?$")
_ZERO_LED = re.compile(r"^0\d+$")  # "007", "00010101": the digits themselves are the answer
_BIT_STRING = re.compile(r"^[01]{8,}$")
_LATEX_MARK = re.compile(r"[\\^_{}=]")
_MATH_CHARS = re.compile(r"^[\w\s+\-*/().,\[\]<>]+$")
_MATH_OPERATOR = re.compile(r"[+\-*/()\[\]<>]")
_COEFFICIENT = re.compile(r"\d\s*[A-Za-z]")  # "3x", "5 x", "4 pi"


def normalize_whitespace(text: str) -> str:
    return " ".join(text.split())


def answer_kind(label: str) -> Kind:
    """How a label is compared, decided from the label alone.

    ``"string"``: Roman numerals, option letters A–E, zero-led digit strings and bit strings
    of 8+ characters (their digits, not their value, are the answer), and any text that is
    neither a number nor math. ``"numeric"``: anything :func:`parse_number` reads.
    ``"latex"``: LaTeX (``\\sqrt{2}``, ``x^2``) or a plain expression (``2x+3``, ``3x``,
    ``(1, 2)``).
    """
    s = normalize_whitespace(label)
    if _ROMAN.match(s) or _OPTION.match(s) or _ZERO_LED.match(s) or _BIT_STRING.match(s):
        return "string"
    if parse_number(s) is not None:
        return "numeric"
    if _LATEX_MARK.search(s):
        return "latex"
    if _MATH_CHARS.match(s) and (_MATH_OPERATOR.search(s) or _COEFFICIENT.search(s)):
        words = re.findall(r"[A-Za-z]{2,}", s)
        if all(word.lower() in _MATH_WORDS for word in words):
            return "latex"
    return "string"


# --------------------------------------------------------------------------- comparison


def is_correct(predicted: str | None, label: str, *, rel_tol: float = 1e-4,
               integer_tolerance: bool = False,
               timeout_s: float = SYMBOLIC_TIMEOUT_S) -> bool:
    """Does ``predicted`` answer ``label``? The label's :func:`answer_kind` picks the rule.

    Identical text (after whitespace normalisation) is always correct, and so is the label's
    text with its braces unescaped, as :func:`extract` unescapes the prediction's: a student
    that boxes the label ``A \\cup \\{3\\}`` exactly is read back as ``A \\cup {3}``. Strings
    need exactly that. Numbers (units and words after them ignored on both sides) are equal
    when both are whole numbers with the same value, or else within ``rel_tol`` of the label;
    ``integer_tolerance=True`` applies ``rel_tol`` to whole numbers too. A prediction that is
    not a number (``x = 5``, ``\\sqrt{4}``) goes on to the symbolic check. LaTeX labels are
    compared with ``math-verify``; a check that exceeds ``timeout_s`` counts as wrong.
    """
    if predicted is None:
        return False
    pred, gold = normalize_whitespace(str(predicted)), normalize_whitespace(str(label))
    if pred == gold or pred == unescape_braces(gold):
        return True
    kind = answer_kind(gold)
    if kind == "string":
        return False
    if kind == "numeric":
        number = _read_number(pred)
        if number is not None:
            return _numbers_match(number, _read_number(gold), rel_tol, integer_tolerance)
    elif "".join(pred.split()) == "".join(gold.split()):
        return True
    return symbolic_equal(pred, gold, timeout_s=timeout_s)


def symbolic_equal(predicted: str, label: str, *, timeout_s: float = SYMBOLIC_TIMEOUT_S) -> bool:
    """``math-verify``'s verdict on two LaTeX answers, bounded by ``timeout_s``; safe off the
    main thread. Unparseable input or a timeout is False (with a log line for the timeout)."""
    verdict = run_with_deadline(lambda: _math_verify(predicted, label), timeout_s)
    if verdict is _TIMED_OUT:
        logger.warning("math-verify took longer than %.1fs on %r vs %r; counted as wrong",
                       timeout_s, predicted[:80], label[:80])
        return False
    return bool(verdict)


def _math_verify(predicted: str, label: str) -> bool:
    parse, verify = _load_math_verify()
    gold = parse(_as_math(label), parsing_timeout=None)
    target = parse(_as_math(predicted), parsing_timeout=None)
    if not gold or not target:
        return False
    return bool(verify(gold, target, timeout_seconds=None))


def _as_math(answer: str) -> str:
    return "$" + answer.strip().strip("$") + "$"


_TIMED_OUT = object()


def run_with_deadline(fn: Callable[[], Any], timeout_s: float) -> Any:
    """Run ``fn`` on a daemon thread and wait at most ``timeout_s`` seconds.

    Returns fn's result, or the ``_TIMED_OUT`` sentinel (fn keeps running in the background;
    a daemon thread never blocks interpreter exit, unlike a ``concurrent.futures`` pool, and
    a stuck check never delays the checks queued after it). fn's exceptions are re-raised.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as error:  # math-verify's TimeoutException is a BaseException
            box["error"] = error

    worker = threading.Thread(target=target, name="reasondistill-answer-check", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        return _TIMED_OUT
    if "error" in box:
        raise box["error"]
    return box["value"]


class _DropTimeoutDisabledWarning(logging.Filter):
    """math-verify warns once that its timeout is off; ours (:func:`run_with_deadline`) is on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


_math_verify_fns: tuple[Callable, Callable] | None = None
_math_verify_lock = threading.Lock()


def _load_math_verify() -> tuple[Callable, Callable]:
    global _math_verify_fns
    with _math_verify_lock:
        if _math_verify_fns is None:
            for name in ("math_verify.parser", "math_verify.grader"):
                logging.getLogger(name).addFilter(_DropTimeoutDisabledWarning())
            from math_verify import parse, verify

            _math_verify_fns = (parse, verify)
    return _math_verify_fns
