"""Safe by default (issue 15): what the source may call, what a run may write.

1. Static: nothing in ``src/`` loads YAML other than safely, unpickles (``pickle``, a
   ``torch.load`` without ``weights_only=True``, ``numpy.load(allow_pickle=True)``), or turns
   ``trust_remote_code`` on by itself (only a config value is passed on).
2. A run (``generate`` against a local OpenAI-compatible server, ``train``, two ``eval``s and
   ``report``, all through the CLI) with fake secrets in the environment writes none of them
   to any file, nor to its console output.
3. Its reports and summaries name no absolute path of this machine: paths inside the run
   directory are recorded relative to it, inputs as the config gave them
   (``reasondistill.paths.run_relative``).
"""

from __future__ import annotations

import ast
import json
import logging
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from test_train import write_arithmetic_rows
from typer.testing import CliRunner

from reasondistill.cli import app

SRC = Path(__file__).parents[1] / "src" / "reasondistill"

# --------------------------------------------------------------------------- 1. static checks

SAFE_YAML = {"safe_load", "safe_load_all", "safe_dump", "safe_dump_all", "YAMLError"}
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "shelve", "joblib",
                  "marshal"}


def _dotted(node: ast.AST) -> str:
    """``a.b.c`` for a Name/Attribute chain, else ''."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def _is_true(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def unsafe_calls(source: str) -> list[str]:
    """Every unsafe-loading or remote-code construct in ``source``, as ``line: what``."""
    problems = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PICKLE_MODULES:
                    problems.append(f"{line}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            module = (node.module or "").split(".")[0]
            names = {alias.name for alias in node.names}
            if module in PICKLE_MODULES:
                problems.append(f"{line}: from {node.module} import ...")
            if module == "yaml" and names - SAFE_YAML:
                problems.append(f"{line}: from yaml import {sorted(names - SAFE_YAML)}")
            if module == "torch" and "load" in names:
                problems.append(f"{line}: from torch import load (use torch.load(..., "
                                "weights_only=True) so the check can see it)")
        elif isinstance(node, ast.Attribute):
            name = _dotted(node)
            if name.startswith("yaml.") and name.split(".")[1] not in SAFE_YAML:
                problems.append(f"{line}: {name} (only yaml.safe_load / safe_dump)")
            if name in ("pd.read_pickle", "pandas.read_pickle"):
                problems.append(f"{line}: {name}")
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            keywords = {k.arg: k.value for k in node.keywords if k.arg}
            if name == "torch.load" and not _is_true(keywords.get("weights_only")):
                problems.append(f"{line}: torch.load without weights_only=True")
            if name in ("np.load", "numpy.load") and _is_true(keywords.get("allow_pickle")):
                problems.append(f"{line}: {name}(allow_pickle=True)")
            for keyword in node.keywords:
                if keyword.arg is None and isinstance(keyword.value, ast.Dict):
                    for key, value in zip(keyword.value.keys, keyword.value.values):
                        if isinstance(key, ast.Constant) and key.value == "trust_remote_code" \
                                and not _from_config(value):
                            problems.append(f"{line}: **{{'trust_remote_code': ...}} not "
                                            "from a config")
            value = keywords.get("trust_remote_code")
            if value is not None and not _from_config(value):
                problems.append(f"{line}: trust_remote_code={ast.unparse(value)} is not "
                                "taken from a config or a parameter")
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            positional = args.posonlyargs + args.args
            pairs = list(zip(positional[len(positional) - len(args.defaults):], args.defaults))
            pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
            for arg, default in pairs:
                if arg.arg == "trust_remote_code" and not (
                        isinstance(default, ast.Constant) and default.value is False):
                    problems.append(f"{line}: {node.name}(trust_remote_code="
                                    f"{ast.unparse(default)}): the default must be False")
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) \
                and node.target.id == "trust_remote_code" and node.value is not None \
                and not (isinstance(node.value, ast.Constant) and node.value.value is False):
            problems.append(f"{line}: a config field trust_remote_code defaulting to "
                            f"{ast.unparse(node.value)}")
    return problems


def _from_config(value: ast.AST) -> bool:
    """``cfg.trust_remote_code`` / ``teacher_cfg.trust_remote_code`` / a parameter named
    ``trust_remote_code``: passed on, never decided here."""
    if isinstance(value, ast.Attribute):
        return value.attr == "trust_remote_code"
    return isinstance(value, ast.Name) and value.id == "trust_remote_code"


def test_the_static_check_catches_what_it_looks_for():
    bad = """
