"""The report of a sweep, drawn from its ``results.json`` alone (never from typed-in numbers).

Points that differ only by seed are pooled into one **group** (arm + grid values): accuracy
is the pooled correct / n with a 95% Wilson interval, and the per-seed accuracies stand
beside it. The figures are built to stay readable with twenty groups:

- a table of every group (accuracy with interval, per seed, parse rate, train minutes,
  trainable parameters, calibration ECE);
- sensitivity: accuracy against each numeric grid key, one line per arm, interval bands;
- learning curves: accuracy against training rows and training tokens;
- efficiency: accuracy against train minutes and trainable parameters, the Pareto front
  (no other group is both cheaper and more accurate) drawn and labelled;
- accuracy per problem type and the error breakdown as one row per group (heat map, stacked
  bars), instead of bars per run;
- the layer similarity of latent groups after training (linear CKA per layer pair).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from reasondistill.evaluate.metrics import ERROR_KINDS, wilson_interval
from reasondistill.evaluate.plots import ERROR_LABELS, _figure, _png
from reasondistill.evaluate.report import (
    Figure,
    Heading,
    Paragraph,
    Table,
    _pct,
    _with_ci,
    write_blocks,
)


def group_label(record: dict[str, Any]) -> str:
    params = ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in record["params"].items())
    return f"{record['arm']} ({params})" if params else record["arm"]


def pooled_groups(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per arm + grid point, its seeds pooled, in the sweep's order."""
    by_label: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        by_label[group_label(record)].append(record)
    groups = []
    for label, members in by_label.items():
        n = sum(r["n"] for r in members)
        correct = sum(r["correct"] for r in members)
        types: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        errors: dict[str, int] = defaultdict(int)
        for r in members:
            for name, block in r.get("by_type", {}).items():
                types[name][0] += block.get("correct") or 0
                types[name][1] += block.get("n") or 0
            for kind, count in r.get("errors", {}).items():
                errors[kind] += count
        eces = [r["calibration_ece"] for r in members if r.get("calibration_ece") is not None]
        groups.append({
            "label": label, "arm": members[0]["arm"], "params": members[0]["params"],
            "trains": members[0]["trains"], "seeds": [r["seed"] for r in members],
            "n": n, "correct": correct, "accuracy": correct / n if n else None,
            "ci": list(wilson_interval(correct, n)),
            "seed_accuracy": [r["accuracy"] for r in members],
            "parse_rate": _mean(r.get("parse_rate") for r in members),
            "train_minutes": _mean(r.get("train_minutes") for r in members),
            "train_rows": _mean(r.get("train_rows") for r in members),
            "train_tokens": _mean(r.get("train_tokens") for r in members),
            "trainable_parameters": _mean(r.get("trainable_parameters") for r in members),
            "ece": statistics.fmean(eces) if eces else None,
            "by_type": {t: (c / m if m else None) for t, (c, m) in sorted(types.items())},
            "errors": dict(errors),
            "similarity": [r["similarity"] for r in members if r.get("similarity")],
        })
    return groups


def _mean(values) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def _others(group: dict[str, Any], key: str) -> str:
    """The group's arm and grid values except ``key``: the line it belongs to."""
    rest = ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in group["params"].items()
                     if k != key)
    return f"{group['arm']} ({rest})" if rest else group["arm"]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# --------------------------------------------------------------------------- figures


def _line_plot(ax, lines: dict[str, list[tuple[float, dict]]], *, log_x: bool = False) -> None:
    for name, points in lines.items():
        points = sorted(points, key=lambda p: p[0])
        xs = [x for x, _ in points]
        ys = [100 * g["accuracy"] for _, g in points]
        low = [100 * g["ci"][0] for _, g in points]
        high = [100 * g["ci"][1] for _, g in points]
        line, = ax.plot(xs, ys, marker="o", label=name)
        ax.fill_between(xs, low, high, alpha=0.15, color=line.get_color())
    if log_x:
        ax.set_xscale("log")
    ax.set_ylabel("accuracy (%), 95% interval")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")


def sensitivity_plot(groups: list[dict[str, Any]], key: str) -> bytes | None:
    """Accuracy against the values of grid ``key``: one line per arm (and other values)."""
    lines: dict[str, list] = defaultdict(list)
    for group in groups:
        value = group["params"].get(key)
        if _is_number(value) and group["trains"]:
            lines[_others(group, key)].append((float(value), group))
    lines = {name: pts for name, pts in lines.items() if len({x for x, _ in pts}) > 1}
    if not lines:
        return None
    fig = _figure(7.5, 4.5)
    ax = fig.subplots()
    _line_plot(ax, lines)
    ax.set_xlabel(key)
    ax.set_title(f"Sensitivity to {key}")
    return _png(fig)


