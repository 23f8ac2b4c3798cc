"""load_examples: every source, every kind of bad input (error naming file/row/field, or a
counted drop), and the real GSM8K / AQuA files."""

from __future__ import annotations

import csv
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from reasondistill.config import DataConfig
from reasondistill.data.example import Example
from reasondistill.data.loaders import load_examples
from reasondistill.data.sources.aqua import strip_answer_line
from reasondistill.data.sources.gsm8k import parse_solution, step_type
from reasondistill.errors import ConfigError, DataError


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_csv(path: Path, header, rows) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def load(path, source=None, **options):
    source = source or {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv",
                        ".parquet": "parquet"}[Path(path).suffix]
    return load_examples(DataConfig(source=source, path=str(path), **options))


def load_error(path, **options) -> DataError:
    with pytest.raises(DataError) as info:
        load(path, **options)
    return info.value


ROWS = [
    {"question": "What is 2+2?", "generated_cot": "Two and two make four.", "answer": "4",
     "type": "arith", "difficulty": "easy", "source_url": "x"},
    {"question": "Flip 0101.", "generated_cot": "Each bit flips.", "answer": "00010101",
     "type": "bits", "difficulty": "hard", "source_url": "y"},
]
MAPPED = {"prompt": "question", "trace": "generated_cot"}


# --- JSON lines ------------------------------------------------------------------------------

def test_jsonl_maps_columns_and_keeps_extras_in_meta(tmp_path):
    result = load(write_jsonl(tmp_path / "traces.jsonl", ROWS), columns=MAPPED)
    first, second = result.examples
    assert first == Example(id="traces-0", prompt="What is 2+2?", answer="4",
                            trace="Two and two make four.", type="arith", difficulty="easy",
                            meta={"source_url": "x"})
    assert second.id == "traces-1" and second.answer == "00010101"
    assert result.rows_read == 2 and not result.drops and not result.warnings
    assert result.source == str(tmp_path / "traces.jsonl")


def test_id_column_and_absent_type_difficulty_default(tmp_path):
    rows = [{"uid": "a", "prompt": "p1", "trace": "t1 t1 t1", "answer": 1},
            {"uid": 7, "prompt": "p2", "trace": "t2 t2 t2", "answer": 2.0}]
    result = load(write_jsonl(tmp_path / "d.jsonl", rows), columns={"id": "uid"})
    assert [e.id for e in result.examples] == ["a", "7"]
    assert [e.answer for e in result.examples] == ["1", "2"]  # 2.0 never becomes "2.0"
    assert {(e.type, e.difficulty) for e in result.examples} == {("default", "default")}


def test_answers_keep_their_written_form(tmp_path):
    rows = [{"prompt": "p", "answer": a} for a in ["00010101", 7, 7.0, "7.0", 0.5, " 12 "]]
    result = load(write_jsonl(tmp_path / "d.jsonl", rows))
    assert [e.answer for e in result.examples] == ["00010101", "7", "7", "7.0", "0.5", "12"]


def test_numeric_type_and_difficulty_become_text(tmp_path):
    rows = [{"prompt": "p", "answer": "1", "type": 3, "difficulty": 2.0}]
    example = load(write_jsonl(tmp_path / "d.jsonl", rows)).examples[0]
    assert (example.type, example.difficulty) == ("3", "2")


def test_missing_default_trace_column_warns_and_leaves_traces_empty(tmp_path):
    result = load(write_jsonl(tmp_path / "d.jsonl", ROWS), columns={"prompt": "question"})
    assert {e.trace for e in result.examples} == {""}
    assert len(result.warnings) == 1 and "data.columns.trace" in result.warnings[0]


def test_trace_none_mapping_reads_no_trace(tmp_path):
    result = load(write_jsonl(tmp_path / "d.jsonl", ROWS),
                  columns={"prompt": "question", "trace": None})
    assert {e.trace for e in result.examples} == {""} and not result.warnings
    assert "generated_cot" in result.examples[0].meta


def test_misspelt_column_suggests_the_closest(tmp_path):
    error = load_error(write_jsonl(tmp_path / "d.jsonl", ROWS),
                       columns={"prompt": "qestion", "trace": "generated_cot"})
    assert error.field == "qestion" and error.file.endswith("d.jsonl")
    assert "did you mean 'question'" in str(error) and "data.columns.prompt" in str(error)


