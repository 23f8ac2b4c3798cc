"""What latent distillation costs per training step: trace-only vs self-teacher (online and
cached) vs logit KD.

The same student (the embedded SmolLM2-135M-Instruct, LoRA r 16 on every attention and MLP
linear), the same GSM8K train rows (``--rows``, default 48, one epoch, per-device batch 4 and no
accumulation, so 12 optimizer steps), the same dtype (``--dtype``, default ``auto``: what ``reasondistill train``
picks) and the real ``reasondistill train`` path (:func:`reasondistill.train.recipe.run_training`)
in four modes:

- ``trace``: trace distillation alone (``distill.enabled: false``, L = L_task);
- ``online``: the latent loss with the online self-teacher — the student's base with a
  teacher adapter switched on for one ``no_grad`` forward per micro-batch (``distill: {enabled,
  teacher: {kind: self, adapter}}``, defaults: α 0.1, ``last_k: 5``, ``same_sequence``,
  ``layernorm`` + ``mse``);
- ``cached``: the same latent loss, the teacher's aligned states read from a teacher cache
  (``reasondistill cache``'s ``write_cache``, once before the timed runs; its time is
  reported apart);
- ``kd``: ``online`` plus logit KD (β 0.5, forward KL, ``same_sequence``): the teacher's
  final states at every supervised position and a chunked KL over the vocabulary.

The teacher adapter is a *freshly initialised* LoRA (same targets and rank as the student's)
with its B matrices drawn non-zero (normal, std 0.02, seed 0) rather than a trace-trained one:
a step's cost does not depend on what the adapter learned, only on its shape, and this takes
seconds instead of a training run.

Each (mode, round) is its own child process, so each reports its own peak RSS (``ru_maxrss``:
model load, data, training — the whole process); the modes run interleaved round by round
(``--repeats``) so a noisy neighbour slows all of them alike. A step's time is the Trainer's
``on_step_begin`` → ``on_step_end``: forward(s), backward and optimizer step. Step 1 is left
out of the steady figure (it is the largest batch, and faults the process's memory in); the
same rows in the same order make every mode's steps the same batches. A ratio is taken within
a round (mode over ``trace`` of the same round), and the median over rounds is reported.

    python benchmarks/latent_overhead.py                      # 4 modes x 3 rounds, ~20 min
    python benchmarks/latent_overhead.py --repeats 3 --rows 64
    python benchmarks/latent_overhead.py --modes trace online --profile   # where online goes

Writes ``results/latent_overhead.json``. ``--profile`` adds, for the ``online`` mode, one
extra child that runs the same steps under ``torch.profiler`` and prints the top operators and
the time inside the teacher's forward.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _machine

REPO = Path(__file__).resolve().parents[1]
MODES = ("trace", "online", "cached", "kd")
TARGETS = {"cached": 1.15, "online": 1.45}  # the step-time targets over trace-only
LORA = {"r": 16, "alpha": 32, "families": ["attention", "mlp"]}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/gsm8k/train.jsonl",
                        help="GSM8K train .jsonl (default: ../shared/data/gsm8k/train.jsonl "
                             "from the repository root)")
    parser.add_argument("--rows", type=int, default=48, help="GSM8K rows (one epoch)")
    parser.add_argument("--batch", type=int, default=4, help="per-device batch (rows per step)")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds of all modes")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--beta", type=float, default=0.5, help="the kd mode's β")
    parser.add_argument("--profile", action="store_true",
                        help="also profile one online run (torch.profiler), printed")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="where the adapter, cache and runs go (default: a temp dir)")
    _machine.add_dtype_argument(parser)
    parser.add_argument("--out", type=Path, default=REPO / "results/latent_overhead.json")
    parser.add_argument("--child", choices=(*MODES, "setup", "profile"), help=argparse.SUPPRESS)
    parser.add_argument("--round", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------- configs


def use_bf16(args) -> bool:
    import torch

    return _machine.resolve(args.dtype) == torch.bfloat16


def run_config(args, mode: str, output_dir: Path):
    """The ``reasondistill train`` config of ``mode`` (a RunConfig)."""
    from reasondistill.config import parse_config

    work = args.work_dir
    raw = {
        "output_dir": str(output_dir),
        "model": {"name": "smollm2-135m"},
        "data": {"source": "gsm8k", "path": str(args.data), "limit": args.rows},
        "format": {"max_length": args.max_length},
        "lora": dict(LORA),
        "train": {"phases": ["train"], "per_device_batch_size": args.batch,
                  "gradient_accumulation_steps": 1, "bf16": use_bf16(args),
                  "logging_steps": 2, "save_steps": 100_000,
                  "train": {"num_train_epochs": 1, "learning_rate": 2e-4}},
    }
    teacher = {"kind": "self", "adapter": str(work / "teacher-adapter")}
    # similarity_rows 0: no layer-similarity pass before and after training (it is no part
    # of a step, and would add its held-out forwards to the process's time and memory)
    latent = {"enabled": True, "similarity_rows": 0}
    if mode == "online":
        raw["distill"] = {**latent, "teacher": teacher}
    elif mode == "cached":
        raw["distill"] = {**latent, "teacher": {**teacher, "cache": str(work / "cache")}}
    elif mode == "kd":
        raw["distill"] = {**latent, "beta": args.beta, "teacher": teacher}
    return parse_config(raw, f"<latent_overhead {mode}>")


# ----------------------------------------------------------------------------- children


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def make_teacher_adapter(args, directory: Path) -> None:
    """A fresh LoRA on the student's base with non-zero B (the step cost is the same as a
    trained adapter's)."""
    import torch

    from reasondistill.config import LoraConfig, ModelConfig
    from reasondistill.lora import apply_lora
    from reasondistill.models import load_model

    model, _ = load_model(ModelConfig(name="smollm2-135m"),
                          dtype="bfloat16" if use_bf16(args) else "float32")
    torch.manual_seed(0)
    model, _ = apply_lora(model, LoraConfig(**LORA))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.02)
    model.save_pretrained(str(directory))