def learning_curves(groups: list[dict[str, Any]]) -> bytes | None:
    """Accuracy against training rows (left) and training tokens (right), one line per arm
    and grid values outside the ``data`` section (which set the amount of data)."""
    trained = [g for g in groups if g["trains"] and g["train_rows"]]
    if len({g["train_rows"] for g in trained}) < 2:
        return None
    fig = _figure(11, 4.5)
    axes = fig.subplots(1, 2)
    for ax, measure, label in ((axes[0], "train_rows", "training rows"),
                               (axes[1], "train_tokens", "training tokens")):
        lines: dict[str, list] = defaultdict(list)
        for group in trained:
            line = group["arm"] + "".join(
                f", {k.rsplit('.', 1)[-1]}={v}" for k, v in group["params"].items()
                if not k.startswith("data."))
            lines[line].append((group[measure], group))
        _line_plot(ax, lines, log_x=True)
        ax.set_xlabel(label + " (log scale)")
    fig.suptitle("Learning curves")
    return _png(fig)


def pareto_front(groups: list[dict[str, Any]], cost: str) -> list[dict[str, Any]]:
    """The groups no other group beats on both ``cost`` (lower) and accuracy (higher)."""
    present = [g for g in groups if g.get(cost) is not None and g["accuracy"] is not None]
    front = []
    for g in present:
        dominated = any(o[cost] <= g[cost] and o["accuracy"] >= g["accuracy"]
                        and (o[cost] < g[cost] or o["accuracy"] > g["accuracy"])
                        for o in present)
        if not dominated:
            front.append(g)
    return sorted(front, key=lambda g: g[cost])


def efficiency_plot(groups: list[dict[str, Any]]) -> bytes | None:
    trained = [g for g in groups if g["trains"] and g["train_minutes"]]
    if not trained:
        return None
    fig = _figure(11, 4.8)
    axes = fig.subplots(1, 2)
    arms = list(dict.fromkeys(g["arm"] for g in trained))
    for ax, cost, label in ((axes[0], "train_minutes", "train minutes"),
                            (axes[1], "trainable_parameters", "trainable parameters")):
        for arm in arms:
            members = [g for g in trained if g["arm"] == arm]
            ax.errorbar([g[cost] for g in members], [100 * g["accuracy"] for g in members],
                        yerr=[[max(0.0, 100 * (g["accuracy"] - g["ci"][0])) for g in members],
                              [max(0.0, 100 * (g["ci"][1] - g["accuracy"])) for g in members]],
                        fmt="o", capsize=3, label=arm, alpha=0.8)
        front = pareto_front(trained, cost)
        ax.plot([g[cost] for g in front], [100 * g["accuracy"] for g in front], "k--",
                lw=1, label="Pareto front")
        for g in front:
            ax.annotate(g["label"], (g[cost], 100 * g["accuracy"]), fontsize="x-small",
                        xytext=(4, 4), textcoords="offset points")
        ax.set_xlabel(label)
        ax.set_ylabel("accuracy (%), 95% interval")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle("Efficiency")
    return _png(fig)


def _heatmap(rows: list[str], columns: list[str], values: list[list[float | None]], *,
             title: str, fmt: str, limits: tuple[float, float], lower_is_darker: bool = False
             ) -> bytes:
    fig = _figure(2.5 + 0.9 * len(columns), 1.4 + 0.35 * len(rows))
    ax = fig.subplots()
    grid = [[float("nan") if v is None else v for v in row] for row in values]
    ax.imshow(grid, cmap="Greens_r" if lower_is_darker else "Greens", vmin=limits[0],
              vmax=limits[1], aspect="auto")
    for i, row in enumerate(values):
        for j, value in enumerate(row):
            shade = None if value is None else (value - limits[0]) / ((limits[1] - limits[0]) or 1)
            dark = shade is not None and (shade < 0.4 if lower_is_darker else shade > 0.6)
            ax.text(j, i, "—" if value is None else format(value, fmt), ha="center",
                    va="center", fontsize="x-small", color="white" if dark else "black")
    ax.set_xticks(range(len(columns)))
    ax.set_xticklabels(columns, rotation=30, ha="right", fontsize="small")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows, fontsize="small")
    ax.set_title(title)
    return _png(fig)


def type_heatmap(groups: list[dict[str, Any]]) -> bytes | None:
    types = sorted({t for g in groups for t in g["by_type"]})
    if len(types) < 2:
        return None
    values = [[None if g["by_type"].get(t) is None else 100 * g["by_type"][t] for t in types]
              for g in groups]
    return _heatmap([g["label"] for g in groups], types, values,
                    title="Accuracy (%) per problem type", fmt=".0f", limits=(0, 100))