def test_explicitly_named_optional_column_must_exist(tmp_path):
    error = load_error(write_jsonl(tmp_path / "d.jsonl", ROWS),
                       columns={**MAPPED, "difficulty": "level"})
    assert error.field == "level" and "data.columns.difficulty" in str(error)


def test_default_answer_column_is_still_required(tmp_path):
    rows = [{"prompt": "p", "label": "1"}]
    error = load_error(write_jsonl(tmp_path / "d.jsonl", rows))
    assert error.field == "answer" and "label" in str(error)


def test_invalid_json_on_line_7_names_the_line(tmp_path):
    path = tmp_path / "d.jsonl"
    lines = [json.dumps({"prompt": f"p{i}", "answer": str(i)}) for i in range(9)]
    lines[6] = '{"prompt": "p6", "answer": '
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    error = load_error(path)
    assert (error.file, error.row) == (str(path), 7)
    assert "line 7 is not valid JSON" in str(error) and "on_bad_row" in str(error)
    result = load(path, on_bad_row="drop")
    assert result.drops == {"invalid JSON": 1}
    assert result.rows_read == 9 and len(result.examples) == 8


def test_blank_lines_are_skipped_but_keep_line_numbers(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"prompt": "a", "answer": "1"}\n\n  \n{"prompt": "", "answer": "2"}\n',
                    encoding="utf-8")
    error = load_error(path)
    assert (error.row, error.field) == (4, "prompt")
    result = load(path, on_bad_row="drop")
    assert result.rows_read == 2 and result.drops == {"empty prompt": 1}


def test_non_object_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"prompt": "a", "answer": "1"}\n[1, 2]\n', encoding="utf-8")
    assert load_error(path).row == 2
    assert load(path, on_bad_row="drop").drops == {"row is not a JSON object": 1}


def test_json_array_file_is_read(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps(ROWS), encoding="utf-8")
    assert [e.id for e in load(path, columns=MAPPED).examples] == ["d-0", "d-1"]


def test_csv_given_as_jsonl_says_so(tmp_path):
    path = write_csv(tmp_path / "d.jsonl", ["prompt", "answer"], [["p", "1"]])
    error = load_error(path)
    assert error.row == 1 and "not JSON lines" in str(error)
    assert "data.source: csv" in str(error)


@pytest.mark.parametrize("content", [b"", b"\n  \n"])
def test_empty_jsonl_file(tmp_path, content):
    path = tmp_path / "d.jsonl"
    path.write_bytes(content)
    error = load_error(path)
    assert error.file == str(path) and "empty" in str(error)


def test_missing_file_and_folder_and_no_path(tmp_path):
    assert "not found" in str(load_error(tmp_path / "nope.jsonl"))
    with pytest.raises(DataError, match="is a folder"):
        load_examples(DataConfig(source="jsonl", path=str(tmp_path)))
    with pytest.raises(ConfigError, match="data.path"):
        load_examples(DataConfig(source="csv"))


@pytest.mark.parametrize("value, shown", [("", "blank"), ("   ", "blank"), (None, "missing"),
                                          (float("nan"), "NaN")])
def test_empty_or_nan_prompt_and_answer(tmp_path, value, shown):
    for field in ("prompt", "answer"):
        rows = [{"prompt": "ok", "answer": "1"}, {"prompt": "ok", "answer": "2", field: value}]
        path = tmp_path / f"{field}.jsonl"
        path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
        error = load_error(path)
        assert (error.row, error.field) == (2, field)
        assert f"{field} is {shown}" in str(error)
        assert load(path, on_bad_row="drop").drops == {f"empty {field}": 1}


def test_missing_key_in_a_later_row(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "a", "answer": "1"}, {"prompt": "b"}])
    error = load_error(path)
    assert (error.row, error.field) == (2, "answer") and "missing" in str(error)


