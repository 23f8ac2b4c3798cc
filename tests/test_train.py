"""The trace-distillation recipe on a tiny model: run directory, loss, resume, packing."""

import json
import random

import pytest
import torch
from transformers import TrainerCallback

from reasondistill.config import parse_config
from reasondistill.train.recipe import run_training


def write_arithmetic_rows(path, n=48, seed=0):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        kind = "mul" if i % 3 == 0 else "add"
        answer = a * b if kind == "mul" else a + b
        sign = "*" if kind == "mul" else "+"
        rows.append({"id": f"r{i}", "prompt": f"What is {a} {sign} {b}?",
                     "trace": f"{a} {sign} {b} = {answer}.", "answer": str(answer),
                     "type": kind})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def make_config(tmp_path, model_dir, **train):
    data = write_arithmetic_rows(tmp_path / "rows.jsonl")
    raw = {
        "output_dir": str(tmp_path / "run"),
        "model": {"name": str(model_dir)},
        "data": {"source": "jsonl", "path": str(data)},
        "format": {"max_length": 128},
        "lora": {"r": 4, "alpha": 8},
        "train": {"phases": ["train", "nudge"], "hard_types": ["mul"],
                  "per_device_batch_size": 4, "gradient_accumulation_steps": 2,
                  "logging_steps": 1, "save_steps": 2, "bf16": False, **train},
    }
    return parse_config(raw)


def test_two_phase_run_writes_a_complete_run_directory(tmp_path, tiny_model_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    cfg = make_config(tmp_path, tiny_model_dir)
    summary = run_training(cfg)
    run = tmp_path / "run"
    for name in ("config.yaml", "data_report.json", "metrics.jsonl", "train_summary.json",
                 "adapter/adapter_config.json", "adapter/adapter_model.safetensors",
                 "adapter-train/adapter_model.safetensors", "adapter-nudge/adapter_config.json"):
        assert (run / name).is_file(), name
    assert [p["phase"] for p in summary["phases"]] == ["train", "nudge"]
    assert all(p["completed"] and p["packed"] for p in summary["phases"])
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    assert {r["phase"] for r in steps} == {"train", "nudge"}
    for record in steps:
        assert record["tokens_per_s"] > 0 and record["grad_norm"] >= 0
    nudge_lrs = [r["learning_rate"] for r in steps if r["phase"] == "nudge"]
    assert max(nudge_lrs) <= 5e-6  # the nudge preset, warming up
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    adapted = PeftModel.from_pretrained(base, run / "adapter")
    assert any("lora_A" in name for name, _ in adapted.named_parameters())


def completion_loss(model, rows):
    """Mean cross-entropy over completion tokens, computed the plain way (full logits)."""
    total, count = 0.0, 0
    with torch.no_grad():
        for row in rows:
            ids = torch.tensor([row.input_ids])
            labels = torch.tensor([row.labels])
            logits = model(input_ids=ids).logits[0, :-1]
            targets = labels[0, 1:]
            mask = targets != -100
            total += torch.nn.functional.cross_entropy(logits[mask], targets[mask],
                                                       reduction="sum").item()
            count += int(mask.sum())
    return total / count


def test_training_lowers_the_completion_loss(tmp_path, tiny_model_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from reasondistill.prepare import prepare_data

    cfg = make_config(tmp_path, tiny_model_dir, phases=["train"],
                      train={"learning_rate": 2e-2, "num_train_epochs": 4,
                             "neftune_noise_alpha": 0})
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    rows = prepare_data(cfg.data, cfg.format, tok, progress=False).tokenized.rows
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    before = completion_loss(base, rows)
    run_training(cfg)
    after = completion_loss(PeftModel.from_pretrained(base, tmp_path / "run" / "adapter"), rows)
    assert after < before - 0.2, (before, after)


class StopAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True


def adapter_tensors(path):
    from safetensors.torch import load_file

    return load_file(str(path / "adapter_model.safetensors"))


def test_resume_reaches_the_same_adapter_as_an_uninterrupted_run(tmp_path, tiny_model_dir):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    straight = make_config(tmp_path / "a", tiny_model_dir, phases=["train"],
                           train={"num_train_epochs": 2})
    run_training(straight)

    interrupted = make_config(tmp_path / "b", tiny_model_dir, phases=["train"],
                              train={"num_train_epochs": 2})
    first = run_training(interrupted, callbacks=[StopAt(4)])
    assert first["interrupted"] and not (tmp_path / "b" / "run" / "adapter").exists()
    assert (tmp_path / "b" / "run" / "checkpoints" / "train" / "checkpoint-4").is_dir()
    run_training(interrupted, resume=True)

    expected = adapter_tensors(tmp_path / "a" / "run" / "adapter")
    resumed = adapter_tensors(tmp_path / "b" / "run" / "adapter")
    assert expected.keys() == resumed.keys()
    moved = 0
    for key, value in expected.items():
        torch.testing.assert_close(resumed[key], value, rtol=1e-4, atol=1e-6)
        moved += int(not torch.equal(value, torch.zeros_like(value)))
    assert moved > 0


def test_finished_run_is_not_overwritten_without_resume(tmp_path, tiny_model_dir):
    from reasondistill.errors import ReasondistillError

    cfg = make_config(tmp_path, tiny_model_dir, phases=["train"], train={"max_steps": 1})
    run_training(cfg)
    with pytest.raises(ReasondistillError, match="--resume"):
        run_training(cfg)



@pytest.mark.parametrize("largest_first", [True, False])
def test_the_run_trains_its_costliest_micro_batch_first(tmp_path, tiny_model_dir, monkeypatch,
                                                       largest_first):
    from transformers import AutoTokenizer

    from reasondistill.data.sampling import stratified_order
    from reasondistill.prepare import prepare_data
    from reasondistill.train import collate

    cfg = make_config(tmp_path, tiny_model_dir, phases=["train"], train={"max_steps": 1},
                      largest_batch_first=largest_first)
    rows = [{"id": f"r{i}", "prompt": f"Count to {i}.", "answer": str(i), "type": "count",
             "trace": "Counting: " + " ".join(str(k) for k in range(1 + (i * 7) % 23))}
            for i in range(24)]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    seen = []
    real_call = collate.PackedCollator.__call__

    def recording_call(self, features):
        seen.append(sum(len(f["input_ids"]) for f in features))
        return real_call(self, features)

    monkeypatch.setattr(collate.PackedCollator, "__call__", recording_call)
    assert run_training(cfg)["phases"][0]["packed"]

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    lengths = [len(r.input_ids)
               for r in prepare_data(cfg.data, cfg.format, tok, progress=False).tokenized.rows]
    assert len(lengths) == 24
    plain = stratified_order(["count"] * 24, 8, seed=cfg.train.seed)  # 4 per device x 2
    costs = [sum(lengths[i] for i in plain[start:start + 4]) for start in range(0, 24, 4)]
    assert (seen[0] == max(costs)) is largest_first, (seen[0], costs)


def test_tensorboard_events_land_in_the_run_directory(tmp_path, tiny_model_dir):
    cfg = make_config(tmp_path, tiny_model_dir, phases=["train"], hard_types=[])
    raw = cfg.model_dump(mode="json", exclude_unset=True)
    raw["tracking"] = {"report_to": ["tensorboard"]}
    run_training(parse_config(raw))
    events = list((tmp_path / "run" / "tensorboard" / "train").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    assert not list((tmp_path / "run" / "checkpoints").rglob("events.out.tfevents.*"))
