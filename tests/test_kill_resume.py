"""Kill -9 and resume: training (mid-phase, during a checkpoint write, between the phases),
evaluation, a sweep and a teacher-cache job each end exactly where an uninterrupted run ends.

Each job is started as a subprocess through ``tests/killed.py``, which SIGKILLs it at a
deterministic point; the resume runs in this process through the CLI.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from test_train import make_config, write_arithmetic_rows
from typer.testing import CliRunner

from reasondistill.cli import app
from reasondistill.config import dump_config
from reasondistill.io import read_records

KILLED = Path(__file__).with_name("killed.py")
runner = CliRunner()


def run_killed(where: str, *command: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run ``reasondistill COMMAND`` in a subprocess that SIGKILLs itself at ``where``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    done = subprocess.run([sys.executable, str(KILLED), where, "--", *command], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == -9, f"not killed at {where}:\n{done.stdout}\n{done.stderr[-3000:]}"
    return done


def cli(*command: str) -> str:
    result = runner.invoke(app, list(command))
    assert result.exit_code == 0, result.output
    return result.output


def write_config(path: Path, cfg) -> Path:
    path.write_text(dump_config(cfg), encoding="utf-8")
    return path


def adapter_tensors(directory: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(directory / "adapter_model.safetensors"))


def assert_same_adapter(resumed: Path, reference: Path) -> None:
    expected, got = adapter_tensors(reference), adapter_tensors(resumed)
    assert got.keys() == expected.keys()
    worst = max((got[k] - expected[k]).abs().max().item() for k in expected)
    assert worst <= 1e-6, f"max abs difference {worst:.3g} from the uninterrupted run"
    assert any(v.abs().max() > 0 for v in expected.values())  # the adapter did move


def logged_steps(run_dir: Path) -> dict[str, list[int]]:
    steps: dict[str, list[int]] = {}
    for record in read_records(run_dir / "metrics.jsonl"):
        if "loss" in record:
            steps.setdefault(record["phase"], []).append(record["step"])
    return steps


# --------------------------------------------------------------------------- training

# 48 rows at effective batch 8 over 2 epochs: 8 steps of Train (a checkpoint every 2 steps),
# then 4 of Nudge on the hard ("mul") rows.
TRAIN_STEPS, NUDGE_STEPS = 8, 4


def training_config(root: Path, model_dir) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    cfg = make_config(root, model_dir, train={"num_train_epochs": 2})
    return write_config(root / "run.yaml", cfg)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_model_dir) -> Path:
    root = tmp_path_factory.mktemp("uninterrupted")
    cli("train", str(training_config(root, tiny_model_dir)))
    return root / "run"


@pytest.mark.parametrize("where, left_behind", [
    ("step:train@5:1", "checkpoint-4"),                  # mid-phase, 1 step past a checkpoint
    ("save:6:1", "checkpoint-6"),                        # in checkpoint-6's write
    ("adapter:adapter-train:1", "adapter-train"),        # Train done, Nudge not begun
    ("step:nudge@1:1", "adapter-train"),                 # mid-Nudge
], ids=["mid-phase", "during-checkpoint-write", "between-phases", "mid-nudge"])
def test_a_killed_training_resumes_to_the_uninterrupted_adapter(tmp_path, tiny_model_dir,
                                                                uninterrupted, where,
                                                                left_behind):
    config = training_config(tmp_path, tiny_model_dir)
    run_killed(where, "train", str(config), cwd=tmp_path)
    run = tmp_path / "run"
    assert not (run / "adapter").exists()
    assert list(run.rglob(left_behind))
    if where.startswith("save"):  # the half-written checkpoint: weights, but no trainer state
        half = run / "checkpoints" / "train" / "checkpoint-6"
        assert (half / "adapter_model.safetensors").is_file()
        assert not (half / "trainer_state.json").exists()

    cli("train", str(config), "--resume")

    assert_same_adapter(run / "adapter", uninterrupted / "adapter")
    assert_same_adapter(run / "adapter-train", uninterrupted / "adapter-train")
    assert logged_steps(run) == {"train": list(range(1, TRAIN_STEPS + 1)),
                                 "nudge": list(range(1, NUDGE_STEPS + 1))}
    assert logged_steps(run) == logged_steps(uninterrupted)


def test_resume_with_another_config_is_refused_naming_the_keys(tmp_path, tiny_model_dir):
    config = training_config(tmp_path, tiny_model_dir)
    run_killed("step:train@3:1", "train", str(config), cwd=tmp_path)
    changed = yaml.safe_load(config.read_text())
    changed["lora"]["r"] = 8
    changed["train"]["train"]["learning_rate"] = 5e-4
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(changed))
    result = runner.invoke(app, ["train", str(other), "--resume"])
    assert result.exit_code == 2
    assert "lora.r: 4 → 8" in result.output
    assert "train.train.learning_rate: None → 0.0005" in result.output
    assert "Traceback" not in result.output
    # eval settings are not the training's: changing them does not block a resume
    changed = yaml.safe_load(config.read_text())
    changed["eval"]["max_new_tokens"] = 7
    config.write_text(yaml.safe_dump(changed))
    cli("train", str(config), "--resume")
    assert (tmp_path / "run" / "adapter").is_dir()


# --------------------------------------------------------------------------- evaluation


def eval_setup(root: Path, model_dir) -> tuple[Path, Path]:
    root.mkdir(parents=True, exist_ok=True)
    cfg = make_config(root, model_dir)
    cfg.eval.max_new_tokens, cfg.eval.batch_size = 8, 4
    held_out = write_arithmetic_rows(root / "held_out.jsonl", n=12, seed=5)
    return write_config(root / "run.yaml", cfg), held_out


def eval_command(config: Path, held_out: Path, out: Path) -> list[str]:
    return ["eval", str(config), "--base", "--data", str(held_out), "--out", str(out)]


def test_a_killed_eval_resumes_without_duplicate_or_missing_predictions(tmp_path,
                                                                        tiny_model_dir):
    config, held_out = eval_setup(tmp_path, tiny_model_dir)
    cli(*eval_command(config, held_out, tmp_path / "straight"))
    killed = tmp_path / "killed"
    run_killed("append:-:2", *eval_command(config, held_out, killed), cwd=tmp_path)
    assert not (killed / "summary.json").exists()
    assert not (killed / "predictions.jsonl").read_bytes().endswith(b"\n")  # a torn line

    cli(*eval_command(config, held_out, killed))

    straight = read_records(tmp_path / "straight" / "predictions.jsonl")
    resumed = read_records(killed / "predictions.jsonl")
    assert sorted(r["id"] for r in resumed) == sorted(r["id"] for r in straight)
    assert len(resumed) == len(straight) == 12
    assert {r["id"]: r for r in resumed} == {r["id"]: r for r in straight}
    summary = json.loads((killed / "summary.json").read_text())
    assert summary == json.loads((tmp_path / "straight" / "summary.json").read_text())


# --------------------------------------------------------------------------- sweep


def test_a_killed_sweep_resumes_and_records_each_point_once(tmp_path, tiny_model_dir):
    rows = write_arithmetic_rows(tmp_path / "rows.jsonl", n=16)
    held_out = write_arithmetic_rows(tmp_path / "held_out.jsonl", n=6, seed=1)
    base = {"model": {"name": str(tiny_model_dir)},
            "data": {"source": "jsonl", "path": str(rows)}, "format": {"max_length": 128},
            "lora": {"r": 4, "alpha": 8},
            "train": {"phases": ["train"], "per_device_batch_size": 4, "logging_steps": 1,
                      "save_steps": 2, "bf16": False, "train": {"max_steps": 4}},
            "eval": {"data": {"source": "jsonl", "path": str(held_out)}, "max_new_tokens": 6,
                     "batch_size": 8}}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({"base": "base.yaml", "output_dir": str(tmp_path / "out"),
                                     "arms": {"trace": {}}, "grid": {"lora.r": [2, 4]},
                                     "seeds": [0]}, sort_keys=False))
    # the second point is killed at its step 3, after its checkpoint at step 2
    run_killed("step:train@3:2", "sweep", str(sweep), cwd=tmp_path)
    out = tmp_path / "out"
    first = out / "runs" / "trace__r=2__seed0" / "adapter" / "adapter_model.safetensors"
    stamp = first.stat().st_mtime_ns
    partial = json.loads((out / "results.json").read_text())
    assert [r["name"] for r in partial["results"]] == ["trace__r=2__seed0"]

    cli("sweep", str(sweep))

    results = json.loads((out / "results.json").read_text())["results"]
    assert sorted(r["name"] for r in results) == ["trace__r=2__seed0", "trace__r=4__seed0"]
    assert first.stat().st_mtime_ns == stamp  # the finished point was not redone
    assert logged_steps(out / "runs" / "trace__r=4__seed0") == {"train": [1, 2, 3, 4]}


# --------------------------------------------------------------------------- teacher cache


@pytest.mark.parametrize("shards_done", [0, 2], ids=["before-the-first-shard", "mid-job"])
def test_a_killed_cache_job_resumes_to_the_same_cache(tmp_path, tiny_model_dir, shards_done):
    from test_distill_cache import cache_config, make_adapter, stored

    adapter = make_adapter(tmp_path / "teacher", tiny_model_dir, 0)
    config = write_config(tmp_path / "run.yaml", cache_config(tmp_path, tiny_model_dir, adapter))
    command = ["cache", str(config), "--batch-size", "4", "--shard-rows", "8"]
    cli(*command, "--out", str(tmp_path / "straight"))
    killed = tmp_path / "killed"
    run_killed(f"shard:-:{shards_done + 1}", *command, "--out", str(killed), cwd=tmp_path)
    index = json.loads((killed / "index.json").read_text())
    assert len(index["shards"]) == shards_done and not index["complete"]

    cli(*command, "--out", str(killed))

    resumed, index = stored(killed)
    reference, _ = stored(tmp_path / "straight")
    assert index["complete"] and not list(killed.glob("*.tmp"))
    assert resumed.keys() == reference.keys()
    for row_id, tensor in reference.items():
        assert torch.equal(resumed[row_id], tensor), row_id