@pytest.mark.parametrize("answer", [True, [1, 2], {"x": 1}])
def test_answer_that_is_not_text_or_number(tmp_path, answer):
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "a", "answer": "1"},
                                              {"prompt": "b", "answer": answer}])
    error = load_error(path)
    assert (error.row, error.field) == (2, "answer")
    assert load(path, on_bad_row="drop").drops == {"value is not text or a number": 1}


def test_non_utf8_line_names_row_and_byte_offset(tmp_path):
    path = tmp_path / "d.jsonl"
    good = b'{"prompt": "a", "answer": "1"}\n'
    bad = b'{"prompt": "caf\xe9", "answer": "2"}\n'
    path.write_bytes(good + bad + good.replace(b'"1"', b'"3"'))
    offset = len(good) + bad.index(b"\xe9")
    error = load_error(path)
    assert error.row == 2 and f"file offset {offset}" in str(error)
    assert "0xe9" in str(error)
    result = load(path, on_bad_row="drop")
    assert result.drops == {"not UTF-8": 1} and [e.answer for e in result.examples] == ["1", "3"]


def test_duplicate_ids(tmp_path):
    rows = [{"id": "x", "prompt": "a", "answer": "1"}, {"id": "y", "prompt": "b", "answer": "2"},
            {"id": "x", "prompt": "c", "answer": "3"}]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    error = load_error(path, columns={"id": "id"})
    assert (error.row, error.field) == (3, "id") and "already used by row 1" in str(error)
    result = load(path, columns={"id": "id"}, on_bad_row="drop")
    assert [e.prompt for e in result.examples] == ["a", "b"]
    assert result.drops == {"duplicate id": 1}


def test_limit_keeps_the_first_n_usable_rows(tmp_path):
    rows = [{"prompt": "a", "answer": "1"}, {"prompt": "", "answer": "2"},
            {"prompt": "c", "answer": "3"}, {"prompt": "d", "answer": "4"}]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    result = load(path, on_bad_row="drop", limit=2)
    assert [e.prompt for e in result.examples] == ["a", "c"]
    assert result.rows_read == 3 and result.drops == {"empty prompt": 1}


def test_drop_counts_every_reason_and_nothing_usable_is_an_error(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"prompt": "", "answer": "1"}\n{"prompt": "b", "answer": null}\n'
                    '{"prompt": "c", "answer": 3}\n{oops\n', encoding="utf-8")
    result = load(path, on_bad_row="drop")
    assert result.drops == {"empty prompt": 1, "empty answer": 1, "invalid JSON": 1}
    assert result.rows_read == 4 and len(result.examples) == 1
    path.write_text('{"prompt": "", "answer": "1"}\n', encoding="utf-8")
    with pytest.raises(DataError, match="no usable rows: all 1 rows were dropped"):
        load(path, on_bad_row="drop")


# --- CSV -------------------------------------------------------------------------------------

def test_csv_keeps_every_cell_as_written(tmp_path):
    path = write_csv(tmp_path / "d.csv", ["prompt", "trace", "answer", "note"],
                     [["p1", "multi\nline trace", "00010101", "NA"],
                      ["p2", "t", "7", "nan"], ["p3", "t", "7.0", ""]])
    result = load(path)
    assert [e.answer for e in result.examples] == ["00010101", "7", "7.0"]
    assert result.examples[0].trace == "multi\nline trace"
    assert [e.meta["note"] for e in result.examples] == ["NA", "nan", ""]


def test_csv_empty_cell_names_row_and_field(tmp_path):
    path = write_csv(tmp_path / "d.csv", ["question", "answer"],
                     [["p1", "1"], ["p2", ""], ["p3", "3"]])
    error = load_error(path, columns={"prompt": "question"})
    assert (error.file, error.row, error.field) == (str(path), 2, "answer")


