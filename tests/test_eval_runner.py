"""The eval stage end to end on a tiny saved model: rows, summary, resume, the CLI command."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from test_generate import MAX_NEW, SCRIPT, memorized_model, noisy_model
from tiny import tiny_tokenizer
from typer.testing import CliRunner

from reasondistill.cli import app
from reasondistill.config import RunConfig, parse_config
from reasondistill.data.example import Example
from reasondistill.errors import DataError, ReasondistillError
from reasondistill.evaluate.generate import TransformersBackend
from reasondistill.evaluate.runner import resolve_adapter, run_eval, select_examples
from reasondistill.tokenize import render_prompt

LABELS = ["5", "11", "3"]  # right (answer box), right (fallback box), never answered
ROW_FIELDS = {"id", "type", "difficulty", "label", "prompt", "output", "predicted", "source",
              "correct", "n_generated_tokens", "truncated", "confidence"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    model, tok, _ = memorized_model()
    path = tmp_path_factory.mktemp("tiny-model")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture
def data_file(tmp_path) -> Path:
    """The SCRIPT prompts with labels; ids come from the file name and row: problems-<i>."""
    path = tmp_path / "problems.jsonl"
    rows = [{"prompt": prompt, "answer": label, "type": t}
            for i, (prompt, label, t) in enumerate(zip(SCRIPT, LABELS, ["add", "bits", "add"]))]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _cfg(model_dir: Path, **eval_overrides) -> RunConfig:
    return parse_config({"model": {"name": str(model_dir), "dtype": "float32"},
                         "eval": {"max_new_tokens": MAX_NEW, "batch_size": 2, **eval_overrides}})


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _count_generate_calls(monkeypatch) -> list[int]:
    """Record the batch size of every ``generate`` call the backend makes."""
    calls: list[int] = []
    original = TransformersBackend.generate_ids

    def counting(self, batch):
        calls.append(len(batch))
        return original(self, batch)

    monkeypatch.setattr(TransformersBackend, "generate_ids", counting)
    return calls


def test_run_eval_writes_scored_rows_and_summary(model_dir, data_file, tmp_path):
    out = tmp_path / "eval"
    summary = run_eval(_cfg(model_dir), data=data_file, out_dir=out, progress=False)
    rows = {r["id"]: r for r in _read(out / "predictions.jsonl")}
    assert set(rows) == {"problems-0", "problems-1", "problems-2"}
    assert all(set(r) == ROW_FIELDS for r in rows.values())
    answered, fallback, endless = (rows[f"problems-{i}"] for i in range(3))
    assert answered["output"].endswith("</think>\n\\boxed{5}")
    assert (answered["predicted"], answered["source"], answered["correct"]) == ("5", "final", True)
    assert (fallback["predicted"], fallback["source"]) == ("11", "fallback")
    assert fallback["correct"]
    assert endless["truncated"] and endless["predicted"] is None and not endless["correct"]
    assert endless["n_generated_tokens"] == MAX_NEW
    assert 0 < answered["confidence"] <= 1 and endless["confidence"] is None
    assert answered["prompt"] == "What is 2+3?" and answered["type"] == "add"
    on_disk = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert on_disk == summary
    assert summary["n"] == 3 and summary["n_correct"] == 2
    assert summary["parse_rate"] == pytest.approx(2 / 3)
    assert summary["by_type"]["add"]["n"] == 2 and summary["by_type"]["bits"]["accuracy"] == 1.0
    assert json.loads((out / "settings.json").read_text())["model"] == str(model_dir)


def test_resume_generates_only_missing_problems(model_dir, data_file, tmp_path, monkeypatch):
    calls = _count_generate_calls(monkeypatch)
    out = tmp_path / "eval"
    run_eval(_cfg(model_dir), data=data_file, out_dir=out, limit=2, progress=False)
    assert sum(calls) == 2
    first = _read(out / "predictions.jsonl")
    summary = run_eval(_cfg(model_dir), data=data_file, out_dir=out, progress=False)
    assert sum(calls) == 3  # only p2 was generated the second time
    rows = _read(out / "predictions.jsonl")
    assert rows[:2] == first and [r["id"] for r in rows].count("problems-2") == 1
    assert summary["n"] == 3
    run_eval(_cfg(model_dir), data=data_file, out_dir=out, progress=False)
    assert sum(calls) == 3  # everything done: no generation at all


def test_resume_drops_a_torn_last_line(model_dir, data_file, tmp_path, monkeypatch):
    out = tmp_path / "eval"
    run_eval(_cfg(model_dir), data=data_file, out_dir=out, progress=False)
    path = out / "predictions.jsonl"
    last_id = _read(path)[-1]["id"]
    path.write_bytes(path.read_bytes()[:-25])  # killed mid-write
    calls = _count_generate_calls(monkeypatch)
    summary = run_eval(_cfg(model_dir), data=data_file, out_dir=out, progress=False)
    assert calls == [1]
    rows = _read(path)  # every line parses again
    assert sorted(Counter(r["id"] for r in rows).items()) == [
        ("problems-0", 1), ("problems-1", 1), ("problems-2", 1)]
    assert rows[-1]["id"] == last_id and summary["n"] == 3


def test_resume_with_other_settings_is_refused(model_dir, data_file, tmp_path):
    out = tmp_path / "eval"
    run_eval(_cfg(model_dir), data=data_file, out_dir=out, limit=1, progress=False)
    with pytest.raises(ReasondistillError, match="max_new_tokens"):
        run_eval(_cfg(model_dir, max_new_tokens=MAX_NEW + 1), data=data_file, out_dir=out,
                 progress=False)


def test_samples_per_problem_rows(model_dir, data_file, tmp_path):
    out = tmp_path / "eval"
    summary = run_eval(_cfg(model_dir, temperature=1.0, num_samples=2, batch_size=4),
                       data=data_file, out_dir=out, limit=2, progress=False)
    rows = _read(out / "predictions.jsonl")
    assert sorted((r["id"], r["sample_index"]) for r in rows) == [
        ("problems-0", 0), ("problems-0", 1), ("problems-1", 0), ("problems-1", 1)]
    assert summary["samples"]["n_problems"] == 2


def test_adapter_is_applied(model_dir, data_file, tmp_path):
    """A LoRA adapter with non-zero weights changes the generations, and the merged model the
    eval loads generates exactly what the unmerged PEFT model does."""
    from peft import LoraConfig, PeftModel, get_peft_model

    tok = tiny_tokenizer()
    base = noisy_model("llama", tok)
    base_dir, adapter_dir = tmp_path / "base", tmp_path / "adapter"
    base.save_pretrained(base_dir)
    tok.save_pretrained(base_dir)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                      init_lora_weights=False)
    get_peft_model(noisy_model("llama", tok), lora).save_pretrained(adapter_dir)
    cfg = _cfg(base_dir, max_new_tokens=12)
    with_adapter = run_eval(cfg, data=data_file, adapter=adapter_dir, out_dir=tmp_path / "a",
                            progress=False)
    run_eval(cfg, data=data_file, out_dir=tmp_path / "b", progress=False)
    adapted = [r["output"] for r in _read(tmp_path / "a" / "predictions.jsonl")]
    plain = [r["output"] for r in _read(tmp_path / "b" / "predictions.jsonl")]
    assert adapted != plain and with_adapter["n"] == 3
    peft_model = PeftModel.from_pretrained(noisy_model("llama", tok), str(adapter_dir)).eval()
    rows = _read(tmp_path / "a" / "predictions.jsonl")
    prompts = [render_prompt(tok, r["prompt"]) for r in rows]
    reference = TransformersBackend(peft_model, tok, max_new_tokens=12).generate(prompts)
    assert [s[0].text for s in reference] == adapted


def test_missing_data_file_is_a_clear_error(model_dir, tmp_path):
    with pytest.raises(DataError, match="not found"):
        run_eval(_cfg(model_dir), data=tmp_path / "nope.jsonl", out_dir=tmp_path / "e",
                 progress=False)


def test_stratified_sample_keeps_type_shares():
    examples = [Example(id=str(i), prompt="p", answer="1", type="a" if i < 60 else "b")
                for i in range(90)]
    chosen = select_examples(examples, sample=30, seed=3)
    assert Counter(e.type for e in chosen) == {"a": 20, "b": 10}
    assert chosen == select_examples(examples, sample=30, seed=3)
    assert chosen != select_examples(examples, sample=30, seed=4)
    assert [e.id for e in select_examples(examples, limit=5)] == ["0", "1", "2", "3", "4"]


def test_default_adapter_is_the_runs_own(tmp_path):
    adapter = tmp_path / "run" / "adapter"
    adapter.mkdir(parents=True)
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (adapter / name).write_text("{}")
    cfg = parse_config({"output_dir": str(tmp_path / "run")})
    assert resolve_adapter(cfg, None, base=False) == adapter
    assert resolve_adapter(cfg, None, base=True) is None
    no_run = parse_config({"output_dir": str(tmp_path / "x")})
    assert resolve_adapter(no_run, None, base=False) is None
    with pytest.raises(ReasondistillError, match="no adapter"):
        resolve_adapter(cfg, tmp_path / "elsewhere", base=False)


# --------------------------------------------------------------------------- CLI


def _invoke(args: list[str]):
    result = CliRunner().invoke(app, args)
    return result, result.output + (result.stderr if result.stderr_bytes is not None else "")


def test_cli_eval_without_a_config(model_dir, data_file, tmp_path):
    out = tmp_path / "cli-eval"
    result, text = _invoke(["eval", "--model", str(model_dir), "--data", str(data_file),
                            "--out", str(out), "--set", "model.dtype=float32",
                            "--set", f"eval.max_new_tokens={MAX_NEW}"])
    assert result.exit_code == 0, text
    assert len(_read(out / "predictions.jsonl")) == 3
    assert json.loads((out / "summary.json").read_text())["n_correct"] == 2
    assert "accuracy" in text


def test_cli_eval_with_a_config_defaults_to_the_run_folder(model_dir, data_file, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(f"output_dir: {tmp_path / 'run'}\nmodel: {{name: {model_dir}, "
                      f"dtype: float32}}\neval: {{max_new_tokens: {MAX_NEW}}}\n")
    result, text = _invoke(["eval", str(config), "--data", str(data_file), "--limit", "1"])
    assert result.exit_code == 0, text
    assert len(_read(tmp_path / "run" / "eval" / "before" / "predictions.jsonl")) == 1


def test_cli_eval_missing_data_exits_2(model_dir, tmp_path):
    missing = tmp_path / "missing.jsonl"
    result, text = _invoke(["eval", "--model", str(model_dir), "--data", str(missing),
                            "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "error" in text and "missing.jsonl" in text and "not found" in text
    assert "Traceback" not in text