def run_setup(args) -> dict:
    """The teacher adapter, then (if a mode reads it) the teacher cache, timed."""
    from rich.console import Console

    adapter = args.work_dir / "teacher-adapter"
    started = time.perf_counter()
    make_teacher_adapter(args, adapter)
    record = {"adapter_seconds": round(time.perf_counter() - started, 2)}
    if "cached" in args.modes:
        from reasondistill.distill.cache import write_cache

        cfg = run_config(args, "cached", args.work_dir / "cache-run")
        started = time.perf_counter()
        result = write_cache(cfg, console=Console(quiet=True), progress=False)
        record.update({"cache_seconds": round(time.perf_counter() - started, 2),
                       "cache_rows": result.rows, "cache_mb": round(result.bytes / 1e6, 2),
                       "cache_aligned_tokens": result.aligned_tokens,
                       "cache_bytes_per_token": round(result.bytes_per_token, 1)})
    return record


def run_mode(args, mode: str) -> dict:
    """One timed ``run_training`` of ``mode``: per-step seconds, peak RSS, logged terms."""
    from rich.console import Console
    from transformers import TrainerCallback

    from reasondistill.train import collate
    from reasondistill.train.recipe import run_training

    steps: list[dict] = []
    lengths: list[list[int]] = []
    real_call = collate.PackedCollator.__call__

    training = []  # non-empty inside trainer.train() (the layer-similarity pass also collates)

    def counting_call(self, features):  # each training micro-batch's sequence lengths, in order
        batch = real_call(self, features)
        if training:
            lengths.append(batch["sequence_lengths"].tolist())
        return batch

    def cpu_seconds() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    class StepMeter(TrainerCallback):
        def on_train_begin(self, *_, **__):
            training.append(True)
            self.train_started = time.perf_counter()

        def on_step_begin(self, *_, **__):
            self.started, self.cpu = time.perf_counter(), cpu_seconds()

        def on_step_end(self, *_, **__):
            steps.append({"seconds": time.perf_counter() - self.started,
                          "cpu_seconds": cpu_seconds() - self.cpu,
                          "rss_mb": round(peak_rss_mb(), 1)})

        def on_train_end(self, *_, **__):
            training.clear()
            self.train_seconds = time.perf_counter() - self.train_started

    meter = StepMeter()
    collate.PackedCollator.__call__ = counting_call
    run_dir = args.work_dir / f"run-{mode}-{args.round}"
    cfg = run_config(args, mode, run_dir)
    run_training(cfg, console=Console(quiet=True), callbacks=[meter])
    for step, seqs in zip(steps, lengths):  # accumulation 1: one micro-batch per step
        step["tokens"], step["sequence_lengths"] = sum(seqs), seqs
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    terms = {key: round(statistics.fmean(r[key] for r in records if key in r), 4)
             for key in sorted({k for r in records for k in r if k.startswith(("loss_", "share_"))})}
    later = steps[1:]
    return {"mode": mode, "round": args.round, "steps": steps,
            "steady_step_s": sum(s["seconds"] for s in later) / max(len(later), 1),
            "steady_step_cpu_s": sum(s["cpu_seconds"] for s in later) / max(len(later), 1),
            "tokens_per_s": sum(s["tokens"] for s in later) / max(sum(s["seconds"] for s in later), 1e-9),
            "first_step_s": steps[0]["seconds"] if steps else None,
            "train_seconds": meter.train_seconds, "peak_rss_mb": round(peak_rss_mb(), 1),
            "terms": terms}


