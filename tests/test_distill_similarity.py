"""Layer similarity student ↔ teacher: the measures, a tiny latent run's records, the report's
heat map and the dry run's plan."""

import json
from types import SimpleNamespace

import pytest
import torch
import yaml
from test_distill_e2e import latent_config, wider_teacher_dir  # noqa: F401 (fixture)
from test_train import write_arithmetic_rows

from reasondistill.config import parse_config
from reasondistill.distill.similarity import PairStats, linear_cka

# --------------------------------------------------------------------------- the measures


@pytest.mark.parametrize("n, d", [(40, 16), (12, 32)])  # feature space, then token space
def test_cka_is_one_for_identical_and_for_rotated_and_scaled(n, d):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=generator)
    rotation, _ = torch.linalg.qr(torch.randn(d, d, generator=generator))
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-9)
    assert linear_cka(x, 3.7 * x @ rotation + 5.0) == pytest.approx(1.0, abs=1e-9)
    other = torch.randn(n, d, generator=generator)
    assert linear_cka(x, other) < 0.95
    assert linear_cka(x, torch.ones(n, d)) is None  # a constant side has no geometry


def test_cka_reads_the_same_in_token_and_feature_space():
    generator = torch.Generator().manual_seed(1)
    x, y = torch.randn(20, 6, generator=generator), torch.randn(20, 9, generator=generator)
    wide = linear_cka(x, y)  # 20 tokens > 9 features: feature space
    x_pad = torch.cat([x, torch.zeros(20, 30)], 1)  # same geometry, 36 features: token space
    assert linear_cka(x_pad, y) == pytest.approx(wide, abs=1e-9)


def test_student_equal_to_teacher_is_cosine_one_nmse_zero():
    generator = torch.Generator().manual_seed(2)
    stats = PairStats()
    for _ in range(3):  # streamed over batches
        t = torch.randn(7, 8, generator=generator)
        stats.add(t.clone(), t, torch.tensor([0, 3, 6]))
    result = stats.result()
    assert result["cosine"] == pytest.approx(1.0, abs=1e-6)
    assert result["nmse"] == pytest.approx(0.0, abs=1e-9)
    assert result["cka"] == pytest.approx(1.0, abs=1e-6)
    assert (result["tokens"], result["cka_tokens"]) == (21, 9)


def test_nmse_of_the_teachers_mean_is_one():
    t = torch.randn(50, 4, generator=torch.Generator().manual_seed(3))
    stats = PairStats()
    stats.add(t.mean(0, keepdim=True).expand_as(t), t)
    assert stats.result()["nmse"] == pytest.approx(1.0, abs=1e-6)


# --------------------------------------------------------------------------- held-out rows


def test_a_single_training_file_falls_back_to_its_last_rows(tmp_path, tiny_model_dir,
                                                            wider_teacher_dir):  # noqa: F811
    from reasondistill.distill.positions import same_sequence
    from reasondistill.distill.similarity import similarity_rows
    from reasondistill.distill.teacher import OnlineTeacher
    from reasondistill.models import load_tokenizer
    from reasondistill.prepare import prepare_data

    cfg = latent_config(tmp_path, tiny_model_dir, {
        "teacher": {"kind": "model", "name": str(wider_teacher_dir)}, "similarity_rows": 5})
    tokenizer = load_tokenizer(str(tiny_model_dir))
    prepared = prepare_data(cfg.data, cfg.format, tokenizer, progress=False)
    rows = prepared.tokenized.rows
    distillation = SimpleNamespace(teacher=OnlineTeacher(None, None), kept=list(range(len(rows))),
                                   alignments=[same_sequence(r) for r in rows], teacher_rows=None,
                                   teacher_tokenizer=tokenizer)
    chosen = similarity_rows(cfg, prepared, tokenizer, distillation)
    assert chosen.source == "training (no held-out split)"
    assert [r["row"] for r in chosen.rows] == list(range(len(rows) - 5, len(rows)))

    held_out = write_arithmetic_rows(tmp_path / "held-out.jsonl")
    raw = cfg.model_dump(mode="json", exclude_unset=True)
    raw["eval"] = {"data": {"source": "jsonl", "path": str(held_out)}}
    chosen = similarity_rows(parse_config(raw), prepared, tokenizer, distillation)
    assert chosen.source.startswith("held-out") and len(chosen.rows) == 5
    assert all(chosen.alignments[r["row"]].n_groups > 0 for r in chosen.rows)

    raw["distill"]["similarity_rows"] = 0
    assert similarity_rows(parse_config(raw), prepared, tokenizer, distillation) is None


