"""summary.json content from hand-built prediction rows with known answers."""

from __future__ import annotations

import math

import pytest

from reasondistill.evaluate.metrics import (
    ERROR_KINDS,
    calibration,
    error_kind,
    pass_at_k,
    score_prediction,
    summarize,
    wilson_interval,
)

OK = "work\n</think>\n\\boxed{{{}}}"


def row(id, label, output, *, type="t", difficulty="easy", truncated=False, confidence=None,
        tokens=10, **extra):
    """A prediction row scored exactly as the generator scores it."""
    r = {"id": id, "type": type, "difficulty": difficulty, "label": label, "output": output,
         "n_generated_tokens": tokens, "truncated": truncated, "confidence": confidence}
    r.update(score_prediction(output, label))
    r.update(extra)
    return r


def test_score_prediction():
    assert score_prediction(OK.format("1,000"), "1000") == {
        "predicted": "1,000", "source": "final", "correct": True}
    assert score_prediction("\\boxed{3}", "4") == {
        "predicted": "3", "source": "fallback", "correct": False}
    assert score_prediction("no box", "4") == {"predicted": None, "source": "none",
                                               "correct": False}


def test_score_prediction_integer_tolerance():
    assert score_prediction(OK.format("109045"), "109044")["correct"] is False
    assert score_prediction(OK.format("109045"), "109044", integer_tolerance=True)["correct"]
    assert score_prediction(OK.format("60 eggs"), "60 (eggs)")["correct"]


def test_integer_tolerance_reaches_rows_and_settings():
    from types import SimpleNamespace

    from reasondistill.config import RunConfig
    from reasondistill.data.example import Example
    from reasondistill.evaluate.runner import eval_settings, prediction_row

    cfg = RunConfig()
    assert cfg.eval.integer_tolerance is False
    assert eval_settings(cfg, "m", None, "data")["integer_tolerance"] is False
    example = Example(id="1", prompt="p", answer="109044")
    generation = SimpleNamespace(text=OK.format("109045"), n_generated_tokens=3,
                                 truncated=False, confidence=None)
    assert prediction_row(example, generation, rel_tol=1e-4)["correct"] is False
    assert prediction_row(example, generation, rel_tol=1e-4, integer_tolerance=True)["correct"]


def test_wilson_interval_known_values():
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4)
    assert high == pytest.approx(0.9433, abs=1e-4)
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_pass_at_k():
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 2) == pytest.approx(1 - math.comb(3, 2) / math.comb(4, 2))  # 0.5
    assert pass_at_k(4, 0, 4) == 0.0
    assert pass_at_k(4, 3, 2) == 1.0
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 3)


def test_ece_by_hand():
    # bin [0.9, 1.0]: confidences 0.9, 0.95, 1.0 → mean 0.95, accuracy 2/3
    # bin [0.2, 0.3): confidence 0.25 → accuracy 0
    # ECE = 3/4·|2/3 − 0.95| + 1/4·|0 − 0.25| = 0.2125 + 0.0625 = 0.275
    result = calibration([0.9, 0.95, 1.0, 0.25], [True, True, False, False], n_bins=10)
    assert result["ece"] == pytest.approx(0.275)
    assert result["n"] == 4
    assert len(result["bins"]) == 10
    top = result["bins"][9]
    assert (top["low"], top["high"], top["n"]) == (0.9, 1.0, 3)
    assert top["mean_confidence"] == pytest.approx(0.95)
    assert top["accuracy"] == pytest.approx(2 / 3)
    assert result["bins"][2]["n"] == 1 and result["bins"][2]["accuracy"] == 0.0
    assert result["bins"][5] == {"low": 0.5, "high": 0.6, "n": 0, "mean_confidence": None,
                                 "accuracy": None}


def test_error_kind_precedence():
    # truncated beats everything, even a (wrong) answer
    assert error_kind(row("a", "5", "\\boxed{4} and then", truncated=True)) == "truncated"
    assert error_kind(row("b", "5", "no box at all")) == "no_answer"
    assert error_kind(row("c", "5", "\\boxed{4} </think> oops")) == "format_broken"
    assert error_kind(row("d", "100", OK.format("140"))) == "wrong_number_close"
    assert error_kind(row("e", "100", OK.format("151"))) == "wrong_number_far"
    assert error_kind(row("f", "100", OK.format("-60"))) == "wrong_number_far"
    assert error_kind(row("g", "XIV", OK.format("XV"))) == "wrong_string"
    assert error_kind(row("h", "00010101", OK.format("00010100"))) == "wrong_string"
    assert error_kind(row("i", "12", OK.format("twelve"))) == "wrong_string"
    assert error_kind(row("j", "0", OK.format("0.4"))) == "wrong_number_close"


def _eval_rows():
    return [
        row("1", "5", OK.format("5"), type="arith", difficulty="easy", confidence=0.9),
        row("2", "XIV", OK.format("XIV"), type="roman", difficulty="easy", confidence=0.8),
        row("3", "100", OK.format("140"), type="arith", difficulty="hard", confidence=0.7),
        row("4", "00010101", OK.format("10101"), type="bits", difficulty="hard",
            confidence=0.95),
        row("5", "7", "\\boxed{7} </think>", type="arith", difficulty="easy", confidence=None),
        row("6", "9", "thinking forever", type="bits", difficulty="hard", truncated=True,
            tokens=100),
        row("7", "3", "</think> I give up", type="roman", difficulty="hard"),
    ]


