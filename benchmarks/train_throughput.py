"""Training throughput: reasondistill vs TRL ``SFTTrainer`` vs ``tracedistill`` (phase 1).

The same model (SmolLM2-135M-Instruct), the same GSM8K rows rendered by the same format
contract, the same LoRA (r 16 on every attention and MLP linear), batch, learning rate and
NEFTune α and compute dtype, one epoch each. Every contender runs in its own child process of
this one command, so each reports its own peak RSS; the parent prints the table and the ratios
and writes ``results/train_throughput.json`` with the CPU it ran on (``_machine.py``).

``--dtype auto`` (the default) is what ``reasondistill train`` picks with ``train.bf16: auto``:
a bf16 base under bf16 autocast where the CPU runs bf16 natively (AVX512-BF16/AMX), float32
everywhere else (an AVX2-only CPU emulates bf16 matmuls at ~1 GFLOP/s). All three contenders
run in that dtype; the LoRA adapters are float32 either way.

    python benchmarks/train_throughput.py                    # all three (~10 min, 2 AVX512 cores)
    python benchmarks/train_throughput.py --dtype float32    # force float32
    python benchmarks/train_throughput.py --rows 32 --contenders reasondistill trl
    python benchmarks/train_throughput.py --repeats 3         # median of 3 runs each

Tokens/s counts the real (non-padding) tokens of the sequences each contender trained on,
over the wall time of its ``trainer.train()`` call (model loading excluded).

Model FLOP utilisation counts the FLOPs the *method* needs, not what an implementation
spends: for LoRA training with frozen base weights, each token costs 2·N forward and 2·N
backward (input gradients only) over the N block weights, the output head (2·V·d forward +
2·V·d backward) only where a token is supervised, plus causal attention (2·2·n_layers·d·t/2
forward, twice that backward, t = position). The peak is the best of 30 2048² matmuls in the
dtype the contenders ran, on the same threads, measured before the contenders and after them;
the higher of the two counts (other work on the machine only lowers it). That count leaves out
the adapters' own matmuls (rank r on every adapted linear: 2·r·(in + out) forward, twice that
backward for the input and the adapter gradients), which LoRA training does need — about 6%
more FLOPs at r 16 on SmolLM2 — so a second figure, ``mfu_with_adapters``, counts them too;
``mfu`` stays the stricter one.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import _machine

REPO = Path(__file__).resolve().parents[1]
CONTENDERS = ("reasondistill", "trl", "tracedistill")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gsm8k-dir", type=Path, default=REPO.parent / "shared/data/gsm8k")
    parser.add_argument("--rows", type=int, default=64, help="GSM8K train rows (one epoch)")
    parser.add_argument("--batch", type=int, default=8, help="per-device batch size")
    parser.add_argument("--accumulation", type=int, default=1,
                        help="gradient accumulation steps (optimizer batch = batch x this)")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs of each contender, round-robin; the median is reported")
    parser.add_argument("--contenders", nargs="+", default=list(CONTENDERS), choices=CONTENDERS)
    _machine.add_dtype_argument(parser)
    parser.add_argument("--out", type=Path, default=REPO / "results/train_throughput.json")
    parser.add_argument("--contender", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------- shared set-up


def examples(args):
    from reasondistill.config import DataConfig
    from reasondistill.data.loaders import load_examples

    data = DataConfig(source="gsm8k", path=str(args.gsm8k_dir), split="train", limit=args.rows)
    return load_examples(data).examples


def run_dtype(args):
    """The contenders' compute dtype: ``--dtype`` resolved the product's way."""
    return _machine.resolve(args.dtype)


def use_bf16(args) -> bool:
    """Whether the trainers run bf16 (autocast over a bf16 base), as ``train.bf16`` decides."""
    import torch

    return run_dtype(args) == torch.bfloat16


def base_model(dtype):
    import torch

    from reasondistill.config import ModelConfig
    from reasondistill.models import load_model

    torch.manual_seed(0)
    return load_model(ModelConfig(name="smollm2-135m"), dtype=_machine.dtype_name(dtype))


def lora_config(args):
    from reasondistill.config import LoraConfig

    return LoraConfig(r=args.rank, alpha=2 * args.rank, families=["attention", "mlp"])


def peft_config(args, plan):
    from peft import LoraConfig

    return LoraConfig(r=args.rank, lora_alpha=2 * args.rank, lora_dropout=0.0,
                      target_modules=list(plan.target_modules), task_type="CAUSAL_LM")


def training_kwargs(args, out_dir):
    return dict(output_dir=str(out_dir), per_device_train_batch_size=args.batch,
                gradient_accumulation_steps=args.accumulation, learning_rate=2e-4,
                lr_scheduler_type="linear",
                num_train_epochs=1, max_grad_norm=1e9, logging_steps=1000, save_strategy="no",
                report_to="none", bf16=use_bf16(args), use_cpu=True, dataloader_num_workers=0,
                seed=0, remove_unused_columns=False)


# ----------------------------------------------------------------------------- contenders


def run_reasondistill(args, out_dir):
    """Our trainer: packed rows, largest batch first, head only on supervised positions,
    per-sequence NEFTune."""
    from transformers import TrainingArguments

    from reasondistill.data.format import FormatSpec
    from reasondistill.data.sampling import OrderedSampler
    from reasondistill.lora import apply_lora
    from reasondistill.tokenize import tokenize_examples
    from reasondistill.train.collate import PackedCollator
    from reasondistill.train.trainer import DistillTrainer

    model, tok = base_model(run_dtype(args))
    rows = tokenize_examples(tok, examples(args), FormatSpec(), max_length=args.max_length).rows
    model, _ = apply_lora(model, lora_config(args))
    dataset = [{"input_ids": r.input_ids, "labels": r.labels} for r in rows]
    trainer = DistillTrainer(
        model=model, args=TrainingArguments(**training_kwargs(args, out_dir)),
        train_dataset=dataset, data_collator=PackedCollator(), processing_class=tok,
        # as `reasondistill train` orders rows by default (train.largest_batch_first)
        sampler=OrderedSampler(["gsm8k"] * len(rows), args.batch * args.accumulation, seed=0,
                               stratify=False, lengths=[len(r.input_ids) for r in rows],
                               micro_batch_size=args.batch),
        neftune_alpha=5.0,
    )
    return timed_train(trainer, [len(r.input_ids) for r in rows],
                       [r.n_supervised for r in rows])


def run_trl(args, out_dir):
    """TRL SFTTrainer on prompt/completion pairs (completion-only loss), default padding."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from reasondistill.data.format import build_record
    from reasondistill.lora import plan_lora_targets
    from reasondistill.tokenize import render_chat

    model, tok = base_model(run_dtype(args))
    pairs = []
    for example in examples(args):
        prompt, full = render_chat(tok, build_record(example))
        pairs.append({"prompt": prompt, "completion": full[len(prompt):]})
    plan = plan_lora_targets(model, ["attention", "mlp"], rank=args.rank)
    # TRL turns activation checkpointing on by default; off, as for us, at equal settings.
    config = SFTConfig(**training_kwargs(args, out_dir), max_length=args.max_length,
                       completion_only_loss=True, neftune_noise_alpha=5.0, packing=False,
                       gradient_checkpointing=False,
                       dataset_kwargs={"add_special_tokens": False})
    trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(pairs),
                         processing_class=tok, peft_config=peft_config(args, plan))
    data = trainer.train_dataset
    lengths = [len(ids) for ids in data["input_ids"]]
    masks = data["completion_mask"] if "completion_mask" in data.column_names else None
    supervised = [sum(m) for m in masks] if masks is not None else lengths
    return timed_train(trainer, lengths, supervised)


