"""The trace-distillation experiment: what each part of the recipe buys, with 95% intervals.

Five arms, trained and evaluated on the same training rows and the same held-out test rows:

    zero-shot            the base model
    answer-only          SFT on the answer alone, no reasoning
    trace-1phase         trace distillation, one phase
    trace-train-nudge    trace distillation, Train → Nudge
    trace-shuffled       Train → Nudge with shuffled instead of type-stratified batches

    python benchmarks/arms.py --dataset puzzles --seeds 0 1 2
    python benchmarks/arms.py --dataset gsm8k --seeds 0
    python benchmarks/arms.py --quick          # a CI-sized smoke run (tiny sizes)
    python benchmarks/arms.py --dataset puzzles --summarize   # tables + report from the JSON

Every arm is one run directory under ``--work`` (training resumes, evaluation skips done
ids), so a long experiment can be stopped and restarted; results are written as each arm
finishes to ``results/arms-<dataset>.json``, and ``results/arms-<dataset>-report/`` (markdown,
HTML and plots) compares the runs at the end.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARMS = ("zero-shot", "answer-only", "trace-1phase", "trace-train-nudge", "trace-shuffled")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=("puzzles", "gsm8k"), default="puzzles")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--train-rows", type=int, default=1400)
    parser.add_argument("--test-rows", type=int, default=280)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=None,
                        help="phase-1 learning rate (default: the recipe's 2e-4)")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--max-new-tokens", type=int, default=320)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--gsm8k-dir", type=Path, default=REPO.parent / "shared/data/gsm8k")
    parser.add_argument("--work", type=Path, default=REPO / "runs/arms")
    parser.add_argument("--out", type=Path, default=None,
                        help="default: results/arms-<dataset>.json")
    parser.add_argument("--summarize", action="store_true",
                        help="train and evaluate nothing: recompute the pooled tables and the "
                             "report from the runs already in --out")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes for a smoke run: 18 train rows, 9 test rows, 2 steps")
    args = parser.parse_args(argv)
    if args.quick:
        args.train_rows, args.test_rows, args.max_new_tokens = 18, 9, 48
        args.max_length, args.batch = 1024, 2
    args.out = args.out or REPO / f"results/arms-{args.dataset}{'-quick' if args.quick else ''}.json"
    return args


# ----------------------------------------------------------------------------- data


def write_rows(examples, path: Path) -> Path:
    from reasondistill.data.puzzles import write_jsonl

    return write_jsonl(examples, path)


def puzzle_split(args, seed: int, data_dir: Path) -> tuple[Path, Path, list[str]]:
    """Training puzzles from ``seed``, test puzzles from an unrelated seed, no shared prompt."""
    from reasondistill.data.puzzles import HARD_TYPES, generate_puzzles

    train = generate_puzzles(args.train_rows, seed=seed)
    prompts = {e.prompt for e in train}
    test = [e for e in generate_puzzles(args.test_rows + 20, seed=10_000 + seed)
            if e.prompt not in prompts][: args.test_rows]
    return (write_rows(train, data_dir / "train.jsonl"), write_rows(test, data_dir / "test.jsonl"),
            sorted(HARD_TYPES))


def gsm8k_split(args, seed: int, data_dir: Path) -> tuple[Path, Path, list[str]]:
    """The first N GSM8K train rows (seeded shuffle) and the first M test rows."""
    import random

    from reasondistill.config import DataConfig
    from reasondistill.data.loaders import load_examples

    train = load_examples(DataConfig(source="gsm8k", path=str(args.gsm8k_dir),
                                     split="train")).examples
    random.Random(seed).shuffle(train)
    test = load_examples(DataConfig(source="gsm8k", path=str(args.gsm8k_dir), split="test",
                                    limit=args.test_rows)).examples
    return (write_rows(train[: args.train_rows], data_dir / "train.jsonl"),
            write_rows(test, data_dir / "test.jsonl"), ["steps_5+"])


# ----------------------------------------------------------------------------- arms


def arm_config(args, arm: str, seed: int, train_path: Path, test_path: Path, hard_types,
               run_dir: Path):
    from reasondistill.config import parse_config

    two_phase = arm in ("trace-train-nudge", "trace-shuffled")
    train = {
        "phases": ["train", "nudge"] if two_phase else ["train"],
        "hard_types": hard_types if two_phase else [],
        "stratify": arm != "trace-shuffled",
        "per_device_batch_size": args.batch, "gradient_accumulation_steps": 1,
        "seed": seed, "logging_steps": 5, "save_steps": 100,
        "train": {"num_train_epochs": args.epochs,
                  **({"learning_rate": args.lr} if args.lr else {})},
    }
    if args.quick:
        train["train"] = {"max_steps": 2}
        train["nudge"] = {"max_steps": 2}
    raw = {
        "output_dir": str(run_dir),
        "model": {"name": args.model},
        "data": {"source": "jsonl", "path": str(train_path)},
        "format": {"max_length": args.max_length, "answer_only": arm == "answer-only"},
        "lora": {"r": 16, "alpha": 32, "families": ["attention", "mlp"]},
        "train": train,
        "eval": {"data": {"source": "jsonl", "path": str(test_path)},
                 "max_new_tokens": args.max_new_tokens, "batch_size": 32,
                 "rel_tol": 1e-2 if args.dataset == "puzzles" else 1e-4},
    }
    return parse_config(raw, f"arm {arm}")


def run_arm(args, arm: str, seed: int, split) -> dict:
    from reasondistill.config import dump_config
    from reasondistill.evaluate.report import hard_type_block
    from reasondistill.evaluate.runner import run_eval
    from reasondistill.io import atomic_write_text
    from reasondistill.train.adapters import FINAL_ADAPTER
    from reasondistill.train.recipe import run_training

    run_dir = args.work / args.dataset / f"seed{seed}" / arm
    cfg = arm_config(args, arm, seed, *split, run_dir)
    train_minutes = 0.0
    adapter = None
    if arm != "zero-shot":
        adapter = run_dir / FINAL_ADAPTER
        if not (adapter / "adapter_config.json").is_file():
            summary = run_training(cfg, resume=run_dir.exists())
            if summary is None or summary.get("interrupted"):
                raise SystemExit(f"{arm}: training did not finish")
        train_minutes = json.loads((run_dir / "train_summary.json").read_text())["train_minutes"]
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.yaml", dump_config(cfg))
    started = time.perf_counter()
    summary = run_eval(cfg, adapter=adapter, out_dir=run_dir / "eval" / "after")
    hard = hard_type_block(summary, list(split[2]))
    return {
        "arm": arm, "seed": seed, "run_dir": str(run_dir),
        "n": summary["n"], "accuracy": summary["accuracy"], "accuracy_ci": summary["accuracy_ci"],
        "parse_rate": summary["parse_rate"],
        "hard_accuracy": hard["accuracy"] if hard else None,
        "hard_ci": hard["ci"] if hard else None, "hard_n": hard["n"] if hard else 0,
        "mean_generated_tokens": summary["mean_generated_tokens"],
        "train_minutes": train_minutes,
        "eval_minutes": round((time.perf_counter() - started) / 60, 2),
        "by_type": {t: {"n": b["n"], "accuracy": b["accuracy"], "ci": b["ci"]}
                    for t, b in summary["by_type"].items()},
    }


def pooled(rows: list[dict]) -> dict:
    """Each arm over all seeds: accuracy pooled over every test problem of every seed."""
    from reasondistill.evaluate.metrics import accuracy_block

    out = {}
    for arm in ARMS:
        mine = [r for r in rows if r["arm"] == arm]
        if not mine:
            continue
        correct = round(sum(r["accuracy"] * r["n"] for r in mine))
        n = sum(r["n"] for r in mine)
        hard_n = sum(r["hard_n"] for r in mine)
        hard_correct = round(sum((r["hard_accuracy"] or 0) * r["hard_n"] for r in mine))
        out[arm] = {
            "seeds": [r["seed"] for r in mine], **accuracy_block(correct, n),
            "hard": accuracy_block(hard_correct, hard_n) if hard_n else None,
            "parse_rate": sum(r["parse_rate"] * r["n"] for r in mine) / n,
            "mean_generated_tokens": sum(r["mean_generated_tokens"] * r["n"] for r in mine) / n,
            "train_minutes_mean": sum(r["train_minutes"] for r in mine) / len(mine),
            "accuracy_per_seed": [round(r["accuracy"], 4) for r in mine],
            "by_type": pooled_by_type(mine),
        }
    return out


def pooled_by_type(rows: list[dict]) -> dict:
    """Accuracy per type over every seed's test problems of that type."""
    from reasondistill.evaluate.metrics import accuracy_block

    counts: dict[str, list[int]] = {}
    for row in rows:
        for name, block in row["by_type"].items():
            correct_n = counts.setdefault(name, [0, 0])
            correct_n[0] += round(block["accuracy"] * block["n"])
            correct_n[1] += block["n"]
    return {name: accuracy_block(c, n) for name, (c, n) in sorted(counts.items())}