def test_summarize_counts_and_rates():
    s = summarize(_eval_rows())
    assert s["n"] == 7
    # correct: 1, 2, and 5 (right answer, broken format)
    assert s["n_correct"] == 3
    assert s["accuracy"] == pytest.approx(3 / 7)
    low, high = wilson_interval(3, 7)
    assert s["accuracy_ci"] == [pytest.approx(low), pytest.approx(high)]
    assert s["parse_rate"] == pytest.approx(5 / 7)
    assert s["format_compliance"] == pytest.approx(4 / 7)  # rows 1-4
    assert s["truncation_rate"] == pytest.approx(1 / 7)
    assert s["mean_generated_tokens"] == pytest.approx((6 * 10 + 100) / 7)
    assert s["samples"] is None


def test_summarize_groups():
    s = summarize(_eval_rows())
    assert set(s["by_type"]) == {"arith", "roman", "bits"}
    arith = s["by_type"]["arith"]
    assert (arith["n"], arith["correct"]) == (3, 2)
    assert arith["accuracy"] == pytest.approx(2 / 3)
    assert arith["ci"][0] < 2 / 3 < arith["ci"][1]
    assert s["by_type"]["bits"]["accuracy"] == 0.0
    assert s["by_type"]["bits"]["parse_rate"] == pytest.approx(1 / 2)  # row 6 has no box
    assert s["by_difficulty"]["easy"]["accuracy"] == 1.0
    assert s["by_difficulty"]["hard"]["correct"] == 0
    assert s["by_difficulty"]["hard"]["n"] == 4


def test_summarize_errors_and_calibration():
    s = summarize(_eval_rows())
    errors = s["errors"]
    assert errors["n_wrong"] == 4
    assert errors["precedence"] == list(ERROR_KINDS)
    counts = {k: v["count"] for k, v in errors["kinds"].items()}
    assert counts == {"truncated": 1, "no_answer": 1, "format_broken": 0,
                      "wrong_number_close": 1, "wrong_number_far": 0, "wrong_string": 1}
    assert errors["kinds"]["wrong_string"]["examples"][0]["id"] == "4"
    assert errors["kinds"]["wrong_number_close"]["examples"] == [
        {"id": "3", "label": "100", "predicted": "140",
         "snippet": "work\n</think>\n\\boxed{140}"}]
    # confidences: 0.9 ✓, 0.8 ✓, 0.7 ✗, 0.95 ✗ → bins 7, 8, 9 (0.9 and 0.95)
    cal = s["calibration"]
    assert cal["n"] == 4
    expected = (1 / 4) * abs(0.0 - 0.7) + (1 / 4) * abs(1.0 - 0.8) + (2 / 4) * abs(0.5 - 0.925)
    assert cal["ece"] == pytest.approx(expected)


def test_examples_capped_at_three():
    rows = [row(str(i), "5", "nothing", truncated=False) for i in range(5)]
    kinds = summarize(rows)["errors"]["kinds"]
    assert kinds["no_answer"]["count"] == 5
    assert [x["id"] for x in kinds["no_answer"]["examples"]] == ["0", "1", "2"]


def test_summarize_empty():
    s = summarize([])
    assert s["n"] == 0 and s["accuracy"] is None and s["parse_rate"] is None
    assert s["calibration"] is None and s["samples"] is None


def test_samples_pass_at_k_and_majority_vote():
    rows = []
    # p1: 1 of 4 correct; majority answer "3" (wrong)
    for i, ans in enumerate(["3", "3", "5", "4"]):
        rows.append(row("p1", "5", OK.format(ans), sample_index=i))
    # p2: 3 of 4 correct, written differently: "1,000" and "1000" vote together
    for i, ans in enumerate(["1,000", "1000", "999", "1000.0"]):
        rows.append(row("p2", "1000", OK.format(ans), sample_index=i))
    # p3: no answers at all
    for i in range(4):
        rows.append(row("p3", "2", "nothing", sample_index=i))
    s = summarize(rows)["samples"]
    assert s["n_problems"] == 3
    assert s["samples_per_problem"] == {"min": 4, "max": 4}
    assert set(s["pass_at_k"]) == {"1", "2", "4"}
    assert s["pass_at_k"]["1"] == pytest.approx((0.25 + 0.75 + 0) / 3)
    assert s["pass_at_k"]["2"] == pytest.approx((0.5 + 1.0 + 0) / 3)
    assert s["pass_at_k"]["4"] == pytest.approx((1.0 + 1.0 + 0) / 3)
    assert s["majority_vote"]["correct"] == 1
    assert s["majority_vote"]["accuracy"] == pytest.approx(1 / 3)


def test_majority_vote_tie_goes_to_first_sample():
    rows = [row("p", "5", OK.format(a), sample_index=i) for i, a in
            reversed(list(enumerate(["5", "6"])))]  # given out of order on purpose
    assert summarize(rows)["samples"]["majority_vote"]["correct"] == 1
