"""``reasondistill generate``: candidates from a teacher, checked against the label, kept as rows.

The HTTP tests start a real OpenAI-compatible server on 127.0.0.1 that answers from a script:
correct, wrong, reasoning-field, truncated, malformed, slow and failing responses.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from reasondistill.config import parse_config
from reasondistill.evaluate.openai_backend import OpenAIBackend
from reasondistill.traces import LOG, split_candidate

SECRET = "sk-test-7f3a91c2-never-written"

# problem -> what the server does for sample k (one entry per sample)
SCRIPT = {
    "P0": ["correct", "wrong", "correct_long"],
    "P1": ["wrong", "wrong", "wrong"],
    "P2": ["reasoning", "truncated", "no_box"],
    "P3": ["malformed_then_correct", "fail500_then_correct", "slow_then_correct"],
    "P4": ["always500", "always500", "always500"],
}
ANSWERS = {"P0": "42", "P1": "7", "P2": "1,000", "P3": "12", "P4": "3"}


class ScriptedModel(BaseHTTPRequestHandler):
    calls: dict = {}
    auth: list = []
    lock = threading.Lock()

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_POST(self):  # noqa: N802 — the stdlib's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        content = body["messages"][0]["content"]
        problem = next(p for p in SCRIPT if f"Problem {p}:" in content)
        k = body["seed"] - 100
        kind = SCRIPT[problem][k]
        with self.lock:
            attempt = self.calls[(problem, k)] = self.calls.get((problem, k), 0) + 1
            self.auth.append(self.headers.get("Authorization"))
        answer = ANSWERS[problem]
        if kind == "always500" or (kind == "fail500_then_correct" and attempt <= 2):
            return self._send(500, b'{"error": "overloaded"}')
        if kind == "malformed_then_correct" and attempt == 1:
            return self._send(200, b'{"choices": [{"mess')
        if kind == "slow_then_correct" and attempt == 1:
            threading.Event().wait(1.0)  # past the client's timeout
        message, finish = {"content": f"<think>\nAdd them up.\n</think>\n\\boxed{{{answer}}}"}, "stop"
        if kind == "wrong":
            message = {"content": "<think>\nGuess.\n</think>\n\\boxed{999}"}
        elif kind == "correct_long":
            message = {"content": "<think>\n" + "Check every step carefully. " * 20
                       + f"\n</think>\n\\boxed{{{answer}}}"}
        elif kind == "reasoning":
            message = {"content": f"The answer is \\boxed{{{answer.replace(',', '')}}}",
                       "reasoning_content": "Count the thousands: one thousand."}
        elif kind == "truncated":
            message, finish = {"content": f"<think>\nLong... \\boxed{{{answer}}}"}, "length"
        elif kind == "no_box":
            message = {"content": "I do not know."}
        payload = {"choices": [{"message": message, "finish_reason": finish}],
                   "usage": {"completion_tokens": 17}}
        self._send(200, json.dumps(payload).encode())

    def _send(self, status, data):
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout)


@pytest.fixture
def server():
    ScriptedModel.calls, ScriptedModel.auth = {}, []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), ScriptedModel)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setattr(OpenAIBackend, "BACKOFF_S", 0.01)
    monkeypatch.setenv("RD_TEST_KEY", SECRET)


def problems_file(tmp_path, ids=SCRIPT):
    rows = [{"id": p, "prompt": f"Problem {p}: what is it?", "answer": ANSWERS[p],
             "type": "even" if int(p[1]) % 2 == 0 else "odd"} for p in ids]
    path = tmp_path / "problems.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def config(tmp_path, url, tiny_model_dir, **generate):
    raw = {"output_dir": str(tmp_path / "run"), "model": {"name": str(tiny_model_dir)},
           "data": {"source": "jsonl", "path": str(problems_file(tmp_path))},
           "generate": {"teacher": {"backend": "openai", "url": url, "model": "scripted",
                                    "api_key_env": "RD_TEST_KEY"},
                        "samples": 3, "seed": 100, "timeout_s": 0.5, "retries": 3,
                        "concurrency": 3, **generate}}
    return parse_config(raw)


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def run(cfg, **kw):
    from rich.console import Console

    from reasondistill.traces import run_generate

    return run_generate(cfg, console=Console(quiet=True), progress=False, **kw)


def test_the_trace_is_the_reasoning_field_or_the_think_part_or_before_the_box():
    assert split_candidate("\\boxed{5}", "two plus three")[0] == "two plus three"
    assert split_candidate("<think>\nfirst\n</think>\n\\boxed{5}", None) == (
        "first", "<think>\nfirst\n</think>\n\\boxed{5}")
    assert split_candidate("2 + 3 = 5, so \\boxed{5}", None)[0] == "2 + 3 = 5, so"


def test_verification_keeps_exactly_the_correct_candidates(tmp_path, server, tiny_model_dir):
    cfg = config(tmp_path, server, tiny_model_dir, keep="all")
    summary = run(cfg)
    out = tmp_path / "run" / "generated"
    rows = read_jsonl(out / "traces.jsonl")
    kept = sorted((r["problem_id"], r["sample_index"]) for r in rows)
    # P0: samples 0 and 2 correct; P2: the reasoning field (1000 == "1,000"); P3: all three,
    # each after a malformed body, two HTTP 500s and a timeout were retried
    assert kept == [("P0", 0), ("P0", 2), ("P2", 0), ("P3", 0), ("P3", 1), ("P3", 2)]
    assert all(r["verified"] and r["teacher"] == "openai:scripted" and r["answer"] ==
               ANSWERS[r["problem_id"]] and r["tokens"] > 0 for r in rows)
    assert [r["id"] for r in rows if r["problem_id"] == "P0"] == ["P0-s0", "P0-s2"]
    assert next(r for r in rows if r["id"] == "P2")["trace"] == "Count the thousands: one thousand."
    assert {r["id"] for r in read_jsonl(out / "unverified.jsonl")} == {"P1", "P4"}
    assert summary["generated"] == 15 and summary["verified"] == 6
    assert summary["verdicts"] == {"verified": 6, "wrong": 4, "truncated": 1, "no_answer": 1,
                                   "failed": 3}
    assert summary["by_type"]["even"]["yield"] == pytest.approx(3 / 9)
    assert ScriptedModel.calls[("P4", 0)] == 4  # 1 try + 3 retries, then reported failed
    assert ScriptedModel.calls[("P3", 1)] == 3
    # the rows are training data
    from reasondistill.config import DataConfig
    from reasondistill.data.loaders import load_examples

    loaded = load_examples(DataConfig(source="jsonl", path=str(out / "traces.jsonl")))
    assert len(loaded.examples) == 6 and loaded.examples[0].trace


def test_keep_shortest_and_the_token_budget(tmp_path, server, tiny_model_dir):
    run(config(tmp_path, server, tiny_model_dir, keep="shortest"))
    rows = read_jsonl(tmp_path / "run" / "generated" / "traces.jsonl")
    assert [(r["id"], r["sample_index"]) for r in rows if r["id"] == "P0"] == [("P0", 0)]

    budget = tmp_path / "budget"
    summary = run(config(tmp_path, server, tiny_model_dir, keep="all", max_trace_tokens=30),
                  out_dir=budget)
    assert summary["verdicts"]["over_budget"] == 1  # P0's long trace
    assert ("P0", 2) not in {(r["id"], r["sample_index"])
                             for r in read_jsonl(budget / "traces.jsonl")}


def test_a_rerun_skips_finished_problems_and_retries_failed_ones(tmp_path, server,
                                                                 tiny_model_dir):
    cfg = config(tmp_path, server, tiny_model_dir)
    run(cfg, limit=2)
    first = dict(ScriptedModel.calls)
    log = tmp_path / "run" / "generated" / LOG
    with log.open("a") as handle:
        handle.write('{"id": "P2", "type": "ev')  # a kill in the middle of a line
    summary = run(cfg)
    assert summary["problems"] == 5
    assert all(ScriptedModel.calls[key] == count for key, count in first.items())  # no redo
    assert ScriptedModel.calls[("P2", 0)] == 1  # the torn line did not count as done
    assert ScriptedModel.calls[("P4", 0)] == 4
    run(cfg)  # P4 failed every request: a rerun tries it again, nothing else
    assert ScriptedModel.calls[("P4", 0)] == 8 and ScriptedModel.calls[("P0", 0)] == 1
    ids = [r["id"] for r in read_jsonl(log)]
    assert ids.count("P4") == 2 and ids.count("P0") == 1
    assert [r["id"] for r in read_jsonl(tmp_path / "run" / "generated" /
                                        "unverified.jsonl")].count("P4") == 1


def test_other_settings_are_refused_on_rerun(tmp_path, server, tiny_model_dir):
    from reasondistill.errors import ReasondistillError

    run(config(tmp_path, server, tiny_model_dir), limit=1)
    with pytest.raises(ReasondistillError, match="temperature"):
        run(config(tmp_path, server, tiny_model_dir, temperature=0.2))


def test_the_api_key_is_sent_and_never_written(tmp_path, server, tiny_model_dir):
    run(config(tmp_path, server, tiny_model_dir))
    assert set(ScriptedModel.auth) == {f"Bearer {SECRET}"}
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) >= 6
    for path in written:
        assert SECRET.encode() not in path.read_bytes(), path


def test_the_cli_generates_from_a_config(tmp_path, server, tiny_model_dir):
    from typer.testing import CliRunner

    from reasondistill.cli import app

    cfg = config(tmp_path, server, tiny_model_dir)
    path = tmp_path / "gen.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json", exclude_unset=True)))
    result = CliRunner().invoke(app, ["generate", str(path), "--limit", "3"])
    assert result.exit_code == 0, result.output
    assert len(read_jsonl(tmp_path / "run" / "generated" / LOG)) == 3
    bad = CliRunner().invoke(app, ["generate", str(path), "--set", "generate.teacher.url=null"])
    assert bad.exit_code == 2 and "generate.teacher.url" in bad.output


def test_a_local_model_teacher(tmp_path, tiny_model_dir):
    """The transformers backend (a tiny random model): every candidate is checked and the
    outcome recorded, whatever it is."""
    raw = {"output_dir": str(tmp_path / "run"), "model": {"name": str(tiny_model_dir)},
           "data": {"source": "jsonl", "path": str(problems_file(tmp_path, ["P0", "P1"]))},
           "generate": {"teacher": {"backend": "transformers"}, "samples": 2,
                        "max_new_tokens": 8}}
    summary = run(parse_config(raw))
    assert summary["problems"] == 2 and summary["generated"] == 4
    assert sum(summary["verdicts"].values()) == 4
