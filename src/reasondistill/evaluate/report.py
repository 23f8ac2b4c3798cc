"""``report.md`` + ``report.html`` for one or more run directories.

A run directory may hold (every piece optional, but not all missing)::

    config.yaml                    the resolved config (hard types for the comparison)
    train_summary.json             minutes per phase (and the layer similarity, distilling)
    metrics.jsonl                  one record per logging step → training curves; latent runs
                                   add a ``similarity: before|after`` record each → heat map
    eval/<name>/summary.json       metrics.summarize(...) of that evaluation
    eval/<name>/predictions.jsonl  its rows (summarised here when summary.json is missing)

The report is assembled once as a list of blocks (headings, paragraphs, tables, figures)
and rendered twice: Markdown that links ``plots/*.png`` next to it, and a self-contained
HTML page with the same PNGs embedded as base64 data URIs (opens from disk, no server).
With a ``before`` and an ``after`` evaluation, tables show after − before deltas.
"""

from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reasondistill.errors import DataError, ReasondistillError
from reasondistill.evaluate import plots
from reasondistill.evaluate.metrics import ERROR_KINDS, accuracy_block, summarize
from reasondistill.io import atomic_write_bytes, atomic_write_text, read_records
from reasondistill.paths import run_relative

BEFORE, AFTER = "before", "after"


# --------------------------------------------------------------------------- loading


@dataclass
class EvalResult:
    name: str
    summary: dict[str, Any]


@dataclass
class RunResult:
    name: str
    path: Path
    metrics: list[dict[str, Any]] = field(default_factory=list)
    evals: dict[str, EvalResult] = field(default_factory=dict)
    hard_types: list[str] = field(default_factory=list)
    train_minutes: float | None = None
    similarity: dict[str, Any] = field(default_factory=dict)  # before/after → measurement

    @property
    def primary_eval(self) -> EvalResult | None:
        """``after`` when present, else the last evaluation by name: the one a comparison
        across runs shows."""
        if AFTER in self.evals:
            return self.evals[AFTER]
        return self.evals[sorted(self.evals)[-1]] if self.evals else None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(f"not valid JSON: {error.msg} (line {error.lineno})",
                        file=str(path)) from None
    if not isinstance(value, dict):
        raise DataError("expected a JSON object", file=str(path))
    return value


def _load_eval(directory: Path) -> EvalResult | None:
    summary_path, predictions_path = directory / "summary.json", directory / "predictions.jsonl"
    if summary_path.is_file():
        return EvalResult(directory.name, _read_json(summary_path))
    if predictions_path.is_file():
        return EvalResult(directory.name, summarize(read_records(predictions_path)))
    return None


def _hard_types(run_dir: Path) -> list[str]:
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        return []
    from reasondistill.config import load_config

    return list(load_config(config_path).train.hard_types)


def _train_minutes(run_dir: Path, metrics: list[dict[str, Any]]) -> float | None:
    summary_path = run_dir / "train_summary.json"
    if summary_path.is_file():
        minutes = _read_json(summary_path).get("train_minutes")
        if isinstance(minutes, (int, float)):
            return float(minutes)
    runtimes = [r["train_runtime"] for r in metrics if isinstance(r.get("train_runtime"),
                                                                   (int, float))]
    return sum(runtimes) / 60 if runtimes else None