def test_csv_wrong_field_count(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("prompt,answer\np1,1\np2,2,extra\n", encoding="utf-8")
    error = load_error(path)
    assert error.row == 2 and "line 3 has 3 fields, the header has 2" in str(error)
    assert load(path, on_bad_row="drop").drops == {"wrong number of fields": 1}


def test_csv_non_utf8_cell_names_row_and_field(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b"prompt,answer\np1,1\np\xff2,2\n")
    error = load_error(path)
    assert (error.row, error.field) == (2, "prompt") and "0xff" in str(error)
    assert load(path, on_bad_row="drop").drops == {"not UTF-8": 1}


def test_csv_header_only_duplicate_header_and_bom(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("prompt,answer\n", encoding="utf-8")
    assert "no data rows" in str(load_error(path))
    path.write_text("prompt,answer,prompt\na,1,b\n", encoding="utf-8")
    assert "more than once" in str(load_error(path))
    path.write_bytes("prompt,answer\na,1\n".encode("utf-8-sig"))
    assert load(path).examples[0].prompt == "a"


def test_jsonl_given_as_csv_says_so(tmp_path):
    error = load_error(write_jsonl(tmp_path / "d.csv", ROWS))
    assert "data.source: jsonl" in str(error)


def test_csv_long_fields_are_read_and_the_csv_limit_is_restored(tmp_path):
    trace = "x" * 300_000  # over the csv module's default 128 KiB field limit
    path = write_csv(tmp_path / "d.csv", ["prompt", "trace", "answer"], [["p", trace, "1"]])
    before = csv.field_size_limit()
    assert load(path).examples[0].trace == trace
    assert csv.field_size_limit() == before


# --- Parquet ---------------------------------------------------------------------------------

def write_parquet(path: Path, columns: dict) -> Path:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table(columns), path)
    return path


def test_parquet_numbers_keep_their_form(tmp_path):
    path = write_parquet(tmp_path / "d.parquet", {
        "prompt": ["a", "b", "c"], "answer": [7, 12, 3],
        "ratio": [0.5, 1.0, 2.25], "bits": ["00010101", "1", "0"]})
    result = load(path)
    assert [e.answer for e in result.examples] == ["7", "12", "3"]
    assert result.examples[0].meta == {"ratio": 0.5, "bits": "00010101"}
    result = load(path, columns={"answer": "bits"})
    assert result.examples[0].answer == "00010101"
    assert [e.answer for e in load(path, columns={"answer": "ratio"}).examples] == \
        ["0.5", "1", "2.25"]


def test_parquet_null_and_nan_answers_are_problems(tmp_path):
    path = write_parquet(tmp_path / "d.parquet", {
        "prompt": ["a", "b", "c", "d"], "answer": [1, None, 3, 4],
        "score": [1.0, 2.0, math.nan, 4.0]})
    error = load_error(path)
    assert (error.row, error.field) == (2, "answer")
    assert [e.answer for e in load(path, on_bad_row="drop").examples] == ["1", "3", "4"]
    result = load(path, columns={"answer": "score"}, on_bad_row="drop")
    assert result.drops == {"empty answer": 1}
    assert [e.answer for e in result.examples] == ["1", "2", "4"]


def test_not_a_parquet_file(tmp_path):
    path = write_jsonl(tmp_path / "d.parquet", ROWS)
    error = load_error(path)
    assert "not a Parquet file" in str(error) and "data.source: jsonl" in str(error)


# --- Hugging Face datasets ---------------------------------------------------------------------

@pytest.fixture
def datasets_module():
    return pytest.importorskip("datasets")


def test_hf_saved_dataset_and_dataset_dict(tmp_path, datasets_module):
    rows = {"question": ["q1", "q2"], "solution": ["s1 s1", "s2 s2"], "answer": [4, 5]}
    single = tmp_path / "single"
    datasets_module.Dataset.from_dict(rows).save_to_disk(str(single))
    columns = {"prompt": "question", "trace": "solution"}
    result = load_examples(DataConfig(source="hf", path=str(single), columns=columns))
    assert [(e.id, e.answer, e.trace) for e in result.examples] == \
        [("single-train-0", "4", "s1 s1"), ("single-train-1", "5", "s2 s2")]

    both = tmp_path / "both"
    datasets_module.DatasetDict({
        "train": datasets_module.Dataset.from_dict(rows),
        "test": datasets_module.Dataset.from_dict({k: v[:1] for k, v in rows.items()}),
    }).save_to_disk(str(both))
    test = load_examples(DataConfig(source="hf", path=str(both), split="test", columns=columns))
    assert [e.prompt for e in test.examples] == ["q1"]
    with pytest.raises(DataError, match="no split 'tset'.*did you mean 'test'"):
        load_examples(DataConfig(source="hf", path=str(both), split="tset", columns=columns))


def test_hf_unreachable_hub_is_a_clear_error(monkeypatch, datasets_module):
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'org/name' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(datasets_module, "load_dataset", offline)
    with pytest.raises(DataError, match="offline"):
        load_examples(DataConfig(source="hf", path="org/name"))
    with pytest.raises(ConfigError) as info:
        load_examples(DataConfig(source="gsm8k"))
    assert "data.path" in str(info.value) and "openai/gsm8k" in str(info.value)
    with pytest.raises(ConfigError, match="data.path"):
        load_examples(DataConfig(source="hf"))


# --- GSM8K -----------------------------------------------------------------------------------

SOLUTION = ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
            "She sold 1,000+24 = <<1000+24=1024>>1,024 clips.\n#### 1,024")


