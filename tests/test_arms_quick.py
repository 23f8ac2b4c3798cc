"""``benchmarks/arms.py --quick`` runs every arm end to end (tiny model, tiny sizes)."""

import importlib.util
import json
from pathlib import Path

import pytest

ARMS_SCRIPT = Path(__file__).parents[1] / "benchmarks" / "arms.py"


@pytest.mark.slow
def test_arms_quick_writes_the_table_json(tmp_path, tiny_model_dir):
    spec = importlib.util.spec_from_file_location("arms", ARMS_SCRIPT)
    arms = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(arms)
    out = tmp_path / "arms.json"
    arms.main(["--quick", "--model", str(tiny_model_dir), "--work", str(tmp_path / "work"),
               "--out", str(out), "--arms", "zero-shot", "answer-only", "trace-train-nudge"])
    result = json.loads(out.read_text())
    assert [r["arm"] for r in result["runs"]] == ["zero-shot", "answer-only", "trace-train-nudge"]
    assert set(result["pooled"]) == {"zero-shot", "answer-only", "trace-train-nudge"}
    for row in result["runs"]:
        assert row["n"] == 9 and 0.0 <= row["accuracy"] <= 1.0
        assert row["accuracy_ci"][0] <= row["accuracy"] <= row["accuracy_ci"][1]
    for arm, pooled in result["pooled"].items():
        run = next(r for r in result["runs"] if r["arm"] == arm)
        assert sum(b["n"] for b in pooled["by_type"].values()) == 9
        for name, block in pooled["by_type"].items():  # one seed: pooled = that seed's count
            assert block["n"] == run["by_type"][name]["n"]
            assert block["accuracy"] == run["by_type"][name]["accuracy"]
    nudge_run = Path(result["runs"][2]["run_dir"])
    phases = json.loads((nudge_run / "train_summary.json").read_text())["phases"]
    assert [p["phase"] for p in phases] == ["train", "nudge"]
    answer_only_config = (Path(result["runs"][1]["run_dir"]) / "config.yaml").read_text()
    assert "answer_only: true" in answer_only_config
    assert (tmp_path / "arms-report" / "report.html").is_file()
    (tmp_path / "arms-report" / "report.html").unlink()
    arms.main(["--quick", "--out", str(out), "--summarize"])  # no training, same tables
    assert json.loads(out.read_text()) == result
    assert (tmp_path / "arms-report" / "report.html").is_file()