def run_tracedistill(args, out_dir):
    """tracedistill==0.2.0's own phase-1 path (its ``_run_phase``), as train_two_phase runs it."""
    import pandas as pd
    from peft import get_peft_model
    from tracedistill import training as td

    from reasondistill.lora import plan_lora_targets

    model, tok = base_model(run_dtype(args))
    frame = pd.DataFrame([{"prompt": e.prompt, "generated_cot": e.trace, "answer": e.answer,
                           "type": e.type} for e in examples(args)])
    plan = plan_lora_targets(model, ["attention", "mlp"], rank=args.rank)
    model = get_peft_model(model, peft_config(args, plan))
    phase = td.PhaseConfig.train(per_device_train_batch_size=args.batch,
                                 gradient_accumulation_steps=args.accumulation,
                                 logging_steps=1000)
    cfg = td.TwoPhaseConfig(hard_types=["x"], output_dir=str(out_dir),
                            max_length=args.max_length, seed=0, phase1=phase,
                            bf16=use_bf16(args))
    records, types = td.build_records(frame, prompt_suffix=cfg.prompt_suffix)
    rows, _ = td._tokenize_records(records, types, tok, cfg)
    lengths = [len(r["input_ids"]) for r in rows]
    supervised = [sum(1 for label in r["labels"] if label != -100) for r in rows]
    trainer_box = {}
    original = td.StratifiedSFTTrainer.train

    def capture(self, *a, **kw):  # time exactly its trainer.train(), as for the others
        trainer_box["trainer"] = self
        started = time.perf_counter()
        result = original(self, *a, **kw)
        trainer_box["seconds"] = time.perf_counter() - started
        return result

    td.StratifiedSFTTrainer.train = capture
    # The changes to tracedistill: its bf16 follows --dtype (its default is True), and
    # transformers refuses bf16 on CPU unless use_cpu is set, which tracedistill's SFTConfig
    # never does (it targets GPUs).
    td.SFTConfig = functools.partial(td.SFTConfig, use_cpu=True)
    td._run_phase(model, tok, frame, phase, cfg, "phase1")
    return result_row(trainer_box["seconds"], lengths, supervised)


