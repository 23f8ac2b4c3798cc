"""``reasondistill generate``: a teacher writes candidate traces, the grader keeps the right ones.

Most users have ``(problem, answer)`` pairs and a teacher — a local model or an inference
server — but no traces. This stage asks the teacher for ``k`` candidates per problem, with
the chat template and grader suffix that training and evaluation use. Each candidate's
answer is checked against the label with evaluation's checker (:mod:`.evaluate.answers`),
and the verified traces are written as ordinary training rows.

Files in the output directory (``generate.out``, default ``<output_dir>/generated``):

    log.jsonl         one line per finished problem (its kept rows and its counts), appended
                      and fsync'd per problem: a killed run loses only problems in flight,
                      and a rerun skips every problem already in it (a torn line is dropped)
    traces.jsonl      the kept traces as example rows (id, prompt, trace, answer = the label,
                      type, difficulty, problem_id, teacher, sample_index, verified, tokens;
                      a problem with several kept traces gets ids ``<id>-s<k>``): a data file
                      for ``data: {source: jsonl, path: .../traces.jsonl}``
    unverified.jsonl  the problems with no kept trace and why, to retry or send to a
                      stronger teacher
    summary.json      per-type yield (verified / generated), mean trace tokens, failures
    settings.json     what produced the rows; a rerun with other settings is refused

The trace of a candidate is its reasoning: a separate reasoning field if the server sent
one, else the text before ``</think>``, else the text before its final answer box.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from reasondistill.config import RunConfig
from reasondistill.data.example import Example
from reasondistill.errors import ReasondistillError
from reasondistill.evaluate.answers import THINK_CLOSE
from reasondistill.io import append_json_line, atomic_write_json, atomic_write_text

LOG, TRACES, UNVERIFIED, SUMMARY, SETTINGS = (
    "log.jsonl", "traces.jsonl", "unverified.jsonl", "summary.json", "settings.json")


@dataclass(frozen=True)
class Checked:
    """One candidate after checking: its trace, whether it is kept, and why not."""

    sample_index: int
    trace: str
    tokens: int
    verdict: str  # verified | wrong | no_answer | truncated | over_budget | failed


def split_candidate(content: str, reasoning: str | None) -> tuple[str, str]:
    """``(trace, full text to grade)``: the reasoning field, or the ``<think>`` part, or the
    text before the final box."""
    from reasondistill.boxed import iter_boxed

    if reasoning:
        return reasoning.strip(), f"{reasoning}\n{THINK_CLOSE}\n{content}"
    if THINK_CLOSE in content:
        trace = content.rsplit(THINK_CLOSE, 1)[0].replace("<think>", "").strip()
        return trace, content
    spans = list(iter_boxed(content))
    trace = content[:spans[-1][0]].strip() if spans else content.strip()
    return trace, content


def check_candidate(example: Example, candidate, index: int, *, count_tokens, rel_tol: float,
                    integer_tolerance: bool, max_trace_tokens: int | None) -> Checked:
    from reasondistill.evaluate.answers import extract_answer, is_correct

    if candidate.error is not None:
        return Checked(index, "", 0, "failed")
    trace, graded = split_candidate(candidate.content, candidate.reasoning)
    tokens = count_tokens(trace)
    if candidate.truncated:
        return Checked(index, trace, tokens, "truncated")
    predicted = extract_answer(graded)
    if predicted is None:
        return Checked(index, trace, tokens, "no_answer")
    if not is_correct(predicted, example.answer, rel_tol=rel_tol,
                      integer_tolerance=integer_tolerance):
        return Checked(index, trace, tokens, "wrong")
    if not trace:
        return Checked(index, trace, tokens, "no_answer")
    if max_trace_tokens is not None and tokens > max_trace_tokens:
        return Checked(index, trace, tokens, "over_budget")
    return Checked(index, trace, tokens, "verified")


def kept(checked: list[Checked], keep: str, max_per_problem: int | None) -> list[Checked]:
    """The verified candidates to keep: the shortest one, or all (the shortest m)."""
    verified = sorted((c for c in checked if c.verdict == "verified"),
                      key=lambda c: (c.tokens, c.sample_index))
    if keep == "shortest":
        return verified[:1]
    return verified[:max_per_problem] if max_per_problem else verified


def problem_record(example: Example, checked: list[Checked], keep_rows: list[Checked],
                   teacher: str) -> dict[str, Any]:
    several = len(keep_rows) > 1  # ids stay unique: P7-s0, P7-s2 (problem_id says P7)
    rows = [{**example.to_dict(), "id": f"{example.id}-s{c.sample_index}" if several
             else example.id, "problem_id": example.id, "trace": c.trace, "teacher": teacher,
             "sample_index": c.sample_index, "verified": True, "tokens": c.tokens}
            for c in keep_rows]
    verdicts: dict[str, int] = defaultdict(int)
    for c in checked:
        verdicts[c.verdict] += 1
    return {"id": example.id, "type": example.type, "generated": len(checked),
            "verdicts": dict(verdicts), "trace_tokens": [c.tokens for c in checked
                                                         if c.verdict == "verified"],
            "rows": rows}


# --------------------------------------------------------------------------- the log


class ProblemLog:
    """``log.jsonl``: one line per finished problem, appended whole and fsync'd."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def records(self) -> list[dict[str, Any]]:
        """The finished problems, the last record of each id (a problem whose every request
        failed is tried again by a rerun, and its new record follows the old one). A torn
        last line (a kill mid-write) is dropped and the file rewritten without it, so the
        next append starts on a line of its own."""
        from reasondistill.io import read_records

        if not self.path.is_file():
            return []
        records = read_records(self.path)
        if not self.path.read_bytes().endswith(b"\n") and self.path.stat().st_size:
            atomic_write_text(self.path, "".join(json.dumps(r, ensure_ascii=False) + "\n"
                                                 for r in records))
        return list({r["id"]: r for r in records}.values())

    def append(self, record: dict[str, Any]) -> None:
        append_json_line(self.path, record)