def run_profile(args) -> dict:
    """The ``online`` mode's steps under torch.profiler: top operators by self CPU time, and
    the time inside the teacher's forward (a record_function around ``teacher.signal``)."""
    from rich.console import Console
    from torch.profiler import ProfilerActivity, profile, record_function

    from reasondistill.distill import teacher as teacher_module
    from reasondistill.train.recipe import run_training

    real_signal = teacher_module.OnlineTeacher.signal

    def labelled_signal(self, batch, **kwargs):
        with record_function("teacher.signal"):
            return real_signal(self, batch, **kwargs)

    teacher_module.OnlineTeacher.signal = labelled_signal
    cfg = run_config(args, "online", args.work_dir / "run-profile")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        with record_function("run_training"):
            run_training(cfg, console=Console(quiet=True))
    averages = prof.key_averages()
    table = averages.table(sort_by="self_cpu_time_total", row_limit=25)
    labelled = {e.key: e.cpu_time_total / 1e6 for e in averages
                if e.key in ("teacher.signal", "run_training")}
    print(table)
    return {"teacher_signal_s": labelled.get("teacher.signal"),
            "run_training_s": labelled.get("run_training"), "table": table}


def run_child(args) -> None:
    import torch

    torch.manual_seed(0)
    if args.child == "setup":
        record = run_setup(args)
    elif args.child == "profile":
        record = run_profile(args)
    else:
        record = run_mode(args, args.child)
    args.child_out.write_text(json.dumps(record))


# ----------------------------------------------------------------------------- parent


def spawn(args, child: str, round_: int = 0) -> dict:
    out = args.work_dir / f"child-{child}-{round_}.json"
    cmd = [sys.executable, __file__, "--child", child, "--round", str(round_), "--child-out",
           str(out), "--work-dir", str(args.work_dir), "--data", str(args.data),
           "--rows", str(args.rows), "--batch", str(args.batch), "--max-length",
           str(args.max_length), "--beta", str(args.beta), "--dtype", args.dtype,
           "--modes", *args.modes]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    subprocess.run(cmd, check=True, env=env)
    return json.loads(out.read_text())


def same_batches(runs: list[dict]) -> bool:
    """Whether every run trained the same micro-batches in the same order."""
    first = [s["sequence_lengths"] for s in runs[0]["steps"]]
    return all([s["sequence_lengths"] for s in r["steps"]] == first for r in runs)


def _per_round(rows: list[dict], base: list[dict], key: str) -> list[float]:
    """``key`` of each round's run over the same round's trace-only run."""
    out = []
    for row in rows:
        match = [b for b in base if b["round"] == row["round"]]
        if match:
            out.append(row[key] / match[0][key])
    return out


def summarise(runs: list[dict], modes: list[str]) -> dict:
    by_mode = {m: [r for r in runs if r["mode"] == m] for m in modes}
    out = {}
    for mode, rows in by_mode.items():
        out[mode] = {
            "steady_step_s": round(statistics.median(r["steady_step_s"] for r in rows), 3),
            "steady_step_s_runs": [round(r["steady_step_s"], 3) for r in rows],
            "steady_step_cpu_s": round(statistics.median(r["steady_step_cpu_s"] for r in rows), 3),
            "tokens_per_s": round(statistics.median(r["tokens_per_s"] for r in rows), 1),
            "first_step_s": round(statistics.median(r["first_step_s"] for r in rows), 3),
            "train_seconds": round(statistics.median(r["train_seconds"] for r in rows), 2),
            "peak_rss_mb": round(max(r["peak_rss_mb"] for r in rows), 1),
            "peak_rss_mb_runs": [r["peak_rss_mb"] for r in rows],
            "terms": rows[-1]["terms"],
        }
        if mode != "trace" and by_mode.get("trace"):
            wall = _per_round(rows, by_mode["trace"], "steady_step_s")
            cpu = _per_round(rows, by_mode["trace"], "steady_step_cpu_s")
            out[mode].update({
                "over_trace": round(statistics.median(wall), 3),
                "over_trace_runs": [round(x, 3) for x in wall],
                "cpu_over_trace": round(statistics.median(cpu), 3),
                "cpu_over_trace_runs": [round(x, 3) for x in cpu]})
    return out