def test_parse_gsm8k_solution():
    trace, answer, steps = parse_solution(SOLUTION)
    assert trace == "Natalia sold 48/2 = 24 clips in May.\nShe sold 1,000+24 = 1,024 clips."
    assert (answer, steps) == ("1024", 2)
    assert parse_solution("No notes here.\n#### -3") == ("No notes here.", "-3", 0)
    with pytest.raises(ValueError):
        parse_solution("no final line")


@pytest.mark.parametrize("steps, bucket", [(0, "steps_1-2"), (1, "steps_1-2"), (2, "steps_1-2"),
                                           (3, "steps_3-4"), (4, "steps_3-4"), (5, "steps_5+"),
                                           (9, "steps_5+")])
def test_gsm8k_step_buckets(steps, bucket):
    assert step_type(steps) == bucket


def test_gsm8k_file_and_folder(tmp_path):
    rows = [{"question": "Q0?", "answer": SOLUTION},
            {"question": "Q1?", "answer": "a <<1+1=2>>2\nb <<2*2=4>>4\nc <<4+1=5>>5\n#### 5"}]
    write_jsonl(tmp_path / "test.jsonl", rows)
    result = load_examples(DataConfig(source="gsm8k", path=str(tmp_path), split="test"))
    first, second = result.examples
    assert (first.id, first.answer, first.difficulty, first.type) == \
        ("gsm8k-test-0", "1024", "2", "steps_1-2")
    assert (second.id, second.difficulty, second.type) == ("gsm8k-test-1", "3", "steps_3-4")
    same = load_examples(DataConfig(source="gsm8k", path=str(tmp_path / "test.jsonl")))
    assert same.examples == result.examples
    with pytest.raises(DataError, match="splits here: test"):
        load_examples(DataConfig(source="gsm8k", path=str(tmp_path), split="train"))


def test_gsm8k_bad_rows(tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", [{"question": "Q?", "answer": SOLUTION},
                                                  {"question": "Q?", "answer": "no final"}])
    with pytest.raises(DataError) as info:
        load_examples(DataConfig(source="gsm8k", path=str(path)))
    assert (info.value.row, info.value.field) == (2, "answer")
    result = load_examples(DataConfig(source="gsm8k", path=str(path), on_bad_row="drop"))
    assert result.drops == {"no '#### answer' line": 1}
    other = write_jsonl(tmp_path / "other.jsonl", [{"prompt": "p", "answer": "1"}])
    with pytest.raises(DataError, match="not a GSM8K file.*'question'"):
        load_examples(DataConfig(source="gsm8k", path=str(other)))


def test_real_gsm8k(shared_data):
    folder = shared_data / "gsm8k"
    train = load_examples(DataConfig(source="gsm8k", path=str(folder), split="train"))
    test = load_examples(DataConfig(source="gsm8k", path=str(folder), split="test"))
    assert (len(train.examples), len(test.examples)) == (7473, 1319)
    assert not train.drops and not test.drops
    first = train.examples[0]
    assert first.id == "gsm8k-train-0" and first.answer == "72"
    assert first.trace == ("Natalia sold 48/2 = 24 clips in May.\n"
                           "Natalia sold 48+24 = 72 clips altogether in April and May.")
    assert (first.difficulty, first.type) == ("2", "steps_1-2")
    everything = train.examples + test.examples
    assert all(re.fullmatch(r"-?\d+", e.answer) for e in everything)
    assert not any("<<" in e.trace or "####" in e.trace for e in everything)
    assert {e.type for e in everything} == {"steps_1-2", "steps_3-4", "steps_5+"}
    assert len({e.id for e in everything}) == len(everything)


