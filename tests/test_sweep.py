"""``reasondistill sweep``: points, resumable runs, results as they finish, commands, report."""

import json

import pytest
import yaml
from test_train import write_arithmetic_rows

from reasondistill.errors import ConfigError
from reasondistill.evaluate.sweep_report import (
    build_sweep_report,
    pareto_front,
    pooled_groups,
    write_sweep_report,
)
from reasondistill.sweep import expand, load_sweep, run_sweep


@pytest.fixture
def base_config(tmp_path, tiny_model_dir):
    rows = write_arithmetic_rows(tmp_path / "rows.jsonl", n=16)
    held_out = write_arithmetic_rows(tmp_path / "held_out.jsonl", n=6, seed=1)
    raw = {
        "model": {"name": str(tiny_model_dir)},
        "data": {"source": "jsonl", "path": str(rows)},
        "format": {"max_length": 128},
        "lora": {"r": 4, "alpha": 8},
        "train": {"phases": ["train"], "per_device_batch_size": 4, "logging_steps": 1,
                  "save_steps": 50, "bf16": False, "train": {"max_steps": 2}},
        "eval": {"data": {"source": "jsonl", "path": str(held_out)}, "max_new_tokens": 6,
                 "batch_size": 8},
    }
    path = tmp_path / "base.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def write_sweep(tmp_path, **spec):
    path = tmp_path / "sweep.yaml"
    spec = {"base": "base.yaml", "output_dir": str(tmp_path / "sweep"), **spec}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))  # arms keep their order
    return path


SPEC = dict(arms={"zero-shot": {"train": False, "grid": False},
                  "answer-only": {"format.answer_only": True}, "trace": {}},
            grid={"lora.r": [2, 4]}, seeds=[0, 1])


def test_points_cross_arms_grid_and_seeds(tmp_path, base_config):
    spec, base = load_sweep(write_sweep(tmp_path, **SPEC))
    points = expand(spec, base, tmp_path / "sweep")
    names = [p.name for p in points]
    assert len(points) == 2 + 2 * 2 * 2  # zero-shot: seeds only; the others: grid x seeds
    assert "trace__r=4__seed1" in names and "zero-shot__seed0" in names
    point = points[names.index("answer-only__r=2__seed1")]
    assert point.config.lora.r == 2 and point.config.train.seed == 1
    assert point.config.format.answer_only and point.trains
    assert point.config.output_dir == str(tmp_path / "sweep" / "runs" / point.name)
    assert not points[0].trains


def test_seed_order_and_seed_in_values(tmp_path, base_config):
    spec, base = load_sweep(write_sweep(
        tmp_path, order="seed", seeds=[3, 4],
        arms={"teacher": {}, "student": {"distill.teacher.adapter": "runs/t__seed{seed}/adapter",
                                         "distill.teacher.kind": "self"}}))
    points = expand(spec, base, tmp_path / "sweep")
    assert [p.name for p in points] == ["teacher__seed3", "student__seed3", "teacher__seed4",
                                        "student__seed4"]
    assert points[3].config.distill.teacher.adapter == "runs/t__seed4/adapter"
    spec, base = load_sweep(write_sweep(tmp_path, seeds=[3, 4], arms={
        "zero-shot": {"train": False, "seeds": [0]}, "trace": {}}))
    assert [p.name for p in expand(spec, base, tmp_path / "s")] == [
        "zero-shot__seed0", "trace__seed3", "trace__seed4"]