def print_table(summary: dict, setup: dict, machine: dict, dtype) -> None:
    print(f"\n{_machine.describe(machine)}; dtype {_machine.dtype_name(dtype)}")
    print("steady step = mean of steps 2.. (wall s); x trace = median over rounds of the "
          "round's ratio (each round's ratio in brackets); cpu x = the same for process CPU s")
    print(f"{'mode':<8}{'steady step s':>14}{'x trace':>9}  {'rounds':<20}{'cpu x':>7}"
          f"{'tok/s':>8}{'step 1 s':>10}{'train() s':>11}{'peak RSS MB':>13}  target")
    for mode, row in summary.items():
        ratio = row.get("over_trace", 1.0)
        target = TARGETS.get(mode)
        verdict = "" if target is None or mode == "trace" else (
            f"{'met' if ratio <= target else 'missed'} (<= {target})")
        runs = "[" + " ".join(f"{x:.2f}" for x in row.get("over_trace_runs", [])) + "]"
        print(f"{mode:<8}{row['steady_step_s']:>14.2f}{ratio:>9.3f}  {runs:<20}"
              f"{row.get('cpu_over_trace', 1.0):>7.3f}{row['tokens_per_s']:>8.0f}"
              f"{row['first_step_s']:>10.1f}{row['train_seconds']:>11.1f}"
              f"{row['peak_rss_mb']:>13.0f}  {verdict}")
    if "cache_seconds" in setup:
        print(f"teacher cache written once in {setup['cache_seconds']:.1f} s "
              f"({setup['cache_rows']} rows, {setup['cache_mb']:.1f} MB, "
              f"{setup['cache_bytes_per_token']:.0f} bytes per aligned token)")


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.child:
        return run_child(args)
    if not args.data.is_file():
        raise SystemExit(f"--data {args.data}: no such file (a GSM8K train.jsonl)")
    modes = [m for m in MODES if m in args.modes]
    dtype = _machine.resolve(args.dtype)
    machine_before = _machine.machine_record(dtype)
    with tempfile.TemporaryDirectory(prefix="latent-overhead-") as temp:
        args.work_dir = (args.work_dir or Path(temp)).resolve()
        args.work_dir.mkdir(parents=True, exist_ok=True)
        needs_teacher = any(m != "trace" for m in modes) or args.profile
        setup = spawn(args, "setup") if needs_teacher else {}
        runs = []
        for round_ in range(args.repeats):
            for mode in modes:  # interleaved: every round runs every mode once
                row = spawn(args, mode, round_)
                print(f"round {round_ + 1} {mode}: steady step {row['steady_step_s']:.3f} s, "
                      f"peak RSS {row['peak_rss_mb']:.0f} MB", flush=True)
                runs.append(row)
        profile = spawn(args, "profile") if args.profile else None
    import torch

    # the higher peak of before and after the runs (neighbours' load only ever lowers it);
    # here it is context, no figure is held against it
    machine = _machine.best_of(machine_before, _machine.machine_record(dtype))
    summary = summarise(runs, modes)
    print_table(summary, setup, machine, dtype)
    batches_match = same_batches(runs)
    if not batches_match:
        print("WARNING: the runs did not all train the same micro-batches in the same order")
    if profile:
        print(f"\nprofiled online run: teacher.signal {profile['teacher_signal_s']:.1f} s of "
              f"run_training's {profile['run_training_s']:.1f} s")
    result = {
        "settings": {"rows": args.rows, "batch": args.batch, "accumulation": 1,
                     "max_length": args.max_length, "repeats": args.repeats, "beta_kd": args.beta,
                     "lora": LORA, "model": "smollm2-135m", "data": str(args.data),
                     "dtype": _machine.dtype_name(dtype), "dtype_option": args.dtype,
                     "teacher_adapter": "fresh LoRA, B ~ N(0, 0.02), seed 0",
                     "torch": torch.__version__, "targets": TARGETS},
        "machine": machine,
        "cpu": machine["cpu"],
        "dtype": _machine.dtype_name(dtype),
        "setup": setup,
        "same_batches": batches_match,
        "modes": summary,
        "peak_rss_mb": {m: row["peak_rss_mb"] for m, row in summary.items()},
        "runs": runs,
    }
    for mode in ("cached", "online", "kd"):
        if mode in summary and "over_trace" in summary[mode]:
            result[f"{mode}_over_trace"] = summary[mode]["over_trace"]
    if profile:
        result["profile"] = {k: v for k, v in profile.items() if k != "table"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