# --------------------------------------------------------------------------- outputs


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    def block(group: list[dict]) -> dict[str, Any]:
        generated = sum(r["generated"] for r in group)
        verified = sum(r["verdicts"].get("verified", 0) for r in group)
        lengths = [t for r in group for t in r["trace_tokens"]]
        verdicts: dict[str, int] = defaultdict(int)
        for r in group:
            for verdict, count in r["verdicts"].items():
                verdicts[verdict] += count
        return {"problems": len(group), "generated": generated, "verified": verified,
                "yield": verified / generated if generated else None,
                "problems_with_a_trace": sum(bool(r["rows"]) for r in group),
                "rows_kept": sum(len(r["rows"]) for r in group),
                "mean_trace_tokens": statistics.fmean(lengths) if lengths else None,
                "verdicts": dict(verdicts)}

    by_type: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        by_type[record["type"]].append(record)
    return {**block(records), "by_type": {t: block(g) for t, g in sorted(by_type.items())}}


def write_outputs(out_dir: Path, records: list[dict[str, Any]]) -> dict[str, Any]:
    """``traces.jsonl``, ``unverified.jsonl`` and ``summary.json`` from the log, atomically."""
    traces = "".join(json.dumps(row, ensure_ascii=False) + "\n"
                     for r in records for row in r["rows"])
    unverified = "".join(json.dumps({"id": r["id"], "type": r["type"],
                                     "verdicts": r["verdicts"]}) + "\n"
                         for r in records if not r["rows"])
    atomic_write_text(out_dir / TRACES, traces)
    atomic_write_text(out_dir / UNVERIFIED, unverified)
    summary = summarize(records)
    atomic_write_json(out_dir / SUMMARY, summary)
    return summary


def print_summary(summary: dict[str, Any], console: Console) -> None:
    table = Table(title="teacher traces: yield per type", title_justify="left")
    for column in ("type", "problems", "generated", "verified", "yield", "with a trace",
                   "mean trace tokens", "failed requests"):
        table.add_column(column, justify="left" if column == "type" else "right")

    def row(name, b, end=False):
        y = "—" if b["yield"] is None else f"{b['yield']:.1%}"
        mean = "—" if b["mean_trace_tokens"] is None else f"{b['mean_trace_tokens']:.0f}"
        table.add_row(name, str(b["problems"]), str(b["generated"]), str(b["verified"]), y,
                      str(b["problems_with_a_trace"]), mean,
                      str(b["verdicts"].get("failed", 0)), end_section=end)

    for name, b in summary["by_type"].items():
        row(name, b)
    row("all", summary, end=False)
    console.print(table)


# --------------------------------------------------------------------------- the stage


def generation_settings(cfg: RunConfig, source: str) -> dict[str, Any]:
    g = cfg.generate
    teacher = g.teacher.model_dump(mode="json")  # the key's variable name, never its value
    return {"teacher": teacher, "student_model": cfg.model.name, "data": source,
            "samples": g.samples, "temperature": g.temperature, "top_p": g.top_p,
            "max_new_tokens": g.max_new_tokens, "seed": g.seed, "keep": g.keep,
            "max_per_problem": g.max_per_problem, "max_trace_tokens": g.max_trace_tokens,
            "rel_tol": cfg.eval.rel_tol, "integer_tolerance": cfg.eval.integer_tolerance,
            "format": cfg.format.model_dump(mode="json")}