@pytest.mark.parametrize("tokens", ["same_sequence", "answer_anchor"])
def test_a_teacher_equal_to_the_student_is_identical_packed_or_padded(tmp_path, tiny_model_dir,
                                                                      tokens):
    """The whole pass (rows → collators → both forwards → pooling): a self-teacher whose
    adapter is the student's own untrained one reads exactly the student's states when it
    reads the same tokens; with answer_anchor it reads the full trace (another context), so
    only packed and padded must agree."""
    from reasondistill.distill.setup import prepare_distillation
    from reasondistill.distill.similarity import layer_similarity, similarity_rows
    from reasondistill.lora import apply_lora
    from reasondistill.models import load_model
    from reasondistill.prepare import prepare_data

    cfg = latent_config(tmp_path, tiny_model_dir, {"teacher": {"kind": "self",
                                                                "adapter": str(tmp_path)}})
    model, tokenizer = load_model(cfg.model, dtype="float32")
    model, _ = apply_lora(model, cfg.lora)
    model.save_pretrained(str(tmp_path / "same"))  # B = 0: the student as it starts
    raw = cfg.model_dump(mode="json", exclude_unset=True)
    raw["distill"].update({"teacher": {"kind": "self", "adapter": str(tmp_path / "same")},
                           "tokens": tokens, "layers": {"pairs": [[0, 0], [1, 1], [2, 2]]},
                           "similarity_rows": 6})
    raw["format"]["answer_only"] = tokens == "answer_anchor"
    cfg = parse_config(raw)
    prepared = prepare_data(cfg.data, cfg.format, tokenizer, progress=False)
    distillation = prepare_distillation(cfg.distill, cfg.format, model, tokenizer, prepared)
    held_out = similarity_rows(cfg, prepared, tokenizer, distillation)
    model.train()
    results = [layer_similarity(model, distillation, held_out, packed=packed,
                                pad_token_id=tokenizer.pad_token_id, batch_size=4)
               for packed in (True, False)]
    assert model.training  # the mode it came in with
    for packed, padded in zip(results[0]["pairs"], results[1]["pairs"]):
        for key in ("cosine", "nmse", "cka"):
            assert packed[key] == pytest.approx(padded[key], abs=1e-4)
    assert results[0]["aligned_tokens"] == results[1]["aligned_tokens"] > 0
    if tokens == "answer_anchor":
        return
    for result in results:
        for pair in result["pairs"]:
            assert pair["cosine"] == pytest.approx(1.0, abs=1e-5)
            assert pair["nmse"] == pytest.approx(0.0, abs=1e-8)
            assert pair["cka"] == pytest.approx(1.0, abs=1e-5)


# --------------------------------------------------------------------------- a tiny run


