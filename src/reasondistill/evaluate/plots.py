"""The report's figures, each rendered to PNG bytes.

Figures are built on :class:`matplotlib.figure.Figure` with the Agg canvas rather than
``pyplot``: no global figure state, no display needed, nothing to close, and safe to call
from a server or a test. Every function takes plain dicts (the ``summary.json`` pieces or
``metrics.jsonl`` records) so it can be used without a run directory.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

from reasondistill.evaluate.metrics import ERROR_KINDS

TRAINING_PANELS = (
    ("loss", "loss (training objective)"),
    ("learning_rate", "learning rate"),
    ("grad_norm", "gradient norm (L2, before clipping)"),
    ("tokens_per_s", "throughput (tokens/s)"),
)
ERROR_LABELS = {  # display names for metrics.ERROR_KINDS
    "truncated": "truncated",
    "no_answer": "no answer",
    "format_broken": "format broken",
    "wrong_number_close": "wrong number (within 50%)",
    "wrong_number_far": "wrong number (far)",
    "wrong_string": "wrong string",
}


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _png(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else None


def phase_steps(records: Sequence[Mapping[str, Any]]) -> list[tuple[str, int, Mapping]]:
    """``(phase, global_step, record)`` in file order. A phase whose step counter restarts
    (Nudge counting from 0 again) is shifted to continue after the previous phases, so the
    curves read left to right as Train → Nudge."""
    out: list[tuple[str, int, Mapping]] = []
    offsets: dict[str, int] = {}
    last_step = 0
    for record in records:
        step = _number(record.get("step"))
        if step is None:
            continue
        phase = str(record.get("phase") or "train")
        if phase not in offsets:
            offsets[phase] = last_step if out and step <= last_step else 0
        global_step = int(step) + offsets[phase]
        last_step = max(last_step, global_step)
        out.append((phase, global_step, record))
    return out


def training_curves(records: Sequence[Mapping[str, Any]]) -> bytes | None:
    """Loss, learning rate (and gradient norm, throughput when logged) against the optimizer
    step, one line per phase. None when no record has a step and a metric."""
    points = phase_steps(records)
    panels = [(key, label) for key, label in TRAINING_PANELS
              if any(_number(r.get(key)) is not None for _, _, r in points)]
    if not panels:
        return None
    fig = _figure(10, 3.2 * ((len(panels) + 1) // 2))
    axes = fig.subplots((len(panels) + 1) // 2, 2, squeeze=False).ravel()
    phases = list(dict.fromkeys(phase for phase, _, _ in points))
    for ax, (key, label) in zip(axes, panels):
        for phase in phases:
            xs, ys = [], []
            for p, step, record in points:
                value = _number(record.get(key))
                if p == phase and value is not None:
                    xs.append(step)
                    ys.append(value)
            if xs:
                ax.plot(xs, ys, marker="." if len(xs) < 30 else None, label=phase)
        ax.set_title(label)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(title="phase", fontsize="small")
        if key == "learning_rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.suptitle("Training curves")
    return _png(fig)


def accuracy_bars(series: Mapping[str, Mapping[str, Mapping[str, Any]]], *, title: str,
                  xlabel: str) -> bytes:
    """Grouped bars of accuracy (%) with 95% Wilson intervals as error bars.

    ``series`` maps a series name (an eval, a run) to ``{group: accuracy block}`` where a
    block is ``{"n", "accuracy", "ci": [low, high]}`` (:func:`metrics.accuracy_block`).
    """
    groups = sorted({g for blocks in series.values() for g in blocks})
    width = 0.8 / max(len(series), 1)
    fig = _figure(max(6.0, 1.0 + 0.9 * len(groups) * max(1, len(series)) ** 0.5), 4.2)
    ax = fig.subplots()
    for i, (name, blocks) in enumerate(series.items()):
        xs, heights, low_err, high_err = [], [], [], []
        for j, group in enumerate(groups):
            block = blocks.get(group)
            if not block or block.get("accuracy") is None:
                continue
            acc = 100 * block["accuracy"]
            low, high = (100 * v for v in block.get("ci") or (block["accuracy"],) * 2)
            xs.append(j - 0.4 + width * (i + 0.5))
            heights.append(acc)
            low_err.append(max(acc - low, 0.0))
            high_err.append(max(high - acc, 0.0))
        ax.bar(xs, heights, width=width * 0.95, yerr=[low_err, high_err], capsize=3, label=name)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=30 if len(groups) > 4 else 0, ha="right"
                       if len(groups) > 4 else "center")
    ax.set_ylim(0, 105)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title + " (error bars: 95% Wilson CI)")
    ax.grid(axis="y", alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize="small")
    return _png(fig)


def reliability_diagram(series: Mapping[str, Mapping[str, Any]]) -> bytes:
    """Accuracy against mean confidence per bin (the diagonal is perfect calibration), and
    how many answers fall in each bin. ``series`` maps a name to a ``calibration`` block."""
    fig = _figure(6.5, 6.0)
    top, bottom = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    n_series = max(len(series), 1)
    for i, (name, block) in enumerate(series.items()):
        filled = [b for b in block["bins"] if b["n"]]
        ece = block.get("ece")
        label = f"{name} (ECE {100 * ece:.1f}%)" if ece is not None else name
        top.plot([b["mean_confidence"] for b in filled], [b["accuracy"] for b in filled],
                 marker="o", label=label)
        bins = block["bins"]
        width = (bins[0]["high"] - bins[0]["low"]) / n_series if bins else 0.1
        bottom.bar([b["low"] + width * (i + 0.5) for b in bins], [b["n"] for b in bins],
                   width=width * 0.95, label=name)
    top.set_xlim(0, 1)
    top.set_ylim(-0.03, 1.03)  # keep markers at 0 and 1 whole
    top.set_ylabel("accuracy (fraction correct)")
    top.set_title("Reliability diagram")
    top.grid(alpha=0.3)
    top.legend(fontsize="small")
    bottom.set_xlabel("confidence (mean token probability of the answer)")
    bottom.set_ylabel("answers per bin")
    bottom.grid(axis="y", alpha=0.3)
    return _png(fig)


def error_breakdown(series: Mapping[str, Mapping[str, Any]]) -> bytes:
    """Horizontal grouped bars: how many wrong answers of each kind, per series.
    ``series`` maps a name to an ``errors`` block of ``summary.json``."""
    from matplotlib.ticker import MaxNLocator

    kinds = list(ERROR_KINDS)
    height = 0.8 / max(len(series), 1)
    fig = _figure(7.5, 0.6 + 0.45 * len(kinds) * max(1, len(series)) ** 0.5)
    ax = fig.subplots()
    for i, (name, block) in enumerate(series.items()):
        counts = [block["kinds"].get(k, {}).get("count", 0) for k in kinds]
        ax.barh([j - 0.4 + height * (i + 0.5) for j in range(len(kinds))], counts,
                height=height * 0.95, label=f"{name} ({block.get('n_wrong', sum(counts))} wrong)")
    ax.set_yticks(range(len(kinds)))
    ax.set_yticklabels([ERROR_LABELS.get(k, k) for k in kinds])
    ax.invert_yaxis()
    ax.set_xlabel("wrong answers (count)")
    ax.set_title("Error breakdown (each wrong answer under one kind)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize="small")
    return _png(fig)


SIMILARITY_METRICS = (  # key, title, colour range (None: from the data), higher is better
    ("cosine", "cosine similarity", (-1.0, 1.0), True),
    ("nmse", "normalised MSE", None, False),
    ("cka", "linear CKA", (0.0, 1.0), True),
)


def similarity_heatmap(similarity: Mapping[str, Mapping[str, Any]], *, title: str) -> bytes | None:
    """One panel per metric (cosine, nMSE, linear CKA): rows are the layer pairs
    (student→teacher), columns the measurements (``before``, ``after``), each cell annotated
    with its value. Colours run the same way in every panel: the darker green, the closer
    the student is to the teacher (nMSE's scale is reversed). ``similarity`` maps ``before``
    / ``after`` to a record of ``distill.similarity``; None when neither has pairs."""
    columns = [name for name in ("before", "after") if (similarity.get(name) or {}).get("pairs")]
    if not columns:
        return None
    pairs = list(dict.fromkeys((p["student"], p["teacher"]) for name in columns
                               for p in similarity[name]["pairs"]))
    lookup = {(name, p["student"], p["teacher"]): p for name in columns
              for p in similarity[name]["pairs"]}
    fig = _figure(2.2 + 2.3 * len(SIMILARITY_METRICS) * max(1, len(columns)) / 2,
                  1.6 + 0.42 * len(pairs))
    axes = fig.subplots(1, len(SIMILARITY_METRICS), squeeze=False)[0]
    for ax, (key, label, limits, higher_better) in zip(axes, SIMILARITY_METRICS):
        values = [[_number((lookup.get((name, s, t)) or {}).get(key)) for name in columns]
                  for s, t in pairs]
        present = [v for row in values for v in row if v is not None]
        low, high = limits or (0.0, max([1.0, *present]))
        grid = [[float("nan") if v is None else v for v in row] for row in values]
        ax.imshow(grid, cmap="Greens" if higher_better else "Greens_r", vmin=low, vmax=high,
                  aspect="auto")
        for i, row in enumerate(values):
            for j, value in enumerate(row):
                shade = (value - low) / (high - low) if value is not None and high > low else 0
                dark = shade > 0.6 if higher_better else shade < 0.4
                ax.text(j, i, "—" if value is None else f"{value:.3f}", ha="center",
                        va="center", fontsize="small", color="white" if dark else "black")
        ax.set_xticks(range(len(columns)))
        ax.set_xticklabels(columns)
        ax.set_yticks(range(len(pairs)))
        ax.set_yticklabels([f"{s}→{t}" for s, t in pairs])
        ax.set_title(label + (" (higher: closer)" if higher_better else " (lower: closer)"),
                     fontsize="medium")
    axes[0].set_ylabel("layer pair (student→teacher)")
    fig.suptitle(title)
    return _png(fig)