import pickle
import yaml
from yaml import load, FullLoader
from torch import load
def f(path, trust_remote_code=True):
    yaml.load(open(path), Loader=yaml.FullLoader)
    yaml.unsafe_load("x")
    torch.load(path)
    torch.load(path, weights_only=False)
    np.load(path, allow_pickle=True)
    AutoModel.from_pretrained(path, trust_remote_code=True)
    AutoModel.from_pretrained(path, **{"trust_remote_code": True})
    pd.read_pickle(path)
class C:
    trust_remote_code: bool = True
"""
    found = "\n".join(unsafe_calls(bad))
    for needle in ("import pickle", "from yaml import", "from torch import load",
                   "yaml.load", "yaml.unsafe_load", "yaml.FullLoader",
                   "torch.load without weights_only=True", "allow_pickle=True",
                   "trust_remote_code=True is not", "**{'trust_remote_code'",
                   "pd.read_pickle", "f(trust_remote_code=True)", "defaulting to True"):
        assert needle in found, needle
    assert "9: torch.load" in found and "10: torch.load" in found
    good = """
import yaml
def f(path, cfg, trust_remote_code=False):
    yaml.safe_load(path); yaml.safe_dump({})
    torch.load(path, weights_only=True, map_location="cpu")
    AutoModel.from_pretrained(path, trust_remote_code=cfg.model.trust_remote_code)
    AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