def _similarity(run_dir: Path, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The layer similarity (``before``/``after``) of a latent run: ``train_summary.json``'s,
    else the last ``similarity`` records of ``metrics.jsonl`` (a run still training)."""
    summary_path = run_dir / "train_summary.json"
    if summary_path.is_file():
        stored = _read_json(summary_path).get("similarity")
        if isinstance(stored, dict) and stored:
            return {k: v for k, v in stored.items() if isinstance(v, dict)}
    return {r["similarity"]: r for r in records if r.get("similarity") in (BEFORE, AFTER)}


def load_run(run_dir: Path, name: str | None = None) -> RunResult:
    """Everything the report needs from one run directory; missing pieces are left empty,
    a directory with nothing to report is a :class:`ReasondistillError`."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReasondistillError(f"run directory not found: {run_dir}")
    metrics_path = run_dir / "metrics.jsonl"
    records = read_records(metrics_path) if metrics_path.is_file() else []
    metrics = [r for r in records if "similarity" not in r]  # the logging steps
    evals = {}
    eval_root = run_dir / "eval"
    if eval_root.is_dir():
        for directory in sorted(p for p in eval_root.iterdir() if p.is_dir()):
            loaded = _load_eval(directory)
            if loaded is not None:
                evals[loaded.name] = loaded
    if not records and not evals:
        raise ReasondistillError(
            f"{run_dir}: nothing to report — no metrics.jsonl records and no "
            "eval/<name>/summary.json or eval/<name>/predictions.jsonl"
        )
    return RunResult(name=name or run_dir.name, path=run_dir, metrics=metrics,
                     evals=_ordered(evals), hard_types=_hard_types(run_dir),
                     train_minutes=_train_minutes(run_dir, metrics),
                     similarity=_similarity(run_dir, records))


def _ordered(evals: dict[str, EvalResult]) -> dict[str, EvalResult]:
    """``before``, then ``after``, then the rest by name: the order tables read in."""
    rank = {BEFORE: 0, AFTER: 1}
    return {k: evals[k] for k in sorted(evals, key=lambda k: (rank.get(k, 2), k))}


def _run_names(run_dirs: list[Path]) -> list[str]:
    """Directory names, widened with parents until they are unique (a/run vs b/run)."""
    paths = [Path(p).resolve() for p in run_dirs]
    depth = 1
    while True:
        names = ["/".join(p.parts[-depth:]) for p in paths]
        if len(set(names)) == len(names) or depth >= max(len(p.parts) for p in paths):
            return names
        depth += 1


# --------------------------------------------------------------------------- document


@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Paragraph:
    text: str


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass
class Figure:
    filename: str
    caption: str
    png: bytes


Block = Heading | Paragraph | Table | Figure


def to_markdown(blocks: list[Block], plot_dir: str) -> str:
    out = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append("#" * block.level + " " + block.text)
        elif isinstance(block, Paragraph):
            out.append(block.text)
        elif isinstance(block, Table):
            cell = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
            out.append("\n".join(
                ["| " + " | ".join(cell(h) for h in block.header) + " |",
                 "|" + "|".join("---" for _ in block.header) + "|"]
                + ["| " + " | ".join(cell(c) for c in row) + " |" for row in block.rows]))
        elif isinstance(block, Figure):
            out.append(f"![{block.caption}]({plot_dir}/{block.filename})")
    return "\n\n".join(out) + "\n"


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
figure { margin: 1em 0; }
figure img { max-width: 100%; }
figcaption { color: #555; font-size: 0.9em; }
code { background: #f6f6f6; }
"""


def to_html(blocks: list[Block], title: str) -> str:
    esc = html.escape
    out = [f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{esc(title)}</title>"
           f"<style>{_CSS}</style></head><body>"]
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"<h{block.level}>{esc(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            out.append(f"<p>{esc(block.text)}</p>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{esc(str(h))}</th>" for h in block.header)
            body = "".join("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>"
                           for row in block.rows)
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif isinstance(block, Figure):
            data = base64.b64encode(block.png).decode("ascii")
            out.append(f"<figure><img src='data:image/png;base64,{data}' "
                       f"alt='{esc(block.caption)}'><figcaption>{esc(block.caption)}"
                       "</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- formatting


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def _with_ci(value: float | None, ci: list[float] | None) -> str:
    if value is None:
        return "—"
    return f"{_pct(value)} [{100 * ci[0]:.1f}–{100 * ci[1]:.1f}]" if ci else _pct(value)


def _block_text(block: dict[str, Any] | None) -> str:
    if not block:
        return "—"
    return f"{_with_ci(block.get('accuracy'), block.get('ci'))} (n={block.get('n', 0)})"


def _delta(before: float | None, after: float | None) -> str:
    if before is None or after is None:
        return "—"
    return f"{100 * (after - before):+.1f} pp"


def _num(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "run"


def hard_type_block(summary: dict[str, Any], hard_types: list[str]) -> dict[str, Any] | None:
    """Accuracy pooled over the hard types present in ``summary["by_type"]``, or None."""
    present = [summary.get("by_type", {})[t] for t in hard_types
               if t in summary.get("by_type", {})]
    if not present:
        return None
    return accuracy_block(sum(b["correct"] for b in present), sum(b["n"] for b in present))


# --------------------------------------------------------------------------- sections


def _comparison(runs: list[RunResult]) -> list[Block]:
    blocks: list[Block] = [
        Heading(2, "Comparison"),
        Paragraph("One row per run and evaluation. Accuracy shows the 95% Wilson interval; "
                  "hard-type accuracy pools the run's train.hard_types."),
    ]
    rows = []
    for run in runs:
        for ev in run.evals.values() or [None]:
            s = ev.summary if ev else {}
            rows.append([
                run.name, ev.name if ev else "—", str(s.get("n", "—")),
                _with_ci(s.get("accuracy"), s.get("accuracy_ci")), _pct(s.get("parse_rate")),
                _block_text(hard_type_block(s, run.hard_types)) if ev and run.hard_types
                else "—",
                _num(s.get("mean_generated_tokens")), _num(run.train_minutes),
            ])
    blocks.append(Table(["run", "eval", "n", "accuracy [95% CI]", "parse rate",
                         "hard-type accuracy", "mean generated tokens", "train minutes"], rows))
    blocks += _similarity_comparison(runs)
    series = {f"{run.name} ({run.primary_eval.name})": run.primary_eval.summary.get("by_type", {})
              for run in runs if run.primary_eval}
    if series:
        blocks.append(Figure("comparison_by_type.png",
                             "Accuracy per type, each run's primary evaluation (after if present)",
                             plots.accuracy_bars(series, title="Accuracy per type by run",
                                                 xlabel="problem type")))
    return blocks


def _training(run: RunResult, slug: str) -> list[Block]:
    blocks: list[Block] = [Heading(3, "Training")]
    if not run.metrics:
        return blocks + [Paragraph("No metrics.jsonl: an evaluation-only run.")]
    rows = []
    for phase in dict.fromkeys(str(r.get("phase") or "train") for r in run.metrics):
        records = [r for r in run.metrics if str(r.get("phase") or "train") == phase]
        losses = [r["loss"] for r in records if isinstance(r.get("loss"), (int, float))]
        speeds = [r["tokens_per_s"] for r in records
                  if isinstance(r.get("tokens_per_s"), (int, float))]
        steps = [r["step"] for r in records if isinstance(r.get("step"), (int, float))]
        first_loss, last_loss = (losses[0], losses[-1]) if losses else (None, None)
        rows.append([phase, str(len(records)), str(max(steps)) if steps else "—",
                     _num(first_loss, 4), _num(last_loss, 4),
                     _num(sum(speeds) / len(speeds) if speeds else None, 0)])
    blocks.append(Table(["phase", "log records", "last step", "first loss", "last loss",
                         "mean tokens/s"], rows))
    if run.train_minutes is not None:
        blocks.append(Paragraph(f"Training time: {run.train_minutes:.1f} minutes."))
    png = plots.training_curves(run.metrics)
    if png is not None:
        blocks.append(Figure(f"{slug}_training.png", f"{run.name}: training curves per phase",
                             png))
    return blocks


SIMILARITY_COLUMNS = (("cosine", "cosine"), ("nmse", "nMSE"), ("cka", "CKA"))


def _similarity_pairs(run: RunResult) -> list[tuple[int, int]]:
    return list(dict.fromkeys((p["student"], p["teacher"]) for m in run.similarity.values()
                              for p in m.get("pairs") or []))


def _mean_metric(measurement: dict[str, Any] | None, key: str) -> float | None:
    values = [p[key] for p in (measurement or {}).get("pairs") or []
              if isinstance(p.get(key), (int, float))]
    return sum(values) / len(values) if values else None


def _layer_similarity(run: RunResult, slug: str) -> list[Block]:
    """The latent run's layer similarity student ↔ teacher: a table and a heat map (only
    for a run that measured it)."""
    pairs = _similarity_pairs(run)
    if not pairs:
        return []
    names = [n for n in (BEFORE, AFTER) if n in run.similarity]
    first = run.similarity[names[0]]
    blocks: list[Block] = [Heading(3, "Layer similarity (student ↔ teacher)"), Paragraph(
        f"Per layer pair, on {first.get('n_rows', '?')} rows ({first.get('rows', '?')}), "
        f"{first.get('aligned_tokens', '?')} aligned tokens, {', '.join(names)} training: mean "
        "cosine similarity of the aligned vectors (1 = same direction), normalised MSE "
        "Σ‖s−t‖²/Σ‖t−mean(t)‖² (0 = identical, 1 = no better than the teacher's mean) and "
        "linear CKA (1 = the same geometry up to rotation and scale). The student side is "
        "what the loss reads (after its projection).")]
    with_delta = len(names) == 2
    header = ["student→teacher"]
    for _, label in SIMILARITY_COLUMNS:
        header += [f"{label} {n}" for n in names] + ([f"Δ {label}"] if with_delta else [])
    rows = []
    for s, t in pairs:
        found = {n: next((p for p in run.similarity[n].get("pairs") or []
                          if (p["student"], p["teacher"]) == (s, t)), {}) for n in names}
        row = [f"{s}→{t}"]
        for key, _ in SIMILARITY_COLUMNS:
            values = [found[n].get(key) for n in names]
            row += [_num(v, 3) for v in values]
            if with_delta:
                row.append("—" if None in values else f"{values[1] - values[0]:+.3f}")
        rows.append(row)
    blocks.append(Table(header, rows))
    png = plots.similarity_heatmap(run.similarity,
                                   title=f"{run.name}: layer similarity student ↔ teacher")
    if png is not None:
        blocks.append(Figure(f"{slug}_similarity.png",
                             f"{run.name}: layer similarity per pair, before and after", png))
    return blocks


def _similarity_comparison(runs: list[RunResult]) -> list[Block]:
    """Across runs: each metric's mean over the layer pairs, before → after (pairs differ
    between runs, so per-pair detail stays in each run's section)."""
    measured = [run for run in runs if _similarity_pairs(run)]
    if not measured:
        return []
    rows = []
    for run in measured:
        row = [run.name, str(len(_similarity_pairs(run)))]
        for key, _ in SIMILARITY_COLUMNS:
            before = _mean_metric(run.similarity.get(BEFORE), key)
            after = _mean_metric(run.similarity.get(AFTER), key)
            row.append(f"{_num(before, 3)} → {_num(after, 3)}")
        rows.append(row)
    return [Paragraph("Layer similarity student ↔ teacher, mean over each run's layer pairs, "
                      "before → after training (per pair: each run's section)."),
            Table(["run", "layer pairs"] + [f"{label} before → after"
                                            for _, label in SIMILARITY_COLUMNS], rows)]


def _group_table(run: RunResult, key: str, label: str) -> Table:
    names = list(run.evals)
    groups = sorted({g for ev in run.evals.values() for g in ev.summary.get(key, {})})
    with_delta = BEFORE in run.evals and AFTER in run.evals
    rows = []
    for group in groups:
        blocks = [run.evals[n].summary.get(key, {}).get(group) for n in names]
        row = [group] + [_block_text(b) for b in blocks]
        if with_delta:
            before = run.evals[BEFORE].summary.get(key, {}).get(group) or {}
            after = run.evals[AFTER].summary.get(key, {}).get(group) or {}
            row.append(_delta(before.get("accuracy"), after.get("accuracy")))
        rows.append(row)
    header = [label] + [f"{n} accuracy [95% CI]" for n in names]
    return Table(header + (["Δ after − before"] if with_delta else []), rows)


def _evaluations(run: RunResult, slug: str) -> list[Block]:
    blocks: list[Block] = [Heading(3, "Evaluation")]
    if not run.evals:
        return blocks + [Paragraph("No evaluations under eval/.")]
    fields = [("accuracy", "accuracy [95% CI]"), ("parse_rate", "parse rate"),
              ("format_compliance", "format compliance"), ("truncation_rate", "truncation rate"),
              ("mean_generated_tokens", "mean generated tokens"), ("ece", "ECE")]
    rows = []
    for ev in run.evals.values():
        s = ev.summary
        ece = (s.get("calibration") or {}).get("ece")
        rows.append([ev.name, str(s.get("n", "—")), _with_ci(s.get("accuracy"),
                     s.get("accuracy_ci")), _pct(s.get("parse_rate")),
                     _pct(s.get("format_compliance")), _pct(s.get("truncation_rate")),
                     _num(s.get("mean_generated_tokens")), _pct(ece)])
    if BEFORE in run.evals and AFTER in run.evals:
        b, a = run.evals[BEFORE].summary, run.evals[AFTER].summary
        eces = [(x.get("calibration") or {}).get("ece") for x in (b, a)]
        tokens = (b.get("mean_generated_tokens"), a.get("mean_generated_tokens"))
        rows.append(["Δ after − before", "", _delta(b.get("accuracy"), a.get("accuracy")),
                     _delta(b.get("parse_rate"), a.get("parse_rate")),
                     _delta(b.get("format_compliance"), a.get("format_compliance")),
                     _delta(b.get("truncation_rate"), a.get("truncation_rate")),
                     f"{tokens[1] - tokens[0]:+.1f}" if None not in tokens else "—",
                     _delta(*eces)])
    blocks.append(Table(["eval", "n"] + [label for _, label in fields], rows))

    blocks += [Heading(4, "Accuracy per type"), _group_table(run, "by_type", "type"),
               Figure(f"{slug}_by_type.png", f"{run.name}: accuracy per type",
                      plots.accuracy_bars({n: e.summary.get("by_type", {})
                                           for n, e in run.evals.items()},
                                          title="Accuracy per type", xlabel="problem type")),
               Heading(4, "Accuracy per difficulty"),
               _group_table(run, "by_difficulty", "difficulty"),
               Figure(f"{slug}_by_difficulty.png", f"{run.name}: accuracy per difficulty",
                      plots.accuracy_bars({n: e.summary.get("by_difficulty", {})
                                           for n, e in run.evals.items()},
                                          title="Accuracy per difficulty", xlabel="difficulty"))]
    blocks += _calibration(run, slug) + _errors(run, slug) + _samples(run)
    return blocks


def _calibration(run: RunResult, slug: str) -> list[Block]:
    series = {n: e.summary["calibration"] for n, e in run.evals.items()
              if (e.summary.get("calibration") or {}).get("n")}
    blocks: list[Block] = [Heading(4, "Calibration")]
    if not series:
        return blocks + [Paragraph("No confidence scores recorded.")]
    rows = [[name, f"{b['low']:.1f}–{b['high']:.1f}", str(b["n"]), _num(b["mean_confidence"], 3),
             _pct(b["accuracy"])] for name, block in series.items() for b in block["bins"]
            if b["n"]]
    return blocks + [
        Paragraph("ECE over 10 equal-width confidence bins; confidence is the mean token "
                  "probability of the answer span."),
        Table(["eval", "confidence bin", "n", "mean confidence", "accuracy"], rows),
        Figure(f"{slug}_reliability.png", f"{run.name}: reliability diagram",
               plots.reliability_diagram(series)),
    ]


def _errors(run: RunResult, slug: str) -> list[Block]:
    series = {n: e.summary["errors"] for n, e in run.evals.items() if e.summary.get("errors")}
    blocks: list[Block] = [Heading(4, "Errors")]
    if not series:
        return blocks + [Paragraph("No error breakdown recorded.")]
    rows = []
    for name, block in series.items():
        for kind in ERROR_KINDS:
            entry = block["kinds"].get(kind) or {"count": 0, "examples": []}
            if entry["count"]:
                examples = "; ".join(f"{x.get('id')}: got {x.get('predicted')!r}, "
                                     f"want {x.get('label')!r}" for x in entry["examples"])
                rows.append([name, kind, str(entry["count"]), examples])
    blocks.append(Paragraph("Each wrong answer is counted once, under the first kind that "
                            "applies: " + " > ".join(ERROR_KINDS) + "."))
    if rows:
        blocks.append(Table(["eval", "kind", "count", "examples"], rows))
    blocks.append(Figure(f"{slug}_errors.png", f"{run.name}: error breakdown",
                         plots.error_breakdown(series)))
    return blocks


def _samples(run: RunResult) -> list[Block]:
    rows = []
    for name, ev in run.evals.items():
        samples = ev.summary.get("samples")
        if samples:
            pass_k = ", ".join(f"pass@{k} {_pct(v)}" for k, v in samples["pass_at_k"].items())
            rows.append([name, str(samples["n_problems"]), pass_k,
                         _block_text(samples["majority_vote"])])
    if not rows:
        return []
    return [Heading(4, "Sampling"),
            Table(["eval", "problems", "pass@k (unbiased)", "majority vote [95% CI]"], rows)]


# --------------------------------------------------------------------------- entry point


def build_report(runs: list[RunResult], out_dir: Path | None = None) -> list[Block]:
    """The report's blocks: the cross-run comparison (with 2+ runs), then each run. Run
    directories are named by :func:`~reasondistill.paths.run_relative` to ``out_dir``, the
    report's own directory (``.`` for a run's report written into it)."""
    where = [run_relative(r.path, out_dir) if out_dir is not None else str(r.path) for r in runs]
    blocks: list[Block] = [
        Heading(1, "reasondistill report"),
        Paragraph("Runs: " + ", ".join(f"{r.name} ({w})" for r, w in zip(runs, where))),
    ]
    if len(runs) > 1:
        blocks += _comparison(runs)
    for index, run in enumerate(runs, start=1):
        slug = f"{index:02d}-{_slug(run.name)}"  # unique even when two names slug alike
        blocks += [Heading(2, f"Run {run.name}")] + _training(run, slug)
        blocks += _layer_similarity(run, slug) + _evaluations(run, slug)
    return blocks


def write_report(run_dirs: list[Path], out_dir: Path, *,
                 plot_dir: str = "plots") -> tuple[Path, Path]:
    """Write ``report.md`` (+ ``plots/*.png``) and a self-contained ``report.html`` into
    ``out_dir``; returns ``(md_path, html_path)``."""
    if not run_dirs:
        raise ReasondistillError("no run directories given to report on")
    runs = [load_run(Path(d), name) for d, name in zip(run_dirs, _run_names(list(run_dirs)))]
    return write_blocks(build_report(runs, Path(out_dir)), Path(out_dir),
                        title="reasondistill report", plot_dir=plot_dir)


def write_blocks(blocks: list[Block], out_dir: Path, *, title: str,
                 plot_dir: str = "plots") -> tuple[Path, Path]:
    """Each figure as ``<plot_dir>/<name>.png``, then ``report.md`` and a self-contained
    ``report.html``, all atomically; returns ``(md_path, html_path)``."""
    (out_dir / plot_dir).mkdir(parents=True, exist_ok=True)
    for block in blocks:
        if isinstance(block, Figure):
            atomic_write_bytes(out_dir / plot_dir / block.filename, block.png)
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    atomic_write_text(md_path, to_markdown(blocks, plot_dir))
    atomic_write_text(html_path, to_html(blocks, title))
    return md_path, html_path