def test_a_latent_run_records_similarity_and_the_report_draws_it(tmp_path, tiny_model_dir,
                                                                 wider_teacher_dir):  # noqa: F811
    from reasondistill.evaluate.report import write_report
    from reasondistill.train.recipe import run_training

    cfg = latent_config(tmp_path, tiny_model_dir, {
        "teacher": {"kind": "model", "name": str(wider_teacher_dir)}, "alpha": 0.5,
        "layers": {"pairs": [[1, 2], [2, 3]]}, "similarity_rows": 6})
    raw = cfg.model_dump(mode="json", exclude_unset=True)
    raw["train"]["train"] = {"max_steps": 2, "learning_rate": 1e-2}
    raw["eval"] = {"data": {"source": "jsonl",
                            "path": str(write_arithmetic_rows(tmp_path / "held-out.jsonl"))}}
    summary = run_training(parse_config(raw))
    run = tmp_path / "run"

    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    measured = [r for r in records if "similarity" in r]
    assert [r["similarity"] for r in measured] == ["before", "after"]
    assert records[0]["similarity"] == "before" and records[-1]["similarity"] == "after"
    for record in measured:
        assert record["phase"] == "train" and record["n_rows"] == 6
        assert record["rows"].startswith("held-out")
        assert [(p["student"], p["teacher"]) for p in record["pairs"]] == [(1, 2), (2, 3)]
        for pair in record["pairs"]:
            assert -1 <= pair["cosine"] <= 1 and pair["nmse"] >= 0 and 0 <= pair["cka"] <= 1
            assert pair["tokens"] == record["aligned_tokens"] > 0
    stored = json.loads((run / "train_summary.json").read_text())["similarity"]
    assert stored == summary["similarity"]
    assert stored["before"]["pairs"] == measured[0]["pairs"]
    assert stored["after"]["pairs"] == measured[1]["pairs"]
    # the projections and the adapter trained: the student moved
    assert stored["after"]["pairs"] != stored["before"]["pairs"]

    md, html = write_report([run], tmp_path / "report")
    text = md.read_text()
    assert "### Layer similarity (student ↔ teacher)" in text
    assert "| 1→2 |" in text and "| 2→3 |" in text and "Δ CKA" in text
    assert "![" in text and "_similarity.png" in text
    heat_map = next((tmp_path / "report" / "plots").glob("*_similarity.png"))
    assert heat_map.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the training table counts logging steps only
    logged = sum(1 for r in records if "similarity" not in r)
    assert f"| train | {logged} |" in text

    md, _ = write_report([run, run], tmp_path / "two")  # two runs: a compact comparison row
    assert "cosine before → after" in md.read_text()


def test_a_report_without_similarity_draws_no_heat_map(tmp_path):
    from reasondistill.evaluate.report import write_report

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(json.dumps({"phase": "train", "step": 1, "loss": 1.0})
                                       + "\n")
    md, _ = write_report([run], tmp_path / "report")
    assert "Layer similarity" not in md.read_text()
    assert not list((tmp_path / "report" / "plots").glob("*_similarity.png"))


# --------------------------------------------------------------------------- the dry run


def test_dry_run_prints_the_layer_map_projections_and_sizes(tmp_path, tiny_model_dir,
                                                            wider_teacher_dir):  # noqa: F811
    from typer.testing import CliRunner

    from reasondistill.cli import app

    cfg = latent_config(tmp_path, tiny_model_dir, {
        "teacher": {"kind": "model", "name": str(wider_teacher_dir)}, "layers": {"last_k": 1}})
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json", exclude_unset=True)))
    result = CliRunner().invoke(app, ["train", str(path), "--dry-run"],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert "latent distillation (dry run)" in out
    assert "1→2" in out  # proportional: round(1 * (3-1)/(2-1)) = 2
    assert "32→48 per pair × 1, 1,536 parameters" in out
    assert "aligned tokens per row" in out
    assert "1 layer pairs × 48 (teacher hidden) × 2 bytes" in out  # the cache estimate
    assert "the last 32 training rows before and after training (no held-out split)" in out
    assert not (tmp_path / "run").exists()


def test_a_resumed_run_keeps_its_before_measurement(tmp_path):
    from reasondistill.distill.similarity import record_similarity

    before = {"rows": "training (no held-out split)", "n_rows": 2, "aligned_tokens": 9,
              "pairs": [{"student": 1, "teacher": 1, "cosine": 0.5, "nmse": 0.7, "cka": 0.9}]}
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(json.dumps({"phase": "train", "similarity": "before",
                                                   **before}) + "\n")
    cfg = SimpleNamespace(output_dir=str(run))
    assert record_similarity(cfg, None, None, None, None, None, when="before", phase="train",
                             packed=True, reuse=True) == before
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1  # nothing appended