def timed_train(trainer, lengths, supervised):
    started = time.perf_counter()
    trainer.train()
    return result_row(time.perf_counter() - started, lengths, supervised)


def result_row(seconds, lengths, supervised):
    return {"seconds": round(seconds, 2), "tokens": sum(lengths),
            "supervised_tokens": sum(supervised), "sequences": len(lengths),
            "tokens_per_s": round(sum(lengths) / seconds, 1),
            "sequence_lengths": lengths, "supervised_lengths": supervised,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


RUNNERS = {"reasondistill": run_reasondistill, "trl": run_trl, "tracedistill": run_tracedistill}


# ----------------------------------------------------------------------------- FLOPs


def model_flops(lengths, supervised, adapter_rank: int = 0) -> float:
    """FLOPs LoRA training needs on these sequences (see the module docstring); with
    ``adapter_rank``, the adapters' own matmuls on every attention and MLP linear too."""
    from reasondistill.config import ModelConfig
    from reasondistill.models import load_model_config

    config = load_model_config(ModelConfig(name="smollm2-135m"))
    d, layers, vocab = config.hidden_size, config.num_hidden_layers, config.vocab_size
    kv = config.num_key_value_heads * (d // config.num_attention_heads)
    ff = config.intermediate_size
    block_params = layers * (d * d * 2 + d * kv * 2 + 3 * d * ff)
    linear = 4 * block_params * sum(lengths)
    head = 4 * vocab * d * sum(supervised)
    attention = 3 * sum(2 * layers * d * n * n for n in lengths)  # Σ_t 4·L·d·t ≈ 2·L·d·n², ×3
    ins_plus_outs = (d + d) * 2 + (d + kv) * 2 + (d + ff) * 3  # q, o; k, v; gate, up, down
    adapters = 6 * adapter_rank * ins_plus_outs * layers * sum(lengths)
    return float(linear + head + attention + adapters)


# ----------------------------------------------------------------------------- driver


def run_child(args) -> None:
    import tempfile

    import torch

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as out_dir:
        row = RUNNERS[args.contender](args, Path(out_dir))
    args.child_out.write_text(json.dumps(row))


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.contender:
        return run_child(args)
    import tempfile

    import torch

    from reasondistill.io import atomic_write_json

    dtype = run_dtype(args)
    load_before = os.getloadavg()  # other work on the machine moves whole runs
    # the peak before and after the contenders; the higher one is held against them
    machine_before = _machine.machine_record(dtype)
    print(f"compute dtype: {_machine.dtype_name(dtype)} (--dtype {args.dtype})", flush=True)
    runs = {name: [] for name in args.contenders}
    for round_index in range(args.repeats):  # round-robin, so load drift hits all alike
        for name in args.contenders:
            print(f"--- {name} (run {round_index + 1} of {args.repeats})", flush=True)
            with tempfile.NamedTemporaryFile(suffix=".json") as handle:
                cmd = [sys.executable, __file__, "--contender", name, "--child-out",
                       handle.name, "--gsm8k-dir", str(args.gsm8k_dir), "--rows",
                       str(args.rows), "--batch", str(args.batch), "--accumulation",
                       str(args.accumulation), "--max-length",
                       str(args.max_length), "--rank", str(args.rank),
                       "--dtype", _machine.dtype_name(dtype)]
                subprocess.run(cmd, check=True)
                runs[name].append(json.loads(Path(handle.name).read_text()))
    results = {name: median_run(rows) for name, rows in runs.items()}
    machine_after = _machine.machine_record(dtype)
    machine = _machine.best_of(machine_before, machine_after)
    peak = _machine.peak_flops(machine, dtype)
    ours = results.get("reasondistill")
    print(f"\n{_machine.describe(machine)}")
    print(f"MFU against the {_machine.dtype_name(dtype)} peak, {peak / 1e9:.1f} GFLOP/s (the "
          f"higher of {_machine.peak_flops(machine_before, dtype) / 1e9:.1f} before the "
          f"contenders and {_machine.peak_flops(machine_after, dtype) / 1e9:.1f} after)")
    print(f"{'contender':<15}{'tokens/s':>10}{'ratio':>8}{'peak RSS MB':>13}{'MFU':>8}"
          f"{'+adapters':>11}{'seconds':>9}")
    for name, row in results.items():
        flops = functools.partial(model_flops, row["sequence_lengths"], row["supervised_lengths"])
        row["mfu"] = round(flops() / row["seconds"] / peak, 4)
        row["mfu_with_adapters"] = round(flops(args.rank) / row["seconds"] / peak, 4)
        ratio = ours["tokens_per_s"] / row["tokens_per_s"] if ours else float("nan")
        print(f"{name:<15}{row['tokens_per_s']:>10.1f}{ratio:>7.2f}x{row['peak_rss_mb']:>13.0f}"
              f"{row['mfu']:>8.1%}{row['mfu_with_adapters']:>11.1%}{row['seconds']:>9.1f}")
    if args.repeats > 1:
        for name, rows in runs.items():
            print(f"{name}: tokens/s of the {len(rows)} runs "
                  f"{', '.join(str(r['tokens_per_s']) for r in rows)} (the median is shown)")
    summary = {
        "contenders": {name: {k: v for k, v in row.items() if not k.endswith("_lengths")}
                       | {"runs_tokens_per_s": [r["tokens_per_s"] for r in runs[name]]}
                       for name, row in results.items()},
        "ratio_vs_trl": _ratio(results, "trl"),
        "ratio_vs_tracedistill": _ratio(results, "tracedistill"),
        "mfu": ours["mfu"] if ours else None,
        "mfu_with_adapters": ours["mfu_with_adapters"] if ours else None,
        "dtype": _machine.dtype_name(dtype),
        "matmul_peak_gflops": round(peak / 1e9, 1),
        "matmul_peak_gflops_before_after": [
            round(_machine.peak_flops(m, dtype) / 1e9, 1) for m in (machine_before, machine_after)],
        "machine": machine,
        "settings": {"model": f"SmolLM2-135M-Instruct ({_machine.dtype_name(dtype)} base, "
                              "fp32 LoRA)",
                     "dtype": _machine.dtype_name(dtype), "dtype_option": args.dtype,
                     "bf16_autocast": use_bf16(args),
                     "data": f"GSM8K train, first {args.rows} rows", "rows": args.rows,
                     "per_device_batch": args.batch,
                     "gradient_accumulation": args.accumulation, "max_length": args.max_length,
                     "lora": f"r={args.rank} alpha={2 * args.rank} attention+mlp",
                     "lr": 2e-4, "neftune_alpha": 5.0, "epochs": 1,
                     "threads": torch.get_num_threads(), "repeats": args.repeats,
                     "load_average_before": load_before, "load_average_after": os.getloadavg(),
                     "versions": library_versions()},
    }
    atomic_write_json(args.out, summary)
    print(f"wrote {args.out}")


def library_versions() -> dict[str, str]:
    """The versions that produced the numbers: an upgrade of any of them can move them."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("torch", "transformers", "peft", "trl", "accelerate", "tracedistill"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def median_run(rows: list[dict]) -> dict:
    """The run with the median tokens/s (the lower middle one for an even count)."""
    ordered = sorted(rows, key=lambda row: row["tokens_per_s"])
    return ordered[(len(ordered) - 1) // 2]


def _ratio(results, other):
    if "reasondistill" not in results or other not in results:
        return None
    return round(results["reasondistill"]["tokens_per_s"] / results[other]["tokens_per_s"], 3)


if __name__ == "__main__":
    main()
