"""Latent distillation end to end on tiny models: self-teacher, answer anchor, another model."""

import json

import pytest
from test_train import make_config

from reasondistill.config import parse_config
from reasondistill.train.recipe import run_training


@pytest.fixture(scope="module")
def teacher_adapter(tmp_path_factory, tiny_model_dir):
    """A trace-trained adapter on the tiny model (the self-teacher)."""
    tmp = tmp_path_factory.mktemp("teacher")
    cfg = make_config(tmp, tiny_model_dir, phases=["train"], hard_types=[])
    run_training(cfg)
    return tmp / "run" / "adapter"


@pytest.fixture(scope="module")
def wider_teacher_dir(tmp_path_factory):
    """A tiny Llama with another hidden size (48) and depth (3), same tokenizer."""
    import transformers as tf
    from tiny import tiny_config, tiny_tokenizer

    tok = tiny_tokenizer()
    config = tiny_config("llama", tok)
    config.hidden_size, config.num_hidden_layers, config.intermediate_size = 48, 3, 96
    path = tmp_path_factory.mktemp("wide-teacher")
    tf.AutoModelForCausalLM.from_config(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def latent_config(tmp_path, model_dir, distill, **format_):
    base = make_config(tmp_path, model_dir, phases=["train"], hard_types=[])
    raw = base.model_dump(mode="json", exclude_unset=True)
    raw["distill"] = {"enabled": True, **distill}
    raw["format"].update(format_)
    raw["train"]["train"] = {"num_train_epochs": 2, "learning_rate": 3e-3}
    return parse_config(raw)


def logged(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if "loss" in json.loads(line)]


def test_self_teacher_same_sequence_logs_every_term(tmp_path, tiny_model_dir, teacher_adapter):
    cfg = latent_config(tmp_path, tiny_model_dir, {
        "teacher": {"kind": "self", "adapter": str(teacher_adapter)},
        "layers": {"last_k": 1}})
    run_training(cfg)
    records = logged(tmp_path / "run")
    assert records and all({"loss_ce", "loss_hidden", "share_ce", "share_hidden"} <= set(r)
                           for r in records)
    assert all(0 < r["share_hidden"] < 1 for r in records)
    # balanced at the first micro-batch: alpha (0.1) is the hidden term's share at the start
    factor = json.loads((tmp_path / "run" / "distill_balance.json").read_text())["hidden"]
    assert factor > 1 and all(r["scale_hidden"] == pytest.approx(factor, rel=1e-4)
                              for r in records)
    assert 0.03 < records[0]["share_hidden"] < 0.3
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert summary["balance"]["hidden"] == pytest.approx(factor)
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").is_file()
    assert not (tmp_path / "run" / "adapter" / "teacher").exists()  # the student's alone


def test_alpha_zero_is_plain_trace_training(tmp_path, tiny_model_dir, teacher_adapter):
    """α = 0 is a sensitivity sweep's baseline: no term reads the teacher, so training is the
    plain completion loss (a regression: the teacher's signal used to be built anyway and the
    step crashed looking for hidden states nobody asked for)."""
    import torch
    from safetensors.torch import load_file

    (tmp_path / "latent").mkdir()
    (tmp_path / "plain").mkdir()
    latent = latent_config(tmp_path / "latent", tiny_model_dir, {
        "teacher": {"kind": "self", "adapter": str(teacher_adapter)}, "alpha": 0.0,
        "layers": {"last_k": 1}})
    run_training(latent)
    records = logged(tmp_path / "latent" / "run")
    assert records and not any("loss_hidden" in r for r in records)
    plain = latent_config(tmp_path / "plain", tiny_model_dir, {"enabled": False})
    run_training(plain)
    ce = [r["loss"] for r in records]
    assert ce == pytest.approx([r["loss"] for r in logged(tmp_path / "plain" / "run")], rel=1e-5)
    latent_weights = load_file(tmp_path / "latent" / "run" / "adapter" / "adapter_model.safetensors")
    plain_weights = load_file(tmp_path / "plain" / "run" / "adapter" / "adapter_model.safetensors")
    assert latent_weights.keys() == plain_weights.keys()
    assert all(torch.allclose(latent_weights[k], plain_weights[k], atol=1e-6) for k in plain_weights)


def test_answer_anchor_with_an_answer_only_student(tmp_path, tiny_model_dir, teacher_adapter):
    cfg = latent_config(tmp_path, tiny_model_dir, {
        "teacher": {"kind": "self", "adapter": str(teacher_adapter)},
        "tokens": "answer_anchor", "layers": {"pairs": [[1, 1], [2, 2]]}}, answer_only=True)
    run_training(cfg)
    plan = json.loads((tmp_path / "run" / "distill_plan.json").read_text())
    assert plan["layer_map"] == [[1, 1], [2, 2]]
    assert plan["projection"] is None
    records = logged(tmp_path / "run")
    assert all(r["loss_hidden"] > 0 for r in records)


def test_a_teacher_of_another_size_trains_projections_and_lowers_both_terms(
        tmp_path, tiny_model_dir, wider_teacher_dir):
    cfg = latent_config(tmp_path, tiny_model_dir, {
        "teacher": {"kind": "model", "name": str(wider_teacher_dir)}, "alpha": 0.5,
        "layers": {"last_k": 1}})
    raw = cfg.model_dump(mode="json", exclude_unset=True)
    raw["train"]["train"] = {"num_train_epochs": 6, "learning_rate": 1e-2}
    cfg = parse_config(raw)
    run_training(cfg)
    run = tmp_path / "run"
    plan = json.loads((run / "distill_plan.json").read_text())
    assert plan["projection"] == [32, 48]
    assert plan["layer_map"] == [[1, 2]]  # proportional: round(1 * (3-1)/(2-1)) = 2
    assert (run / "adapter" / "projections.safetensors").is_file()
    records = logged(run)
    first, last = records[0], records[-1]
    assert last["loss_hidden"] < first["loss_hidden"]
    assert last["loss_ce"] < first["loss_ce"]


def test_a_model_teacher_attends_within_each_packed_sequence(wider_teacher_dir):
    """The teacher reads the student's packed row: each sequence's states must equal what it
    gives that sequence alone (it would attend across sequences with plain SDPA)."""
    import torch
    from transformers import AutoModelForCausalLM

    from reasondistill.distill.layer_map import LayerMap
    from reasondistill.distill.teacher import ModelTeacher
    from reasondistill.train.packing import packed_forward

    teacher = ModelTeacher(AutoModelForCausalLM.from_pretrained(wider_teacher_dir),
                           LayerMap(((1, 2),)))
    a, b = torch.arange(5, 12), torch.arange(20, 26)

    def batch(ids, positions):
        n = len(ids)
        return {"input_ids": ids[None], "position_ids": positions[None],
                "align_teacher_positions": torch.arange(n), "align_teacher_groups": torch.arange(n),
                "align_groups": torch.tensor(n)}

    with packed_forward([len(a), len(b)]):
        packed = teacher.signal(batch(torch.cat([a, b]), torch.cat([torch.arange(7),
                                                                     torch.arange(6)])))
    alone_b = teacher.signal(batch(b, torch.arange(6)))
    torch.testing.assert_close(packed.aligned[0][len(a):], alone_b.aligned[0], atol=1e-5, rtol=1e-4)
