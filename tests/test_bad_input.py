"""Bad input, tried systematically (issue #15): one table of broken files, configs, model
paths, adapters, caches and CLI flags, each fed through the command line.

Every case must give exit code 2 and a short error paragraph (no traceback) that names the
culprit — the file, row, field or key — and must leave no output behind: the only files a
failed command may have added are the records a run writes before its first heavy step
(``config.yaml``, ``data_report.json``, ``settings.json``); never an adapter, a summary,
predictions, traces, a cache shard or a zip.

Each case fails during validation or model loading, before any training or generation step,
so the whole table runs in seconds on one CPU thread. Everything is offline (the hub is
switched to offline mode for every case).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pytest
import yaml
from test_distill_cache import cache_config, make_adapter
from test_train import write_arithmetic_rows
from typer.testing import CliRunner

from reasondistill.cli import app

# Files a failed command may leave: what a run records before its first heavy step.
RECORDS = {"config.yaml", "data_report.json", "settings.json"}
MAX_ERROR_LINES = 8  # "one paragraph": the message, or click's usage box


# --------------------------------------------------------------------------- shared inputs


class Assets:
    """Inputs several cases share, each built once per module on first use."""

    def __init__(self, root: Path, model_dir: Path) -> None:
        self.root, self.model_dir = root, model_dir

    @cached_property
    def adapters(self) -> tuple[Path, Path]:
        """Two self-teacher adapters on the tiny model (rank 4, random weights)."""
        return (make_adapter(self.root / "adapter-a", self.model_dir, 0),
                make_adapter(self.root / "adapter-b", self.model_dir, 1))

    @cached_property
    def wide_adapter(self) -> Path:
        """An adapter for another base: the same targets on a Llama with hidden size 48."""
        import transformers as tf
        from tiny import tiny_config, tiny_tokenizer

        config = tiny_config("llama", tiny_tokenizer())
        config.hidden_size, config.intermediate_size = 48, 96
        wide = self.root / "wide-model"
        tf.AutoModelForCausalLM.from_config(config).save_pretrained(wide)
        return make_adapter(self.root / "wide-adapter", wide, 0)

    @cached_property
    def gpt2_adapter(self) -> Path:
        """An adapter for another architecture: its target (GPT-2's c_attn) is not in Llama."""
        from peft import LoraConfig, get_peft_model
        from tiny import tiny_model, tiny_tokenizer

        model = tiny_model("gpt2", tiny_tokenizer())
        path = self.root / "gpt2-adapter"
        get_peft_model(model, LoraConfig(r=4, target_modules=["c_attn"])).save_pretrained(path)
        return path

    @cached_property
    def teacher_cache(self) -> tuple[Path, dict]:
        """A complete teacher cache of adapter a's signal on 8 rows, and its config."""
        from rich.console import Console

        from reasondistill.config import parse_config
        from reasondistill.distill import cache

        root = self.root / "cache-run"
        root.mkdir()
        raw = cache_config(root, self.model_dir, self.adapters[0]).model_dump(
            mode="json", exclude_unset=True)
        raw["data"]["limit"] = 8

        cache.write_cache(parse_config(raw), root / "cache", progress=False,
                          console=Console(quiet=True))
        return root / "cache", raw


@dataclass
class Ctx:
    """One case's working folder, with helpers that write its inputs there."""

    tmp: Path
    model_dir: Path
    assets: Assets

    @property
    def run(self) -> Path:
        return self.tmp / "run"

    def path(self, name: str) -> str:
        return str(self.tmp / name)

    def rows(self, name: str = "rows.jsonl") -> str:
        """48 good rows (16 mul, 32 add), ids r0..r47."""
        return str(write_arithmetic_rows(self.tmp / name))

    def write(self, name: str, content: str | bytes) -> str:
        target = self.tmp / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8")
        return str(target)

    def jsonl(self, name: str, rows: list) -> str:
        return self.write(name, "".join(json.dumps(r) + "\n" for r in rows))

    def raw_config(self, **sections) -> dict:
        """A working run config (tiny model, the 48 rows), with ``sections`` merged in."""
        raw = {
            "output_dir": str(self.run),
            "model": {"name": str(self.model_dir)},
            "data": {"source": "jsonl", "path": self.rows()},
            "format": {"max_length": 128},
            "lora": {"r": 4, "alpha": 8},
            "train": {"phases": ["train"], "per_device_batch_size": 4, "bf16": False},
        }
        return _merge(raw, sections)

    def config(self, name: str = "run.yaml", **sections) -> str:
        return self.write(name, yaml.safe_dump(self.raw_config(**sections)))

    def model_copy(self, name: str) -> Path:
        """A private copy of the tiny model directory, to break."""
        target = self.tmp / name
        shutil.copytree(self.model_dir, target)
        return target

    def cache_copy(self) -> tuple[str, dict]:
        """A private copy of the shared teacher cache, and the config it was built from."""
        built, raw = self.assets.teacher_cache
        shutil.copytree(built, self.tmp / "cache")
        return str(self.tmp / "cache"), json.loads(json.dumps(raw))

    def cache_config(self, *, teacher: dict | None = None, **distill) -> str:
        """The cache's own config, output in this case's folder, with distill overrides."""
        cache, raw = self.cache_copy()
        raw["output_dir"] = str(self.run)
        raw["distill"]["teacher"].update({"cache": cache, **(teacher or {})})
        raw["distill"].update(distill)
        return self.write("cache-run.yaml", yaml.safe_dump(raw))

    def sweep(self, body: dict) -> str:
        self.config()  # run.yaml, the sweep's base
        body = {"base": "run.yaml", "output_dir": str(self.tmp / "sweep"), **body}
        return self.write("sweep.yaml", yaml.safe_dump(body))


def _merge(base: dict, extra: dict) -> dict:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Case:
    id: str
    args: Callable[[Ctx], list[str]]  # the command line, after writing the inputs
    names: tuple[str, ...]  # each must appear in the error paragraph


def case(id: str, args, *names: str) -> Case:
    return Case(id, args, names)


def dry(**sections):
    """``train CONFIG --dry-run`` on the working config with ``sections`` merged in."""
    return lambda c: ["train", c.config(**sections), "--dry-run"]


def data_cmd(**sections):
    return lambda c: ["data", c.config(**sections)]


def data_file(name: str, content: str | bytes | list, source: str = "jsonl", **data):
    """``data`` on a config whose data file is ``content`` (a list: JSON lines)."""
    def args(c: Ctx):
        path = c.jsonl(name, content) if isinstance(content, list) else c.write(name, content)
        return ["data", c.config(data={"source": source, "path": path, **data})]

    return args


ROW = {"id": "x0", "prompt": "What is 1+1?", "trace": "1+1 = 2.", "answer": "2", "type": "add"}


def row(**fields):
    return {**ROW, **fields}


def broken_model(c: Ctx) -> str:
    path = c.model_copy("broken-model")
    (path / "model.safetensors").write_bytes(b"\x00\xffnot safetensors at all" * 100)
    return str(path)


def no_template_model(c: Ctx) -> str:
    path = c.model_copy("plain-tokenizer")
    (path / "chat_template.jinja").unlink(missing_ok=True)
    config_file = path / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    config.pop("chat_template", None)
    config_file.write_text(json.dumps(config))
    return str(path)


def eval_args(c: Ctx, *extra: str) -> list[str]:
    return ["eval", "--model", str(c.model_dir), "--data", c.rows(), "--out", c.path("eval"),
            "--limit", "1", "--set", "eval.max_new_tokens=4", *extra]


def incomplete_adapter(c: Ctx) -> str:
    c.write("half-adapter/adapter_config.json", json.dumps({"r": 4}))
    return c.path("half-adapter")


def garbled_adapter(c: Ctx) -> str:
    c.write("bad-adapter/adapter_config.json", "{not json")
    c.write("bad-adapter/adapter_model.safetensors", b"\x00" * 16)
    return c.path("bad-adapter")


def finished_run(c: Ctx) -> list[str]:
    c.write("run/adapter/adapter_config.json", "{}")
    return ["train", c.config()]


def corrupt_index(c: Ctx) -> list[str]:
    config = c.cache_config()
    (c.tmp / "cache" / "index.json").write_text("{truncated")
    return ["train", config]


CASES = [
    # --- run configs -------------------------------------------------------------------
    case("config-missing-file", lambda c: ["train", c.path("nope.yaml")], "nope.yaml"),
    case("config-not-yaml", lambda c: ["data", c.write("run.yaml", "model: [unclosed\n")],
         "run.yaml", "not valid YAML"),
    case("config-not-utf8", lambda c: ["data", c.write("run.yaml", b"model:\n  name: \xff\n")],
         "run.yaml", "not UTF-8"),
    case("config-top-level-list", lambda c: ["data", c.write("run.yaml", "- model\n- data\n")],
         "run.yaml", "top level"),
    case("config-unknown-key-suggests", dry(format={"max_lenght": 64}),
         "format.max_lenght", "did you mean 'max_length'"),
    case("config-unknown-section-suggests", dry(trian={"seed": 1}),
         "'trian'", "did you mean 'train'"),
    case("config-foreign-name-suggests", dry(lora={"lora_alpha": 16}),
         "lora.lora_alpha", "did you mean 'alpha'"),
    case("config-wrong-type-int", dry(lora={"r": "sixteen"}), "lora.r", "sixteen"),
    case("config-wrong-type-bool", dry(train={"stratify": "maybe"}), "train.stratify"),
    case("config-wrong-type-list", dry(train={"hard_types": 5}), "train.hard_types"),
    case("config-out-of-range-dropout", dry(lora={"dropout": 1.5}), "lora.dropout"),
    case("config-out-of-range-batch", dry(train={"per_device_batch_size": 0}),
         "train.per_device_batch_size"),
    case("config-out-of-range-max-length", dry(format={"max_length": 4}), "format.max_length"),
    case("config-bad-choice", dry(data={"source": "xlsx"}), "data.source", "xlsx"),
    case("config-unknown-lora-family", dry(lora={"families": ["attn"]}), "lora.families.0"),
    case("conflict-nudge-without-hard-types", dry(train={"phases": ["train", "nudge"]}),
         "train.hard_types"),
    case("conflict-self-teacher-without-adapter", dry(distill={"enabled": True}),
         "distill.teacher.adapter"),
    case("conflict-layer-pairs-and-student",
         dry(distill={"layers": {"pairs": [[1, 1]], "student": [1]}}), "distill.layers"),
    case("set-without-equals", lambda c: ["train", c.config(), "--set", "train.seed",
                                          "--dry-run"], "--set 'train.seed'"),
    case("set-into-a-value", lambda c: ["train", c.config(), "--set", "lora.r.x=1",
                                        "--dry-run"], "lora.r.x=1", "'r' is not a section"),
    case("set-unknown-key", lambda c: ["train", c.config(), "--set", "lora.rank=8",
                                       "--dry-run"], "lora.rank", "did you mean 'r'"),
    case("set-value-not-yaml", lambda c: ["train", c.config(), "--set", "lora.r=[8",
                                          "--dry-run"], "--set 'lora.r=[8'"),
    # --- data files ----------------------------------------------------------------------
    case("data-missing-file", dry(data={"path": "nope.jsonl"}), "nope.jsonl", "not found"),
    case("data-path-unset", dry(data={"path": None}), "data.path"),
    case("data-path-is-a-folder", lambda c: ["data", c.config(data={"path": str(c.tmp)})],
         "is a folder"),
    case("data-empty-file", data_file("empty.jsonl", ""), "empty.jsonl", "empty"),
    case("data-only-blank-lines", data_file("blank.jsonl", "\n  \n\n"), "blank.jsonl",
         "no JSON lines"),
    case("data-broken-json-line-in-the-middle",
         data_file("d.jsonl", "\n".join([json.dumps(row(id="a")), json.dumps(row(id="b")),
                                         '{"id": "c", "prompt": "oops', json.dumps(row(id="d"))])),
         "d.jsonl", "row 3", "not valid JSON"),
    case("data-not-utf8", data_file("d.jsonl", json.dumps(row(id="a")).encode() + b"\n"
                                    + json.dumps(row(id="b", prompt="caf\u00e9")).encode()
                                    .replace(b"\\u00e9", b"\xe9") + b"\n"),
         "d.jsonl", "row 2", "not UTF-8"),
    case("data-row-not-an-object", data_file("d.jsonl", [row(id="a"), [1, 2], row(id="c")]),
         "d.jsonl", "row 2", "not an object"),
    case("data-csv-named-as-jsonl", data_file("d.jsonl", "prompt,answer\nWhat?,2\n"),
         "d.jsonl", "source: csv"),
    case("data-parquet-is-garbage", data_file("d.parquet", bytes(range(256)) * 4, "parquet"),
         "d.parquet", "not a Parquet file"),
    case("data-csv-is-binary", data_file("d.csv", b"\x00\x01,\x02\n" * 64, "csv"), "d.csv",
         "binary data"),
    case("data-csv-wrong-field-count",
         data_file("d.csv", "prompt,trace,answer\nWhat?,1+1 = 2.,2\nHow,many,fields,here\n",
                   "csv"), "d.csv", "row 2", "4 fields"),
    case("data-missing-required-column",
         data_file("d.jsonl", [{"prompt": "What?", "trace": "t = 2.", "solution": "2"}]),
         "d.jsonl", "'answer'", "data.columns.answer"),
    case("data-mapped-column-absent",
         data_file("d.jsonl", [row()], columns={"trace": "cot"}), "'cot'",
         "data.columns.trace"),
    case("data-duplicate-ids", data_file("d.jsonl", [row(id="p1"), row(id="p2"), row(id="p1")]),
         "d.jsonl", "row 3", "id 'p1'"),
    case("data-blank-answer", data_file("d.jsonl", [row(id="a"), row(id="b", answer="  ")]),
         "d.jsonl", "row 2", "'answer'"),
    case("data-answer-is-a-list", data_file("d.jsonl", [row(id="a", answer=[1, 2])]),
         "d.jsonl", "row 1", "'answer'"),
    case("data-every-row-dropped",
         data_file("d.jsonl", [row(id="a", prompt=""), row(id="b", prompt=" ")],
                   on_bad_row="drop"), "d.jsonl", "no usable rows", "empty prompt"),
    case("data-unknown-puzzle-family", data_cmd(data={"source": "puzzles", "path": None,
                                                      "puzzles": {"families": ["numerals"]}}),
         "'numerals'"),
    # --- formatting, tokenizer, model directories ----------------------------------------
    case("max-length-too-small-for-any-answer", dry(format={"max_length": 8}),
         "format.max_length", "rows.jsonl"),
    case("min-trace-chars-drops-every-row", dry(format={"min_trace_chars": 10_000}),
         "format.min_trace_chars"),
    case("tokenizer-without-chat-template",
         lambda c: ["data", c.config(model={"name": no_template_model(c)})],
         "plain-tokenizer", "no chat template"),
    case("model-directory-missing", dry(model={"name": "./no/such/model"}),
         "model.name", "./no/such/model"),
    case("model-directory-without-config",
         lambda c: ["data", c.config(model={"name": c.write("empty-model/notes.txt", "x")
                                            .removesuffix("/notes.txt")})],
         "empty-model", "config.json"),
    case("model-name-is-a-file", lambda c: ["data", c.config(model={"name": c.rows()})],
         "model.name", "rows.jsonl"),
    case("model-hub-id-while-offline", dry(model={"name": "someorg/no-such-model"}),
         "someorg/no-such-model", "offline"),
    case("model-weights-corrupted-train",
         lambda c: ["train", c.config(model={"name": broken_model(c)})], "broken-model"),
    case("model-weights-corrupted-eval",
         lambda c: ["eval", "--model", broken_model(c), "--data", c.rows(), "--out",
                    c.path("eval"), "--base"], "broken-model"),
    # --- LoRA and the training plan --------------------------------------------------------
    case("lora-family-matches-nothing", dry(lora={"families": ["mamba"]}), "'mamba'",
         "lora.families"),
    case("lora-target-module-absent", dry(lora={"target_modules": ["c_attn"]}), "'c_attn'",
         "lora.target_modules"),
    case("hard-type-absent-from-data",
         dry(train={"phases": ["train", "nudge"], "hard_types": ["division"]}), "division"),
    case("train-into-a-finished-run", finished_run, "already holds a finished run"),
    # --- adapters ----------------------------------------------------------------------------
    case("eval-adapter-for-another-base",
         lambda c: eval_args(c, "--adapter", str(c.assets.wide_adapter)), "wide-adapter"),
    case("eval-adapter-for-another-architecture",
         lambda c: eval_args(c, "--adapter", str(c.assets.gpt2_adapter)), "gpt2-adapter",
         "c_attn"),
    case("export-merge-adapter-for-another-base",
         lambda c: ["export", str(c.assets.wide_adapter), "--merge", c.path("merged"),
                    "--base-model", str(c.model_dir)], "wide-adapter"),
    case("eval-adapter-and-base", lambda c: eval_args(c, "--adapter", c.path(""), "--base"),
         "--adapter", "--base"),
    case("eval-adapter-folder-without-adapter", lambda c: eval_args(c, "--adapter", c.path("")),
         "no adapter found"),
    case("export-adapter-incomplete", lambda c: ["export", incomplete_adapter(c), "--zip",
                                                 c.path("s.zip")],
         "half-adapter", "adapter_model.safetensors"),
    case("export-adapter-config-not-json", lambda c: ["export", garbled_adapter(c)],
         "bad-adapter", "adapter_config.json"),
    case("export-rank-above-max-rank", lambda c: ["export", str(c.assets.adapters[0]), "--zip",
                                                  c.path("s.zip"), "--max-rank", "2"],
         "rank 4 exceeds --max-rank 2"),
    case("teacher-adapter-for-another-base",
         lambda c: ["cache", c.config(distill={"enabled": True, "layers": {"last_k": 1},
                                               "teacher": {"adapter": str(c.assets.wide_adapter)}}),
                    "--out", c.path("cache")], "wide-adapter"),
    # --- teacher caches ----------------------------------------------------------------------
    case("cache-from-another-teacher",
         lambda c: ["train", c.cache_config(teacher={"adapter": str(c.assets.adapters[1])})],
         "teacher_adapter", "cache"),
    case("cache-write-into-another-teachers-cache",
         lambda c: ["cache", c.cache_config(teacher={"adapter": str(c.assets.adapters[1])}),
                    "--out", str(c.tmp / "cache")], "teacher_adapter", "cache"),
    case("cache-folder-is-not-a-cache",
         lambda c: ["train", c.config(distill={"enabled": True, "teacher": {
             "cache": c.write("mine/notes.txt", "x").removesuffix("/notes.txt")}})],
         "mine", "not a teacher cache"),
    case("cache-with-logit-kd", lambda c: ["train", c.cache_config(beta=0.5)], "distill.beta"),
    case("cache-index-corrupted", corrupt_index, "index.json"),
    case("cache-out-is-a-file", lambda c: ["cache", c.config(distill={
        "enabled": True, "teacher": {"adapter": "unused"}}), "--out", c.rows()],
         "rows.jsonl", "is a file"),
    # --- sweep files -------------------------------------------------------------------------
    case("sweep-missing-file", lambda c: ["sweep", c.path("nope-sweep.yaml")], "nope-sweep.yaml"),
    case("sweep-unknown-key-suggests", lambda c: ["sweep", c.sweep({"seed": [0]})],
         "sweep.yaml", "'seed'", "did you mean 'seeds'"),
    case("sweep-empty-grid-axis", lambda c: ["sweep", c.sweep({"grid": {"lora.r": []}})],
         "grid.lora.r"),
    case("sweep-arm-train-not-a-bool",
         lambda c: ["sweep", c.sweep({"arms": {"zero": {"train": "no"}}})], "arms.zero.train"),
    case("sweep-arm-bad-override",
         lambda c: ["sweep", c.sweep({"arms": {"wide": {"lora.rank": 8}}})],
         "sweep point wide", "lora.rank"),
    case("sweep-base-config-missing", lambda c: ["sweep", c.sweep({"base": "gone.yaml"})],
         "gone.yaml"),
    case("sweep-only-matches-nothing", lambda c: ["sweep", c.sweep({}), "--only", "^zzz"],
         "--only '^zzz'"),
    case("sweep-only-not-a-regex", lambda c: ["sweep", c.sweep({}), "--only", "(run"],
         "--only '(run'"),
    # --- generate configs --------------------------------------------------------------------
    case("generate-url-not-http",
         lambda c: ["generate", c.config(generate={"teacher": {
             "backend": "openai", "url": "ftp://teacher", "model": "m"}})],
         "generate.teacher.url", "ftp://teacher"),
    case("generate-samples-with-greedy-decoding",
         lambda c: ["generate", c.config(generate={"teacher": {"backend": "transformers"},
                                                   "samples": 4, "temperature": 0})],
         "generate.samples", "generate.temperature"),
    case("generate-top-p-zero", lambda c: ["generate", c.config(generate={"top_p": 0})],
         "generate.top_p"),
    case("generate-data-unknown-suffix",
         lambda c: ["generate", c.config(), "--data", c.write("problems.txt", "What?\n")],
         "problems.txt", "'.txt'"),
    # --- CLI flags ---------------------------------------------------------------------------
    case("flag-limit-zero", lambda c: ["eval", "--data", c.rows(), "--limit", "0"],
         "'--limit'"),
    case("flag-unknown-option", lambda c: ["train", c.config(), "--epochs", "3"], "--epochs"),
    case("flag-not-an-integer", lambda c: ["cache", c.config(), "--batch-size", "four"],
         "'--batch-size'"),
    case("flag-puzzles-trace-style", lambda c: ["puzzles", "--out", c.path("p.jsonl"),
                                                "--trace-style", "fancy"], "--trace-style"),
    case("flag-puzzles-unknown-family", lambda c: ["puzzles", "--out", c.path("p.jsonl"),
                                                   "--families", "numeral,ciphers"], "'ciphers'"),
    case("flag-eval-data-unknown-suffix",
         lambda c: ["eval", "--model", str(c.model_dir), "--data", c.write("p.xlsx", "x"),
                    "--out", c.path("eval")], "p.xlsx", "'.xlsx'"),
]


# --------------------------------------------------------------------------- the test


@pytest.fixture(scope="module")
def assets(tmp_path_factory, tiny_model_dir):
    return Assets(tmp_path_factory.mktemp("bad-input-assets"), tiny_model_dir)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No case may reach the network: the hub is offline (read at import, so patched too)."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def files_under(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file()}


def error_paragraph(output: str) -> list[str]:
    """The lines from our ``error:`` line (or click's usage block) to the end."""
    lines = output.rstrip().splitlines()
    starts = [i for i, line in enumerate(lines)
              if line.lstrip().startswith(("error:", "Usage:"))]
    assert starts, f"no error message in:\n{output}"
    return lines[starts[-1]:]


def test_the_table_is_large_and_its_ids_unique():
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("bad", CASES, ids=[c.id for c in CASES])
def test_bad_input_exits_2_naming_the_culprit(bad: Case, tmp_path, tiny_model_dir, assets):
    ctx = Ctx(tmp_path, tiny_model_dir, assets)
    args = bad.args(ctx)
    before = files_under(tmp_path)
    started = time.perf_counter()
    result = CliRunner().invoke(app, args)
    seconds = time.perf_counter() - started
    output = result.output

    assert result.exit_code == 2, f"exit {result.exit_code}: {result.exception!r}\n{output}"
    assert "Traceback" not in output
    paragraph = error_paragraph(output)
    assert len(paragraph) <= MAX_ERROR_LINES, output
    if paragraph[0].startswith("error:"):  # our own message: one paragraph, no blank line
        assert all(line.strip() for line in paragraph), output
    text = "\n".join(paragraph)
    for name in bad.names:
        assert name in text, f"{name!r} not named in:\n{text}"
    assert seconds < 30, f"took {seconds:.0f}s: bad input must fail fast"

    # nothing half-written: no adapter, summary, predictions, traces, shard, zip or .tmp
    added = files_under(tmp_path) - before
    leftovers = sorted(str(p) for p in added if p.name not in RECORDS)
    assert not leftovers, f"a failed command left output behind: {leftovers}"
