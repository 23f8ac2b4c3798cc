"""Answer checking: read the model's final ``\\boxed{}`` and compare it with the label.

This is what the grader does, so it is strict where the grader is strict and lenient only
where a human grader would be:

* **Extraction** takes the last balanced box *after* the last ``</think>`` (a box inside the
  reasoning is a draft, not the answer). Failing that, the last box anywhere is used and
  flagged ``"fallback"`` so format breakage is visible in the metrics.
* **Comparison** depends on the *label's* kind (:func:`answer_kind`): strings (Roman
  numerals, bit strings, cipher words, option letters) must match exactly after whitespace
  normalisation — ``00010101`` is not ``10101``; numbers match within a relative tolerance
  after removing currency, thousands separators, percent signs and unit words; LaTeX goes to
  ``math-verify``.

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
_SLASH_FRACTION = re.compile(rf"^({_NUMBER})\s*/\s*({_NUMBER})$")
_TEX_FRACTION = re.compile(r"^([+-]?)\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}$")
_TEX_FRACTION_SHORT = re.compile(r"^([+-]?)\\[dt]?frac(\d)(\d)$")  # \frac34
_SCIENTIFIC = re.compile(rf"^({_NUMBER})\s*(?:\\times|\\cdot|×|\*)\s*10\^\{{?([+-]?\d+)\}}?$")
# Unit words after a number: "12 cm", "5 apples", "3.5 km/h", "12cm", "30^\circ", "30°".
# Glued to the number it takes 2+ letters, so "3x" is not read as 3.
_UNIT_SUFFIX = re.compile(
    r"(?:\s*\^\{?\\circ\}?|\s*°"
    r"|\s+[A-Za-zµ][A-Za-zµ/.\-²³ ]*"
    r"|(?<=\d)[A-Za-zµ]{2,}[A-Za-zµ/.\-²³ ]*)$"
)
_TEX_TEXT = re.compile(r"\\(?:text|mathrm|textbf|mbox)\{([^{}]*)\}")


def _clean_numeric(text: str) -> str:
    """Strip what surrounds a number without changing its value: ``$``, ``\\$``, ``%``,
    math-mode delimiters, LaTeX spacing, ``\\text{}`` wrappers, a trailing full stop."""
    s = text.strip().replace("−", "-").replace("\\!", "").replace("\\,", "").replace("\\ ", " ")
    s = _TEX_TEXT.sub(lambda m: " " + m.group(1) + " ", s)
    s = s.replace("\\$", "").replace("$", "").replace("\\%", "").replace("%", "")
    s = s.replace("{,}", ",").replace("\\left", "").replace("\\right", "")
    s = s.strip()
    if s.endswith("."):
        s = s[:-1].rstrip()
    return s


def _plain_number(s: str) -> float | None:
    s = s.strip()
    thousands = _THOUSANDS.match(s)
    if thousands:
        s = thousands.group(1) + thousands.group(2).replace(",", "") + (thousands.group(3) or "")
    if _PLAIN.match(s):
        return float(s)
    return None


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


def parse_number(text: str) -> float | None:
    """The numeric value of an answer, or None when it is not (just) a number.

    Accepts ``-1,234.5``, ``$12``, ``45%`` (read as 45), ``3/4``, ``\\frac{3}{4}``,
    ``\\dfrac``, ``1.5 \\times 10^{3}``, ``12 cm``, ``30^\\circ`` and a trailing full stop.
    Commas count only as thousands separators (``1,2`` is not a number).
    """
    s = _clean_numeric(text)
    if not s:
        return None
    value = _value(s)
    if value is None:
        without_units = _UNIT_SUFFIX.sub("", s)
        if without_units != s:
            value = _value(_clean_numeric(without_units))
    if value is None or math.isnan(value) or math.isinf(value):
        return None
    return value


def numbers_close(predicted: float, label: float, rel_tol: float) -> bool:
    """Within ``rel_tol`` of the label (relative to the label; absolute when it is 0)."""
    if label == 0:
        return abs(predicted) <= rel_tol
    return abs(predicted - label) <= rel_tol * abs(label)


# --------------------------------------------------------------------------- kinds

_ROMAN = re.compile(r"^[IVXLCDM]+$")
_OPTION = re.compile(r"^\(?[A-E]\)?$")
_ZERO_LED = re.compile(r"^0\d+$")  # "007", "00010101": the digits themselves are the answer
_BIT_STRING = re.compile(r"^[01]{8,}$")
_LATEX_MARK = re.compile(r"[\\^_{}=]")
_MATH_CHARS = re.compile(r"^[\w\s+\-*/().,\[\]<>]+$")
_MATH_OPERATOR = re.compile(r"[+\-*/()\[\]<>]")
_COEFFICIENT = re.compile(r"\d[A-Za-z]\b")  # "3x"
_MATH_WORDS = {"sqrt", "pi", "sin", "cos", "tan", "log", "ln", "exp", "inf", "oo"}


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
               timeout_s: float = SYMBOLIC_TIMEOUT_S) -> bool:
    """Does ``predicted`` answer ``label``? The label's :func:`answer_kind` picks the rule.

    Identical text (after whitespace normalisation) is always correct. Strings need exactly
    that. Numbers are compared within ``rel_tol`` of the label; a prediction that is not a
    plain number (``x = 5``, ``\\sqrt{4}``) goes on to the symbolic check. LaTeX labels are
    compared with ``math-verify``; a check that exceeds ``timeout_s`` counts as wrong.
    """
    if predicted is None:
        return False
    pred, gold = normalize_whitespace(str(predicted)), normalize_whitespace(str(label))
    if pred == gold:
        return True
    kind = answer_kind(gold)
    if kind == "string":
        return False
    if kind == "numeric":
        value = parse_number(pred)
        if value is not None:
            return numbers_close(value, parse_number(gold), rel_tol)
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
