"""The ``data`` command end to end: report contents, JSON output, exit code 2 on bad input."""

import json

import pytest
import yaml
from typer.testing import CliRunner

from reasondistill.cli import app

runner = CliRunner()


@pytest.fixture
def tok_dir(tiny_model_dir):
    return tiny_model_dir


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def make_config(tmp_path, tok_dir, data_path, **format_cfg):
    config = {
        "model": {"name": str(tok_dir)},
        "data": {"source": "jsonl", "path": str(data_path), "on_bad_row": "drop",
                 "columns": {"trace": "cot"}},
        "format": {"max_length": 96, **format_cfg},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


ROWS = [
    {"prompt": "What is 2+3?", "cot": "Add them: 2+3=5.", "answer": "5", "type": "add",
     "difficulty": "1"},
    {"prompt": "What is 4*3?", "cot": "Multiply: 4*3=12.", "answer": "12", "type": "mul",
     "difficulty": "2"},
    {"prompt": "What is 9-1?", "cot": "ok", "answer": "8", "type": "sub", "difficulty": "1"},
    {"prompt": "", "cot": "Long enough trace.", "answer": "1", "type": "add", "difficulty": "1"},
    {"prompt": "Long?", "cot": "step " * 200, "answer": "7", "type": "mul", "difficulty": "3"},
]


def test_data_report_counts_every_row(tmp_path, tok_dir):
    config = make_config(tmp_path, tok_dir, write_rows(tmp_path / "d.jsonl", ROWS))
    result = runner.invoke(app, ["data", str(config), "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["rows_read"] == 5
    assert report["rows_used"] == 2
    assert sum(report["drops"].values()) == 3
    assert report["drops"]["answer would not fit in max_length"] == 1
    assert report["drops"]["trace shorter than min_trace_chars"] == 1
    assert report["per_type"] == {"add": 1, "mul": 1}
    assert report["per_difficulty"] == {"1": 1, "2": 1}
    assert report["rows_answer_past_max_length"] == 1
    assert 0 < report["token_length"]["p50"] <= 96
    assert "rows read 5, rows used 2, dropped 3" in result.output


def test_truncate_trace_keeps_the_long_row(tmp_path, tok_dir):
    config = make_config(tmp_path, tok_dir, write_rows(tmp_path / "d.jsonl", ROWS),
                         truncate="trace")
    result = runner.invoke(app, ["data", str(config), "--json", "-"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{"):])
    assert report["rows_used"] == 3 and report["rows_trace_cut"] == 1


def test_bad_config_key_exits_2_with_a_suggestion(tmp_path, tok_dir):
    config = make_config(tmp_path, tok_dir, tmp_path / "d.jsonl")
    raw = yaml.safe_load(config.read_text())
    raw["format"]["max_lenght"] = 10
    config.write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["data", str(config)])
    assert result.exit_code == 2
    assert "format.max_lenght" in result.output and "did you mean 'max_length'" in result.output


def test_missing_data_file_exits_2_naming_it(tmp_path, tok_dir):
    config = make_config(tmp_path, tok_dir, tmp_path / "nope.jsonl")
    result = runner.invoke(app, ["data", str(config)])
    assert result.exit_code == 2
    assert "nope.jsonl" in result.output
    assert "Traceback" not in result.output


def test_bad_row_with_on_bad_row_error_names_the_row(tmp_path, tok_dir):
    data = write_rows(tmp_path / "d.jsonl", ROWS[:3] + [ROWS[3]])
    config = make_config(tmp_path, tok_dir, data)
    result = runner.invoke(app, ["data", str(config), "--set", "data.on_bad_row=error"])
    assert result.exit_code == 2
    assert "d.jsonl" in result.output and "row 4" in result.output and "prompt" in result.output