def candidate_source(cfg: RunConfig, problems: list[Example]):
    """``(name, iterator of (index, candidates))`` for the configured teacher."""
    from reasondistill.data.format import user_message
    from reasondistill.prepare import format_spec

    g, spec = cfg.generate, format_spec(cfg.format)
    if g.teacher.backend == "openai":
        from reasondistill.evaluate.openai_backend import make_openai_backend

        backend = make_openai_backend(g.teacher, g)
        messages = [[user_message(e.prompt, spec)] for e in problems]
        return f"openai:{g.teacher.model}", backend.iter_candidates(messages)
    from reasondistill.evaluate.generate import make_backend
    from reasondistill.evaluate.openai_backend import Candidate
    from reasondistill.tokenize import render_prompt

    if g.samples > 1 and g.temperature <= 0:
        raise ReasondistillError("generate.samples > 1 needs generate.temperature > 0 (greedy "
                                 "decoding would repeat the same candidate)")
    eval_cfg = cfg.eval.model_copy(update={"backend": g.teacher.backend,
                                           "max_new_tokens": g.max_new_tokens,
                                           "temperature": g.temperature,
                                           "num_samples": g.samples})
    model_cfg = cfg.model.model_copy(update={"name": g.teacher.model or cfg.model.name})
    adapter = None
    if g.teacher.adapter:
        from reasondistill.export import find_adapter

        adapter = str(find_adapter(Path(g.teacher.adapter)))
    backend = make_backend(eval_cfg, model_cfg, adapter=adapter, seed=g.seed, top_p=g.top_p)
    prompts = [render_prompt(backend.tokenizer, e.prompt, spec,
                             enable_thinking=cfg.format.enable_thinking) for e in problems]

    def candidates():
        for batch in backend.iter_generate(prompts):
            for index, generations in batch:
                yield index, [Candidate(content=x.text, tokens=x.n_generated_tokens,
                                        truncated=x.truncated) for x in generations]

    return f"{backend.name}:{model_cfg.name}" + (f"+{adapter}" if adapter else ""), candidates()


def run_generate(cfg: RunConfig, *, data=None, limit: int | None = None,
                 out_dir: Path | None = None, console: Console | None = None,
                 progress: bool = True) -> dict[str, Any]:
    """Generate, check and keep traces for the problems of ``data`` (default: the config's
    ``data`` section); resumable. Returns the summary."""
    from tqdm.auto import tqdm

    from reasondistill.data.loaders import load_examples
    from reasondistill.evaluate.runner import check_settings, data_config_for
    from reasondistill.models import load_tokenizer

    console = console or Console(stderr=True)
    if cfg.generate.teacher.backend == "openai":
        from reasondistill.evaluate.openai_backend import check_teacher

        check_teacher(cfg.generate.teacher)  # before any file is read or written
    out_dir = Path(out_dir or cfg.generate.out or Path(cfg.output_dir) / "generated")
    loaded = load_examples(data_config_for(data) if data is not None else cfg.data)
    problems = loaded.examples[:limit] if limit else loaded.examples
    if not problems:
        raise ReasondistillError(f"no problems to generate traces for in {loaded.source}")
    log = ProblemLog(out_dir / LOG)
    records = log.records()
    check_settings(out_dir, generation_settings(cfg, loaded.source), bool(records),
                   what="traces")
    done = {r["id"] for r in records if set(r["verdicts"]) != {"failed"}}
    todo = [e for e in problems if e.id not in done]
    console.print(f"generate: {len(problems)} problems from {loaded.source}"
                  + (f" ({len(problems) - len(todo)} already in {log.path})" if done else ""))
    if todo:
        tokenizer = load_tokenizer(cfg.model.name, trust_remote_code=cfg.model.trust_remote_code)

        def count_tokens(text: str) -> int:
            return len(tokenizer(text, add_special_tokens=False)["input_ids"])

        g = cfg.generate
        teacher, stream = candidate_source(cfg, todo)
        generated_tokens, verified, generated, started = 0, 0, 0, time.perf_counter()
        with tqdm(total=len(todo), unit="problem", desc="generate", disable=not progress) as bar:
            for index, candidates in stream:
                example = todo[index]
                checked = [check_candidate(example, c, k, count_tokens=count_tokens,
                                           rel_tol=cfg.eval.rel_tol,
                                           integer_tolerance=cfg.eval.integer_tolerance,
                                           max_trace_tokens=g.max_trace_tokens)
                           for k, c in enumerate(candidates)]
                record = problem_record(example, checked, kept(checked, g.keep,
                                                               g.max_per_problem), teacher)
                log.append(record)
                records = [r for r in records if r["id"] != record["id"]] + [record]
                generated += len(checked)
                verified += record["verdicts"].get("verified", 0)
                generated_tokens += sum(c.tokens or 0 for c in candidates)
                bar.update(1)
                elapsed = max(time.perf_counter() - started, 1e-9)
                bar.set_postfix(yield_=f"{verified}/{generated}",
                                tok_s=f"{generated_tokens / elapsed:.0f}")
    summary = write_outputs(out_dir, records)
    print_summary(summary, console)
    failed = summary["verdicts"].get("failed", 0)
    if failed:
        console.print(f"[yellow]{failed} candidate requests failed after retries[/]; their "
                      f"problems are in {out_dir / UNVERIFIED} when no other sample verified")
    console.print(f"wrote {out_dir / TRACES} ({summary['rows_kept']} rows) and "
                  f"{out_dir / UNVERIFIED}")
    return summary