# --- AQuA-RAT ----------------------------------------------------------------------------------

@pytest.mark.parametrize("rationale, trace", [
    ("x = 3\nAnswer: C", "x = 3"),
    ("x = 3\nANSWER:E", "x = 3"),
    ("x = 3\nThe answer is (D).", "x = 3"),
    ("x = 3\nD is the correct choice", "x = 3"),
    ("x = 3\nAnswer: D) 109 rolls", "x = 3"),
    ("x = 3\nB", "x = 3"),
    ("so x = 250 m. Answer D", "so x = 250 m"),
    ("loss = 5% Answer :A", "loss = 5%"),
    ("x = 3\ntotal = 24.", "x = 3\ntotal = 24."),  # no verdict: kept
    ("x = 3\nAnswer: 3", "x = 3\nAnswer: 3"),  # not an option letter: kept
    ("a = 2\nbut A is not B", "a = 2\nbut A is not B"),
])
def test_aqua_strips_the_final_verdict(rationale, trace):
    assert strip_answer_line(rationale) == trace


def test_aqua_bad_rows(tmp_path):
    good = {"question": "Q?", "options": ["A)1", "B)2"], "rationale": "r r r", "correct": "B"}
    path = write_jsonl(tmp_path / "dev.json", [good, {**good, "correct": "F"},
                                               {**good, "options": "A)1"}])
    result = load_examples(DataConfig(source="aqua", path=str(path), on_bad_row="drop"))
    assert result.drops == {"answer is not one of the options": 1,
                            "options are not a list of strings": 1}
    assert result.examples[0].prompt == "Q?\n\nOptions:\nA) 1\nB) 2"
    with pytest.raises(ConfigError, match="data.path"):
        load_examples(DataConfig(source="aqua"))


def test_real_aqua(shared_data):
    folder = shared_data / "aqua"
    for split in ("dev", "test"):
        result = load_examples(DataConfig(source="aqua", path=str(folder), split=split))
        assert len(result.examples) == 254 and not result.drops
        assert all(e.answer in "ABCDE" and e.type == "aqua" for e in result.examples)
        assert all(e.prompt.count("\n") >= 6 for e in result.examples)
        still_ending_in_verdict = [
            e for e in result.examples
            if re.search(r"(answer|option)\W*\(?[A-E]\)?\W*$", e.trace, re.IGNORECASE)]
        assert len(still_ending_in_verdict) <= 3
    first = load_examples(DataConfig(source="aqua", path=str(folder), split="dev")).examples[0]
    assert first.id == "aqua-dev-0" and first.answer == "A"
    assert first.prompt.endswith("Options:\nA) 32400\nB) 6000\nC) 600\nD) 60000\nE) 10")
    assert first.trace.endswith("Speed in miles/minutes = 60 * 540 = 32400")
    assert first.meta["options"][0] == "A)32400"


# --- the puzzle suite ------------------------------------------------------------------------

def test_puzzles_source():
    puzzles = pytest.importorskip("reasondistill.data.puzzles")
    if not hasattr(puzzles, "generate_puzzles"):
        pytest.skip("reasondistill.data.puzzles.generate_puzzles is not written yet")
    cfg = DataConfig(source="puzzles", puzzles={"n": 30, "seed": 3})
    first, again = load_examples(cfg), load_examples(cfg)
    assert len(first.examples) == 30 and first.examples == again.examples
    assert len({e.id for e in first.examples}) == 30
    limited = load_examples(cfg.model_copy(update={"limit": 5}))
    assert limited.examples == first.examples[:5]


# --- import weight ---------------------------------------------------------------------------

def test_data_core_imports_nothing_heavy():
    code = ("import sys, reasondistill.data, reasondistill.data.loaders, "
            "reasondistill.data.split, reasondistill.data.sampling; "
            "print(sorted({'torch', 'pandas', 'pyarrow', 'datasets', 'numpy'} & "
            "set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