"""
    assert unsafe_calls(good) == []


def test_the_source_loads_safely_and_never_trusts_remote_code_by_itself():
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 30
    problems = [f"{path.relative_to(SRC.parent)}:{problem}" for path in files
                for problem in unsafe_calls(path.read_text(encoding="utf-8"))]
    assert problems == []


def test_trust_remote_code_comes_from_the_config_and_defaults_to_off():
    from reasondistill.config import ModelConfig, TeacherConfig

    assert ModelConfig().trust_remote_code is False
    assert TeacherConfig().trust_remote_code is False
    uses = [path for path in SRC.rglob("*.py") if "trust_remote_code=" in path.read_text()]
    assert uses, "the static check above would be vacuous"


# --------------------------------------------------------------------------- 2 and 3: a run

SECRETS = {
    "OPENAI_API_KEY": "sk-rd-safety-5e3c1b7a9d",  # generate.teacher.api_key_env's default
    "WANDB_API_KEY": "wandb-rd-safety-0f9e8d7c6b5a",
    "HF_TOKEN": "hf_rdSafetyToken4242",
    "HUGGING_FACE_HUB_TOKEN": "hf_rdSafetyLegacy1717",
}


class Teacher(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint that answers every problem with a boxed guess and
    remembers the Authorization headers it was sent."""

    auth: list = []

    def log_message(self, *args):
        pass

    def do_POST(self):  # noqa: N802 — the stdlib's name
        self.rfile.read(int(self.headers["Content-Length"]))
        self.auth.append(self.headers.get("Authorization"))
        data = json.dumps({"choices": [{"message": {"content": "<think>\nAdd.\n</think>\n"
                                                                "\\boxed{7}"},
                                        "finish_reason": "stop"}],
                           "usage": {"completion_tokens": 5}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def teacher_url():
    Teacher.auth = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Teacher)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def invoke(args: list[str]) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_model_dir, teacher_url):
    """A run directory made by the CLI with fake secrets set. Inputs are given relative to
    the working directory (as a user would), ``output_dir`` absolute."""
    home = tmp_path_factory.mktemp("safety")
    run = home / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(home)
        for name, value in SECRETS.items():
            patch.setenv(name, value)
        write_arithmetic_rows(home / "rows.jsonl", n=16)
        write_arithmetic_rows(home / "held.jsonl", n=4, seed=1)
        config = {
            "output_dir": str(run),
            "model": {"name": os.path.relpath(tiny_model_dir, home)},
            "data": {"source": "jsonl", "path": "rows.jsonl"},
            "format": {"max_length": 128},
            "lora": {"r": 4, "alpha": 8},
            "train": {"phases": ["train"], "per_device_batch_size": 4, "logging_steps": 1,
                      "save_steps": 1, "bf16": False, "train": {"max_steps": 2}},
            "eval": {"data": {"source": "jsonl", "path": "held.jsonl"}, "max_new_tokens": 6,
                     "batch_size": 4},
            "tracking": {"report_to": ["tensorboard"]},
            "generate": {"teacher": {"backend": "openai", "url": teacher_url,
                                     "model": "scripted"},
                         "samples": 1, "concurrency": 1, "retries": 0, "timeout_s": 10},
        }
        (home / "run.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
        logs = logging.getLogger()
        captured: list[str] = []
        handler = logging.Handler(logging.DEBUG)
        handler.emit = lambda record: captured.append(handler.format(record))
        logs.addHandler(handler)
        try:
            outputs = [invoke(["generate", "run.yaml", "--limit", "3"]),
                       invoke(["train", "run.yaml"]),
                       invoke(["eval", "run.yaml"]),
                       invoke(["eval", "run.yaml", "--base"]),
                       invoke(["report", str(run)])]
        finally:
            logs.removeHandler(handler)
    return {"home": home, "run": run, "console": "\n".join(outputs + captured)}


def test_the_teacher_key_is_read_from_the_environment_and_sent(finished_run):
    assert Teacher.auth and set(Teacher.auth) == {f"Bearer {SECRETS['OPENAI_API_KEY']}"}


def test_no_secret_is_written_to_any_file_or_printed(finished_run):
    files = [p for p in finished_run["home"].rglob("*") if p.is_file()]
    kinds = {p.relative_to(finished_run["run"]).parts[0] for p in files
             if finished_run["run"] in p.parents}
    # every writer ran: generation, tensorboard, checkpoints, adapters, evals, the report
    assert {"generated", "tensorboard", "checkpoints", "adapter", "eval", "report.md",
            "metrics.jsonl", "config.yaml"} <= kinds, kinds
    for path in files:
        data = path.read_bytes()
        for name, value in SECRETS.items():
            assert value.encode() not in data, f"{name}'s value is written in {path}"
    for name, value in SECRETS.items():
        assert value not in finished_run["console"], f"{name}'s value is printed"


# Reports, summaries and the records beside them: what a user shares or commits.
RECORDS = ["train_summary.json", "data_report.json", "metrics.jsonl",
           "eval/after/summary.json", "eval/after/settings.json",
           "eval/before/summary.json", "eval/before/settings.json",
           "generated/summary.json", "generated/settings.json", "report.md", "report.html"]


def machine_prefixes(tmp_path_factory) -> list[str]:
    base = tmp_path_factory.getbasetemp()
    return sorted({str(base), str(base.resolve()), str(Path.cwd().resolve())})


def test_reports_and_summaries_name_no_absolute_path_of_this_machine(finished_run,
                                                                      tmp_path_factory):
    run = finished_run["run"]
    for name in RECORDS:
        text = (run / name).read_text(encoding="utf-8")
        for prefix in machine_prefixes(tmp_path_factory):
            assert prefix not in text, f"{name} records an absolute path under {prefix}"
    after = json.loads((run / "eval" / "after" / "settings.json").read_text())
    assert after["adapter"] == "adapter"  # inside the run directory: relative to it
    assert after["data"] == "held.jsonl"  # an input: as the config gave it
    assert "Runs: run (.)" in (run / "report.md").read_text()


def test_an_evaluation_recorded_with_an_absolute_adapter_path_still_resumes(finished_run):
    """settings.json from before paths were recorded relative: same adapter, same settings."""
    import shutil

    home, run = finished_run["home"], finished_run["run"]
    legacy = run / "eval" / "legacy"
    shutil.copytree(run / "eval" / "after", legacy)
    settings = json.loads((legacy / "settings.json").read_text())
    settings["adapter"] = str((run / "adapter").resolve())
    (legacy / "settings.json").write_text(json.dumps(settings))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(home)
        output = invoke(["eval", "run.yaml", "--out", str(legacy)])
    assert "4 already in" in output
    assert json.loads((legacy / "settings.json").read_text())["adapter"] == "adapter"


def test_run_relative_paths(tmp_path):
    from reasondistill.paths import run_relative

    run = tmp_path / "run"
    assert run_relative(run / "adapter", run) == "adapter"
    assert run_relative(run / "eval" / "after", str(run)) == "eval/after"
    assert run_relative(run, run) == "."
    assert run_relative("data/rows.jsonl", run) == "data/rows.jsonl"  # an input, as given
    assert run_relative(tmp_path / "rows.jsonl", run) == str(tmp_path / "rows.jsonl")


def test_eval_settings_name_the_adapter_relative_to_the_run_only_inside_it(tmp_path):
    from reasondistill.config import parse_config
    from reasondistill.evaluate.runner import eval_settings

    def adapter(run: str, out_dir: Path) -> str:
        cfg = parse_config({"output_dir": str(tmp_path / run)})
        return eval_settings(cfg, "m", str(tmp_path / run / "adapter"), "d",
                             out_dir=out_dir)["adapter"]

    assert adapter("a", tmp_path / "a" / "eval" / "after") == "adapter"
    # One --out outside both runs: the two adapters must not look alike (resume guard).
    shared = tmp_path / "shared-eval"
    assert adapter("a", shared) != adapter("b", shared)


# --------------------------------------------------------------------------- 3: a sweep


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory, tiny_model_dir):
    """A one-point sweep (the base model, evaluated without training), paths relative."""
    from rich.console import Console

    from reasondistill.sweep import run_sweep

    home = tmp_path_factory.mktemp("safety-sweep")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(home)
        write_arithmetic_rows(home / "held.jsonl", n=4, seed=1)
        base = {"model": {"name": os.path.relpath(tiny_model_dir, home)},
                "data": {"source": "jsonl", "path": "held.jsonl"},
                "format": {"max_length": 128},
                "eval": {"data": {"source": "jsonl", "path": "held.jsonl"},
                         "max_new_tokens": 4, "batch_size": 4}}
        (home / "base.yaml").write_text(yaml.safe_dump(base), encoding="utf-8")
        (home / "sweep.yaml").write_text(yaml.safe_dump(
            {"base": "base.yaml", "output_dir": "sweep",
             "arms": {"zero-shot": {"train": False}}, "seeds": [0]}), encoding="utf-8")
        results = run_sweep(Path("sweep.yaml"), console=Console(quiet=True))
    assert results["finished"] == 1
    return home / "sweep"


def test_sweep_results_and_report_name_no_absolute_path(finished_sweep, tmp_path_factory):
    for name in ("results.json", "report/report.md"):
        text = (finished_sweep / name).read_text(encoding="utf-8")
        for prefix in machine_prefixes(tmp_path_factory):
            assert prefix not in text, f"{name} records an absolute path under {prefix}"


def test_sweep_results_record_each_run_relative_to_the_sweep_directory(finished_sweep):
    results = json.loads((finished_sweep / "results.json").read_text())
    assert [r["run_dir"] for r in results["results"]] == ["runs/zero-shot__seed0"]