def table(pooled_rows: dict) -> str:
    lines = ["| arm | n | accuracy [95% CI] | per seed | parse rate | hard-type accuracy [95% CI] "
             "| mean generated tokens | train minutes |",
             "|---|---|---|---|---|---|---|---|"]
    for arm, r in pooled_rows.items():
        hard = r["hard"]
        hard_text = (f"{hard['accuracy']:.1%} [{hard['ci'][0]:.1%}, {hard['ci'][1]:.1%}] "
                     f"(n={hard['n']})") if hard else "—"
        lines.append(
            f"| {arm} | {r['n']} | {r['accuracy']:.1%} [{r['ci'][0]:.1%}, {r['ci'][1]:.1%}] | "
            f"{', '.join(f'{a:.1%}' for a in r['accuracy_per_seed'])} | {r['parse_rate']:.1%} | "
            f"{hard_text} | {r['mean_generated_tokens']:.0f} | {r['train_minutes_mean']:.1f} |")
    return "\n".join(lines)


def type_table(pooled_rows: dict) -> str:
    """Accuracy per type (rows) and arm (columns), pooled over seeds, with 95% intervals."""
    arms = list(pooled_rows)
    types = sorted({t for r in pooled_rows.values() for t in r["by_type"]})
    lines = ["| type | n | " + " | ".join(arms) + " |", "|---|---|" + "---|" * len(arms)]
    for name in types:
        blocks = [pooled_rows[arm]["by_type"].get(name) for arm in arms]
        n = next(b["n"] for b in blocks if b)
        cells = [f"{b['accuracy']:.0%} [{b['ci'][0]:.0%}, {b['ci'][1]:.0%}]" if b else "—"
                 for b in blocks]
        lines.append(f"| {name} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    from reasondistill.io import atomic_write_json

    if args.summarize:
        previous = json.loads(args.out.read_text())
        atomic_write_json(args.out, {**previous, "pooled": pooled(previous["runs"])})
        return finish(args, previous["runs"])
    rows = []
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    for seed in args.seeds:
        data_dir = args.work / args.dataset / f"seed{seed}" / "data"
        split = (puzzle_split if args.dataset == "puzzles" else gsm8k_split)(args, seed, data_dir)
        for arm in args.arms:
            print(f"=== {args.dataset} seed {seed}: {arm}", flush=True)
            rows.append(run_arm(args, arm, seed, split))
            result = {"dataset": args.dataset, "settings": settings, "runs": rows,
                      "pooled": pooled(rows)}
            atomic_write_json(args.out, result)  # after every arm: partial results survive
    finish(args, rows)


def finish(args, rows: list[dict]) -> None:
    """The comparison report next to the JSON, and the tables on stdout."""
    from reasondistill.evaluate.report import write_report

    runs = [Path(r["run_dir"]) for r in rows]
    md_path, _ = write_report(runs, args.out.with_name(f"{args.out.stem}-report"))
    summary = pooled(rows)
    print(table(summary))
    print()
    print(type_table(summary))
    print(f"wrote {args.out} and {md_path}")


if __name__ == "__main__":
    main()
