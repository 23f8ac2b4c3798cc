"""The report renders from run directories built here: training curves, before → after
evaluations, an eval-only run, and the comparison between runs."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import pytest
from PIL import Image

from reasondistill.errors import DataError, ReasondistillError
from reasondistill.evaluate.metrics import score_prediction, summarize
from reasondistill.evaluate.report import load_run, write_report
from reasondistill.io import read_records

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _rows(answers: list[tuple[str, str, str, str]]) -> list[dict]:
    """(id, type, label, predicted) → scored prediction rows."""
    rows = []
    for i, (id_, type_, label, predicted) in enumerate(answers):
        output = f"reasoning\n</think>\n\\boxed{{{predicted}}}"
        rows.append({"id": id_, "type": type_, "difficulty": "hard" if i % 2 else "easy",
                     "label": label, "output": output, "n_generated_tokens": 20 + i,
                     "truncated": False, "confidence": 0.5 + 0.1 * i,
                     **score_prediction(output, label)})
    return rows


BEFORE = _rows([("1", "arith", "5", "4"), ("2", "arith", "7", "7"),
                ("3", "bits", "00010101", "10101"), ("4", "bits", "11110000", "0")])
AFTER = _rows([("1", "arith", "5", "5"), ("2", "arith", "7", "7"),
               ("3", "bits", "00010101", "00010101"), ("4", "bits", "11110000", "0")])


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def make_trained_run(root: Path) -> Path:
    run = root / "trained"
    records = [{"phase": "train", "step": s, "loss": 2.0 / s, "learning_rate": 1e-4 * (1 - s / 20),
                "grad_norm": 1.0, "tokens_per_s": 900.0} for s in range(5, 21, 5)]
    # Nudge restarts its step counter; the curves continue after Train
    records += [{"phase": "nudge", "step": s, "loss": 0.3, "learning_rate": 2e-5,
                 "grad_norm": 0.5, "tokens_per_s": 1000.0} for s in (5, 10)]
    _write_jsonl(run / "metrics.jsonl", records)
    (run / "config.yaml").write_text(
        "train:\n  phases: [train, nudge]\n  hard_types: [bits]\n", encoding="utf-8")
    (run / "train_summary.json").write_text(json.dumps({"train_minutes": 12.5}))
    # before: summary.json written by the evaluator; after: only predictions (summarised here)
    _write_jsonl(run / "eval" / "before" / "predictions.jsonl", BEFORE)
    (run / "eval" / "before" / "summary.json").write_text(json.dumps(summarize(BEFORE)))
    _write_jsonl(run / "eval" / "after" / "predictions.jsonl", AFTER)
    return run


def make_eval_only_run(root: Path) -> Path:
    run = root / "baseline"
    _write_jsonl(run / "eval" / "base" / "predictions.jsonl", BEFORE)
    return run


def _embedded_pngs(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in
            re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)]


def _assert_valid_png(data: bytes) -> None:
    assert data.startswith(PNG_MAGIC)
    image = Image.open(io.BytesIO(data))
    image.verify()
    assert image.size[0] > 200 and image.size[1] > 200


def test_single_run_report(tmp_path):
    run = make_trained_run(tmp_path)
    md_path, html_path = write_report([run], tmp_path / "out")
    assert md_path == tmp_path / "out" / "report.md" and html_path.name == "report.html"
    md, html = md_path.read_text(), html_path.read_text()

    pngs = sorted((tmp_path / "out" / "plots").glob("*.png"))
    names = {p.name for p in pngs}
    assert names == {"01-trained_training.png", "01-trained_by_type.png",
                     "01-trained_by_difficulty.png", "01-trained_reliability.png",
                     "01-trained_errors.png"}
    for png in pngs:
        _assert_valid_png(png.read_bytes())
        assert f"](plots/{png.name})" in md

    embedded = _embedded_pngs(html)
    assert len(embedded) == len(pngs)
    for data in embedded:
        _assert_valid_png(data)
    assert "plots/" not in html  # self-contained

    # before 1/4 correct, after 3/4: +50 pp; bits 0/2 → 1/2: +50 pp; arith 1/2 → 2/2
    assert "| before | 4 | 25.0% [" in md
    assert "| after | 4 | 75.0% [" in md
    assert "| Δ after − before |  | +50.0 pp |" in md
    assert re.search(r"\| bits \| 0\.0% \[[^]]*\] \(n=2\) \| 50\.0% \[[^]]*\] \(n=2\) \| "
                     r"\+50\.0 pp \|", md)
    assert "<table>" in html and "<th>Δ after − before</th>" in html
    assert "Training time: 12.5 minutes." in md
    assert "| train | 4 | 20 | 0.4000 | 0.1000 | 900 |" in md
    assert "| nudge | 2 | 10 | 0.3000 | 0.3000 | 1000 |" in md
    # error table: the wrong bit string shows with its label
    assert "wrong_string" in md and "got '10101', want '00010101'" in md
    assert "Comparison" not in md  # one run only


def test_comparison_of_two_runs(tmp_path):
    trained, baseline = make_trained_run(tmp_path), make_eval_only_run(tmp_path)
    md_path, html_path = write_report([trained, baseline], tmp_path / "out")
    md, html = md_path.read_text(), html_path.read_text()
    assert "## Comparison" in md and "<h2>Comparison</h2>" in html
    # hard types come from trained/config.yaml; after: bits 1/2
    assert re.search(r"\| trained \| after \| 4 \| 75\.0% \[[^]]*\] \| 100\.0% \| "
                     r"50\.0% \[[^]]*\] \(n=2\) \| 21\.5 \| 12\.5 \|", md)
    assert re.search(r"\| baseline \| base \| 4 \| 25\.0% \[[^]]*\] \| 100\.0% \| — \| "
                     r"21\.5 \| — \|", md)
    assert "No metrics.jsonl: an evaluation-only run." in md
    plot_dir = tmp_path / "out" / "plots"
    _assert_valid_png((plot_dir / "comparison_by_type.png").read_bytes())
    assert (plot_dir / "02-baseline_by_type.png").is_file()
    assert not (plot_dir / "02-baseline_training.png").exists()
    assert len(_embedded_pngs(html)) == len(list(plot_dir.glob("*.png")))


def test_same_directory_names_stay_apart(tmp_path):
    a = make_eval_only_run(tmp_path / "a")
    b = make_eval_only_run(tmp_path / "b")
    md = write_report([a, b], tmp_path / "out")[0].read_text()
    assert "## Run a/baseline" in md and "## Run b/baseline" in md


def test_missing_and_empty_run_dirs_are_clear_errors(tmp_path):
    with pytest.raises(ReasondistillError, match="run directory not found"):
        write_report([tmp_path / "nope"], tmp_path / "out")
    (tmp_path / "empty" / "eval" / "x").mkdir(parents=True)
    with pytest.raises(ReasondistillError, match="nothing to report"):
        write_report([tmp_path / "empty"], tmp_path / "out")
    with pytest.raises(ReasondistillError, match="no run directories"):
        write_report([], tmp_path / "out")
    assert not (tmp_path / "out" / "report.md").exists()


def test_jsonl_torn_last_line_skipped_bad_middle_line_named(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3, "lo', encoding="utf-8")
    assert read_records(path) == [{"step": 1}, {"step": 2}]
    path.write_text('{"step": 1}\nnot json\n{"step": 3}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"metrics\.jsonl, row 2"):
        read_records(path)


def test_load_run_pieces(tmp_path):
    run = load_run(make_trained_run(tmp_path))
    assert list(run.evals) == ["before", "after"]
    assert run.primary_eval.name == "after"
    assert run.hard_types == ["bits"]
    assert run.train_minutes == 12.5
    assert run.evals["after"].summary["accuracy"] == pytest.approx(0.75)