@pytest.mark.parametrize(("spec", "message"), [
    ({"grid": {"lora.rank": [2]}}, "sweep point run__rank=2__seed0"),
    ({"grid": {"lora.r": []}}, "grid.lora.r"),
    ({"arms": {"x": {"train": "no"}}}, "arms.x.train"),
    ({"arms": {"x": {"seeds": 3}}}, "arms.x.seeds"),
    ({"sedes": [1]}, "sedes"),
])
def test_bad_sweep_files_name_the_culprit(tmp_path, base_config, spec, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        spec_, base = load_sweep(write_sweep(tmp_path, **spec))
        expand(spec_, base, tmp_path / "sweep")


def test_a_sweep_runs_resumes_prints_and_collects(tmp_path, base_config, capsys):
    from rich.console import Console

    path = write_sweep(tmp_path, arms={"zero-shot": {"train": False, "grid": False},
                                       "trace": {}}, grid={"lora.r": [2, 4]}, seeds=[0])
    console = Console(quiet=True)
    results = run_sweep(path, console=console)
    sweep = tmp_path / "sweep"
    assert results["points"] == 3 and results["finished"] == 3
    stored = json.loads((sweep / "results.json").read_text())
    by_name = {r["name"]: r for r in stored["results"]}
    assert set(by_name) == {"zero-shot__seed0", "trace__r=2__seed0", "trace__r=4__seed0"}
    assert by_name["zero-shot__seed0"]["train_minutes"] == 0
    small, large = by_name["trace__r=2__seed0"], by_name["trace__r=4__seed0"]
    assert 0 < small["trainable_parameters"] < large["trainable_parameters"]
    assert small["train_rows"] == 16 and small["n"] == 6
    assert (sweep / "report" / "report.md").is_file()

    adapter = sweep / "runs" / "trace__r=2__seed0" / "adapter" / "adapter_model.safetensors"
    stamp = adapter.stat().st_mtime_ns
    run_sweep(path, console=console)  # everything done: nothing retrained
    assert adapter.stat().st_mtime_ns == stamp

    capsys.readouterr()
    run_sweep(path, console=console, print_commands=True)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("reasondistill eval ") and lines[0].endswith(" --base")
    assert lines[1].startswith("reasondistill train ") and "--resume && reasondistill eval" in lines[1]
    config_path = lines[1].split()[2]
    assert yaml.safe_load(open(config_path))["lora"]["r"] == 2

    (sweep / "results.json").unlink()
    collected = run_sweep(path, console=console, collect=True)
    assert {r["name"] for r in collected["results"]} == set(by_name)


def synthetic_record(arm, seed, rows, correct, n=50, minutes=1.0, params=1e6, **grid):
    return {"name": f"{arm}-{rows}-{seed}", "arm": arm, "seed": seed, "trains": arm != "base",
            "params": {"data.puzzles.n": rows, **grid}, "n": n, "correct": correct,
            "accuracy": correct / n, "accuracy_ci": [0, 1], "parse_rate": 0.9,
            "mean_generated_tokens": 50, "calibration_ece": 0.1,
            "by_type": {"a": {"n": n // 2, "correct": correct // 2},
                        "b": {"n": n - n // 2, "correct": correct - correct // 2}},
            "errors": {"wrong_string": n - correct}, "train_rows": rows,
            "train_tokens": 100 * rows, "train_minutes": minutes * rows / 100,
            "trainable_parameters": params}


def test_groups_pool_seeds_with_a_wilson_interval():
    records = [synthetic_record("trace", 0, 100, 10), synthetic_record("trace", 1, 100, 30)]
    (group,) = pooled_groups(records)
    assert group["n"] == 100 and group["correct"] == 40 and group["accuracy"] == 0.4
    assert group["seed_accuracy"] == [0.2, 0.6]
    assert group["ci"][0] < 0.4 < group["ci"][1]
    assert group["by_type"] == {"a": 20 / 50, "b": 20 / 50}


def test_the_pareto_front_keeps_only_undominated_groups():
    groups = [{"label": x, "accuracy": acc, "cost": cost} for x, acc, cost in
              [("cheap-bad", 0.1, 1), ("mid", 0.5, 2), ("dominated", 0.4, 3), ("best", 0.8, 5)]]
    assert [g["label"] for g in pareto_front(groups, "cost")] == ["cheap-bad", "mid", "best"]


def test_the_report_of_twenty_groups_has_every_figure(tmp_path):
    records = [synthetic_record(arm, seed, rows, correct=min(50, rows // 10 + seed),
                                **{"lora.r": 8})
               for arm in ("trace", "answer-only") for rows in (50, 100, 200, 400, 800)
               for seed in (0, 1)]
    records += [synthetic_record("trace", 0, 100, 20, **{"lora.r": r}) for r in (4, 16, 32)]
    records += [dict(synthetic_record("latent", s, 100, 25, **{"lora.r": 8}),
                     similarity={"after": {"pairs": [{"student": 25, "teacher": 25,
                                                      "cka": 0.9 - 0.1 * s}]}})
                for s in (0, 1)]
    results = {"sweep": {"output_dir": "x", "seeds": [0, 1], "grid": {"data.puzzles.n": [],
                                                                      "lora.r": []}},
               "points": len(records), "finished": len(records), "results": records}
    blocks = build_sweep_report(results)
    figures = {b.filename for b in blocks if hasattr(b, "png")}
    assert figures == {"learning-curves.png", "efficiency.png",
                       "sensitivity-data-puzzles-n.png", "sensitivity-lora-r.png",
                       "per-type.png", "errors.png", "layer-similarity.png"}
    table = next(b for b in blocks if hasattr(b, "rows"))
    assert len(table.rows) == len(pooled_groups(records)) >= 14
    md_path, html_path = write_sweep_report(results, tmp_path)
    assert "sensitivity-lora-r.png" in md_path.read_text()
    assert (tmp_path / "plots" / "efficiency.png").stat().st_size > 1000
