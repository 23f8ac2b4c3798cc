"""From prediction rows to ``summary.json``: accuracy with intervals, parse and format
rates, calibration, error kinds and, for sampled runs, pass@k and majority vote.

A prediction row (one line of ``predictions.jsonl``) holds ``id, type, difficulty, label,
output, predicted, source, correct, n_generated_tokens, truncated, confidence`` and, when
several samples were drawn per problem, ``sample_index``. :func:`score_prediction` fills
``predicted / source / correct`` so the generator and this module agree on the rules.

With several samples per problem, the row-level numbers (accuracy, parse rate, ...) are
over all samples — their mean accuracy is the unbiased pass@1 — and a ``samples`` block adds
pass@k and majority-vote accuracy per problem.

Error kinds (wrong rows only), first match wins — the order puts the cause a user can fix
first, so each wrong row is counted once:

1. ``truncated``          generation hit ``max_new_tokens`` (whatever it printed)
2. ``no_answer``          stopped on its own, but no usable ``\\boxed{}``
3. ``format_broken``      an answer, but not where the contract puts it (no single
                          ``</think>`` followed by the box)
4. ``wrong_number_close`` label and answer are numbers within 50% (relative to the label;
                          within 0.5 when the label is 0)
5. ``wrong_number_far``   label and answer are numbers, further apart
6. ``wrong_string``       everything else (string labels, non-numeric answers)
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from reasondistill.evaluate.answers import (
    answer_kind,
    extract,
    follows_format,
    is_correct,
    normalize_whitespace,
    parse_number,
)

Z_95 = 1.959963984540054
ERROR_KINDS = ("truncated", "no_answer", "format_broken", "wrong_number_close",
               "wrong_number_far", "wrong_string")
CLOSE_REL = 0.5
MAX_EXAMPLES = 3
SNIPPET_CHARS = 200


def score_prediction(output: str, label: str, *, rel_tol: float = 1e-4,
                     integer_tolerance: bool = False) -> dict[str, Any]:
    """``{"predicted", "source", "correct"}`` for one generation, ready to merge into its row."""
    found = extract(output)
    return {
        "predicted": found.answer,
        "source": found.source,
        "correct": is_correct(found.answer, label, rel_tol=rel_tol,
                              integer_tolerance=integer_tolerance),
    }


# --------------------------------------------------------------------------- statistics


def wilson_interval(correct: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a proportion: honest at small n and at 0% / 100%, where the
    normal approximation collapses to a zero-width interval."""
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def accuracy_block(correct: int, n: int) -> dict[str, Any]:
    """``{"n", "correct", "accuracy", "ci": [low, high]}``; accuracy is None when n is 0."""
    low, high = wilson_interval(correct, n)
    return {"n": n, "correct": correct, "accuracy": correct / n if n else None,
            "ci": [low, high]}


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct: 1 - C(n-c, k) / C(n, k)
    (Chen et al., 2021), in the product form that does not overflow."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def calibration(confidences: Sequence[float], correct: Sequence[bool],
                n_bins: int = 10) -> dict[str, Any]:
    """Expected calibration error over ``n_bins`` equal-width bins, and the reliability table.

    Bin ``i`` holds confidences in ``[i/n_bins, (i+1)/n_bins)``; the last bin includes 1.0.
    ECE = Σ_b (n_b / N) · |accuracy_b − mean confidence_b|. Empty bins are listed with n = 0.
    """
    bins: list[list[tuple[float, bool]]] = [[] for _ in range(n_bins)]
    for conf, ok in zip(confidences, correct):
        conf = min(max(float(conf), 0.0), 1.0)
        bins[min(int(conf * n_bins), n_bins - 1)].append((conf, bool(ok)))
    total = sum(len(b) for b in bins)
    ece, table = 0.0, []
    for i, members in enumerate(bins):
        n = len(members)
        mean_conf = sum(c for c, _ in members) / n if n else None
        acc = sum(ok for _, ok in members) / n if n else None
        if n:
            ece += n / total * abs(acc - mean_conf)
        table.append({"low": i / n_bins, "high": (i + 1) / n_bins, "n": n,
                      "mean_confidence": mean_conf, "accuracy": acc})
    return {"n": total, "ece": ece if total else None, "bins": table}


# --------------------------------------------------------------------------- error kinds


def error_kind(row: dict[str, Any]) -> str:
    """The kind of a wrong row, by the precedence in the module docstring."""
    if row.get("truncated"):
        return "truncated"
    predicted = row.get("predicted")
    if predicted is None:
        return "no_answer"
    if not follows_format(row.get("output") or ""):
        return "format_broken"
    label = str(row["label"])
    if answer_kind(label) == "numeric":
        got, want = parse_number(predicted), parse_number(label)
        if got is not None and want is not None:
            scale = abs(want) if want != 0 else 1.0
            return "wrong_number_close" if abs(got - want) <= CLOSE_REL * scale \
                else "wrong_number_far"
    return "wrong_string"