def error_bars(groups: list[dict[str, Any]]) -> bytes | None:
    """One stacked horizontal bar per group: its wrong answers by kind, as a share."""
    wrong = [sum(g["errors"].values()) for g in groups]
    if not any(wrong):
        return None
    fig = _figure(8, 1.2 + 0.35 * len(groups))
    ax = fig.subplots()
    left = [0.0] * len(groups)
    for kind in ERROR_KINDS:
        shares = [100 * g["errors"].get(kind, 0) / w if w else 0 for g, w in zip(groups, wrong)]
        ax.barh(range(len(groups)), shares, left=left, label=ERROR_LABELS.get(kind, kind))
        left = [a + b for a, b in zip(left, shares)]
    ax.set_yticks(range(len(groups)))
    ax.set_yticklabels([f"{g['label']} ({w} wrong)" for g, w in zip(groups, wrong)],
                       fontsize="small")
    ax.invert_yaxis()
    ax.set_xlabel("share of wrong answers (%)")
    ax.set_title("Error breakdown per group")
    ax.legend(fontsize="x-small", ncols=3, loc="upper center", bbox_to_anchor=(0.5, -0.12))
    return _png(fig)


def similarity_heatmap(groups: list[dict[str, Any]]) -> bytes | None:
    """Normalised MSE student ↔ teacher after training, per layer pair, mean over seeds.
    nMSE, not CKA or cosine: with a self-teacher both round to 1.00 in every latent run,
    while nMSE still separates them (0 is the teacher's own states)."""
    latent = [g for g in groups if g["similarity"]]
    if not latent:
        return None
    pairs: list[str] = []
    rows = []
    for group in latent:
        cells: dict[str, list[float]] = defaultdict(list)
        for similarity in group["similarity"]:
            for pair in (similarity.get("after") or {}).get("pairs", []):
                key = f"{pair['student']}→{pair['teacher']}"
                if pair.get("nmse") is not None:
                    cells[key].append(pair["nmse"])
                if key not in pairs:
                    pairs.append(key)
        rows.append({k: statistics.fmean(v) for k, v in cells.items()})
    values = [[row.get(p) for p in pairs] for row in rows]
    present = [v for row in values for v in row if v is not None]
    return _heatmap([g["label"] for g in latent], pairs, values, fmt=".4f",
                    limits=(0.0, max([*present, 1e-6])), lower_is_darker=True,
                    title="Layer distance after training (normalised MSE, student→teacher; "
                          "0 = the teacher's states)")


# --------------------------------------------------------------------------- the report


def group_table(groups: list[dict[str, Any]]) -> Table:
    rows = []
    for g in groups:
        params = g["trainable_parameters"]
        rows.append([
            g["label"], str(len(g["seeds"])), str(g["n"]), _with_ci(g["accuracy"], g["ci"]),
            ", ".join(_pct(a) for a in g["seed_accuracy"]), _pct(g["parse_rate"]),
            "—" if g["train_minutes"] is None else f"{g['train_minutes']:.1f}",
            "—" if not params else f"{params / 1e6:.2f}M",
            "—" if g["ece"] is None else f"{g['ece']:.3f}",
        ])
    return Table(["group", "seeds", "n", "accuracy [95% CI]", "per seed", "parse rate",
                  "train min", "trainable params", "ECE"], rows)


def build_sweep_report(results: dict[str, Any]) -> list:
    groups = pooled_groups(results["results"])
    sweep = results["sweep"]
    blocks: list = [
        Heading(1, f"Sweep {sweep['output_dir']}"),
        Paragraph(f"{results['finished']} of {results['points']} points finished. Seeds "
                  f"{sweep['seeds']} are pooled per group: accuracy is correct/n over all "
                  "seeds with a 95% Wilson interval; 'per seed' lists each seed's own. Every "
                  "number here comes from the runs' own summary and training files."),
    ]
    if not groups:
        return blocks + [Paragraph("No point has finished yet.")]
    blocks += [Heading(2, "Results"), group_table(groups)]
    figures = [("learning-curves.png", "Accuracy against training rows and tokens",
                learning_curves(groups)),
               ("efficiency.png", "Accuracy against train minutes and trainable parameters, "
                "with the Pareto front", efficiency_plot(groups))]
    for key in sweep["grid"]:
        slug = key.replace(".", "-")
        figures.append((f"sensitivity-{slug}.png", f"Sensitivity to {key}",
                        sensitivity_plot(groups, key)))
    figures += [("per-type.png", "Accuracy per problem type", type_heatmap(groups)),
                ("errors.png", "Error breakdown per group", error_bars(groups)),
                ("layer-similarity.png", "Layer distance to the teacher after training (latent groups, normalised MSE)",
                 similarity_heatmap(groups))]
    blocks.append(Heading(2, "Figures"))
    blocks += [Figure(name, caption, png) for name, caption, png in figures if png]
    return blocks


def write_sweep_report(results: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """``report.md`` (+ ``plots/*.png``) and ``report.html`` of a sweep in ``out_dir``."""
    return write_blocks(build_sweep_report(results), Path(out_dir),
                        title="reasondistill sweep report")
