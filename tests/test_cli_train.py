"""``train --dry-run``, ``export`` and multi-process ``accelerate launch`` from the command line."""

import json
import os
import subprocess
import sys
import zipfile

import pytest
import torch
import yaml
from test_train import write_arithmetic_rows
from typer.testing import CliRunner

from reasondistill.cli import app

runner = CliRunner()


def write_config(tmp_path, model_dir, **train):
    config = {
        "output_dir": str(tmp_path / "run"),
        "model": {"name": str(model_dir)},
        "data": {"source": "jsonl", "path": str(write_arithmetic_rows(tmp_path / "rows.jsonl"))},
        "format": {"max_length": 128},
        "lora": {"r": 4, "alpha": 8},
        "train": {"phases": ["train"], "per_device_batch_size": 4,
                  "gradient_accumulation_steps": 2, "logging_steps": 1, "bf16": False, **train},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_dry_run_plans_without_training(tmp_path, tiny_model_dir):
    config = write_config(tmp_path, tiny_model_dir, phases=["train", "nudge"], hard_types=["mul"])
    result = runner.invoke(app, ["train", str(config), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "rows read 48, rows used 48" in result.output
    assert "LoRA coverage (r=4)" in result.output and "q_proj" in result.output
    # 48 rows: 16 mul (hard) + 32 add; the nudge reserves 16 fresh add rows.
    lines = {line.split("│")[1].strip(): line for line in result.output.splitlines()
             if line.count("│") > 5}
    assert "32" in lines["train"].split("│")[2] and "4" in lines["train"].split("│")[4]
    assert "32" in lines["nudge"].split("│")[2]
    assert not (tmp_path / "run").exists()


def test_unknown_config_key_is_exit_2_with_suggestion(tmp_path, tiny_model_dir):
    config = write_config(tmp_path, tiny_model_dir)
    result = runner.invoke(app, ["train", str(config), "--set", "lora.rank=8", "--dry-run"])
    assert result.exit_code == 2
    assert "unknown key 'lora.rank'" in result.output


def test_nudge_without_hard_types_is_exit_2(tmp_path, tiny_model_dir):
    config = write_config(tmp_path, tiny_model_dir, phases=["train", "nudge"])
    result = runner.invoke(app, ["train", str(config), "--dry-run"])
    assert result.exit_code == 2 and "hard_types" in result.output


def test_missing_hard_type_is_exit_2_naming_the_present_types(tmp_path, tiny_model_dir):
    config = write_config(tmp_path, tiny_model_dir, phases=["train", "nudge"],
                          hard_types=["division"])
    result = runner.invoke(app, ["train", str(config), "--dry-run"])
    assert result.exit_code == 2
    assert "division" in result.output and "add" in result.output


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_model_dir):
    tmp_path = tmp_path_factory.mktemp("export")
    config = write_config(tmp_path, tiny_model_dir, train={"max_steps": 2})
    result = runner.invoke(app, ["train", str(config)])
    assert result.exit_code == 0, result.output
    return tmp_path / "run"


def test_export_zip_is_a_kaggle_style_submission(trained_run, tmp_path, tiny_model_dir):
    out = tmp_path / "submission.zip"
    result = runner.invoke(app, ["export", str(trained_run), "--zip", str(out),
                                 "--base-model", "org/base-model", "--max-rank", "32"])
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(out) as archive:
        assert sorted(archive.namelist()) == ["adapter_config.json", "adapter_model.safetensors"]
        config = json.loads(archive.read("adapter_config.json"))
    assert config["base_model_name_or_path"] == "org/base-model"
    assert config["inference_mode"] is True and config["r"] == 4


def test_export_refuses_adapters_above_max_rank(trained_run, tmp_path):
    result = runner.invoke(app, ["export", str(trained_run), "--zip",
                                 str(tmp_path / "s.zip"), "--max-rank", "2"])
    assert result.exit_code == 2
    assert "rank 4 exceeds --max-rank 2" in result.output
    assert not (tmp_path / "s.zip").exists()


def test_export_merge_matches_the_adapted_model(trained_run, tmp_path, tiny_model_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = tmp_path / "merged"
    result = runner.invoke(app, ["export", str(trained_run), "--merge", str(out)])
    assert result.exit_code == 0, result.output
    merged = AutoModelForCausalLM.from_pretrained(out)
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                                        trained_run / "adapter")
    ids = torch.tensor([[5, 17, 42, 99, 7]])
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, adapted(ids).logits, rtol=1e-4,
                                   atol=1e-4)
    assert not any("lora" in name for name, _ in merged.named_parameters())


def test_export_of_a_folder_without_adapter_is_exit_2(tmp_path):
    result = runner.invoke(app, ["export", str(tmp_path), "--zip", str(tmp_path / "s.zip")])
    assert result.exit_code == 2 and "no adapter found" in result.output


@pytest.mark.slow
def test_accelerate_launch_two_cpu_processes(tmp_path, tiny_model_dir):
    """``accelerate launch -m reasondistill train`` with 2 gloo processes on CPU."""
    config = write_config(tmp_path, tiny_model_dir, per_device_batch_size=2,
                          gradient_accumulation_steps=2)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # accelerate's DDP launcher (torchrun) is --multi_gpu; without CUDA it uses gloo on CPU.
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
           "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "-m", "reasondistill", "train", str(config)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    # 48 rows / (2 per device × 2 accumulation × 2 processes) = 6 optimizer steps
    assert summary["effective_batch"] == 8
    assert summary["phases"][0]["steps"] == 6
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").is_file()