def error_breakdown(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Counts of each error kind among wrong rows, with up to 3 examples each."""
    kinds: dict[str, dict[str, Any]] = {k: {"count": 0, "examples": []} for k in ERROR_KINDS}
    n_wrong = 0
    for row in rows:
        if row.get("correct"):
            continue
        n_wrong += 1
        entry = kinds[error_kind(row)]
        entry["count"] += 1
        if len(entry["examples"]) < MAX_EXAMPLES:
            entry["examples"].append({
                "id": row.get("id"), "label": row.get("label"),
                "predicted": row.get("predicted"),
                "snippet": (row.get("output") or "")[-SNIPPET_CHARS:],
            })
    return {"n_wrong": n_wrong, "precedence": list(ERROR_KINDS), "kinds": kinds}


# --------------------------------------------------------------------------- samples


def _vote_key(answer: str) -> str:
    """Answers that are the same number vote together (``1,000`` and ``1000``)."""
    value = parse_number(answer)
    return f"#{value:.12g}" if value is not None else normalize_whitespace(answer)


def sample_metrics(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """pass@k (k = 1, 2, 4, ... up to the fewest samples any problem has) and majority-vote
    accuracy per problem; None unless some problem has more than one sample.

    Majority vote counts only rows with an answer; a tie goes to the answer seen first in
    ``sample_index`` order. A problem with no answer at all counts as wrong.
    """
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[str(row.get("id"))].append(row)
    if not any(len(g) > 1 for g in groups.values()):
        return None
    fewest = min(len(g) for g in groups.values())
    ks = sorted({2**i for i in range(int(math.log2(fewest)) + 1)} | {fewest})
    pass_k = {str(k): sum(pass_at_k(len(g), sum(bool(r.get("correct")) for r in g), k)
                          for g in groups.values()) / len(groups) for k in ks}
    votes_correct = 0
    for group in groups.values():
        ordered = sorted(group, key=lambda r: r.get("sample_index") or 0)
        answered = [r for r in ordered if r.get("predicted") is not None]
        if not answered:
            continue
        tally = Counter(_vote_key(r["predicted"]) for r in answered)
        winner = tally.most_common(1)[0][0]
        votes_correct += bool(next(r for r in answered
                                   if _vote_key(r["predicted"]) == winner).get("correct"))
    return {
        "n_problems": len(groups),
        "samples_per_problem": {"min": fewest, "max": max(len(g) for g in groups.values())},
        "pass_at_k": pass_k,
        "majority_vote": accuracy_block(votes_correct, len(groups)),
    }


# --------------------------------------------------------------------------- summary


def _by(rows: Sequence[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    """Accuracy block plus parse rate for each value of ``key`` (type, difficulty)."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for row in rows:
        tally = counts[str(row.get(key) or "default")]
        tally[0] += bool(row.get("correct"))
        tally[1] += 1
        tally[2] += row.get("predicted") is not None
    return {name: {**accuracy_block(c, n), "parse_rate": _rate(parsed, n)}
            for name, (c, n, parsed) in sorted(counts.items())}


def _rate(count: int, n: int) -> float | None:
    return count / n if n else None


def summarize(rows: Sequence[dict[str, Any]], *, n_bins: int = 10) -> dict[str, Any]:
    """The ``summary.json`` content for a list of prediction rows (see the module docstring).

    Rates are None (not 0) when there are no rows, so an empty evaluation never reads as a
    measured 0%.
    """
    rows = list(rows)
    n = len(rows)
    correct = sum(bool(r.get("correct")) for r in rows)
    overall = accuracy_block(correct, n)
    scored = [r for r in rows if r.get("confidence") is not None]
    tokens = [r["n_generated_tokens"] for r in rows if r.get("n_generated_tokens") is not None]
    return {
        "n": n,
        "n_correct": correct,
        "accuracy": overall["accuracy"],
        "accuracy_ci": overall["ci"],
        "parse_rate": _rate(sum(r.get("predicted") is not None for r in rows), n),
        "format_compliance": _rate(sum(follows_format(r.get("output") or "") for r in rows), n),
        "truncation_rate": _rate(sum(bool(r.get("truncated")) for r in rows), n),
        "mean_generated_tokens": sum(tokens) / len(tokens) if tokens else None,
        "by_type": _by(rows, "type"),
        "by_difficulty": _by(rows, "difficulty"),
        "calibration": calibration([r["confidence"] for r in scored],
                                   [bool(r.get("correct")) for r in scored], n_bins)
        if scored else None,
        "errors": error_breakdown(rows),
        "samples": sample_metrics(rows),
    }
