"""Where a training step's time goes: the same packed batches repeated, timed and profiled.

``train_throughput.py`` times whole one-epoch runs, where every step is a new batch and the
first one pays the warm-up. This repeats a few packed batches of GSM8K rows through the
trainer's own loss and backward, under the trainer's own speed-ups (SmolLM2-135M, fp32 LoRA
r16 on attention and MLP, batch 8; ``--dtype`` as in ``train_throughput.py``: ``auto`` = a bf16
base under bf16 autocast where the CPU has bf16 natively, else float32), prints the CPU, each
repetition's time and MFU (same FLOP count as ``train_throughput.py``, against the matmul peak
of the dtype it ran), and with ``--profile`` the operators of the last repetition.
``--compile`` tries ``torch.compile`` on whole decoder layers or on their MLPs and norms.

    python benchmarks/train_step_profile.py                       # 2 batches x 4 repetitions
    python benchmarks/train_step_profile.py --profile             # + operator table
    python benchmarks/train_step_profile.py --compile layers      # static shapes
    python benchmarks/train_step_profile.py --compile mlp-norm --dynamic
"""

from __future__ import annotations

import argparse
import tempfile
import time

import _machine
import torch
from train_throughput import REPO, base_model, examples, lora_config, model_flops


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gsm8k-dir", default=str(REPO.parent / "shared/data/gsm8k"))
    parser.add_argument("--batches", type=int, default=2, help="packed batches of 8 rows")
    parser.add_argument("--reps", type=int, default=4, help="repetitions of each batch")
    parser.add_argument("--compile", choices=["none", "layers", "mlp-norm"], default="none")
    parser.add_argument("--dynamic", action="store_true", help="torch.compile(dynamic=True)")
    parser.add_argument("--profile", action="store_true", help="operator table of the last step")
    parser.add_argument("--threads", type=int, default=2)
    _machine.add_dtype_argument(parser)
    return parser.parse_args(argv)


def compile_regions(model, mode: str, dynamic: bool) -> None:
    layers = model.get_base_model().model.layers
    for layer in layers:
        if mode == "layers":
            layer.compile(dynamic=dynamic)
        elif mode == "mlp-norm":
            for part in (layer.mlp, layer.input_layernorm, layer.post_attention_layernorm):
                part.compile(dynamic=dynamic)


def main(argv=None) -> None:
    from transformers import TrainingArguments

    from reasondistill.data.format import FormatSpec
    from reasondistill.lora import apply_lora
    from reasondistill.tokenize import tokenize_examples
    from reasondistill.train.collate import PackedCollator
    from reasondistill.train.packing import packed_forward
    from reasondistill.train.trainer import DistillTrainer

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    dtype = _machine.resolve(args.dtype)
    data_args = argparse.Namespace(gsm8k_dir=args.gsm8k_dir, rows=8 * args.batches)
    model, tok = base_model(dtype)
    rows = tokenize_examples(tok, examples(data_args), FormatSpec(), max_length=512).rows
    model, _ = apply_lora(model, lora_config(argparse.Namespace(rank=16)))
    model.train()
    if args.compile != "none":
        compile_regions(model, args.compile, args.dynamic)
    collator = PackedCollator()
    batches = [collator([{"input_ids": r.input_ids, "labels": r.labels} for r in rows[i:i + 8]])
               for i in range(0, len(rows), 8)]
    trainer = DistillTrainer(
        model=model, train_dataset=[], data_collator=collator,
        args=TrainingArguments(output_dir=tempfile.mkdtemp(), report_to="none", use_cpu=True,
                               bf16=dtype == torch.bfloat16))
    machine = _machine.machine_record(dtype)
    peak = _machine.peak_flops(machine, dtype)
    print(_machine.describe(machine))
    print(f"MFU against the {_machine.dtype_name(dtype)} peak, {peak / 1e9:.1f} GFLOP/s")

    def step(batch):
        batch = dict(batch)
        lengths = batch.pop("sequence_lengths").tolist()
        with packed_forward(lengths), _machine.autocast(dtype):
            loss = trainer.compute_loss(model, batch)
        loss.backward()
        model.zero_grad(set_to_none=True)

    with trainer.training_speedups():
        for index, batch in enumerate(batches):
            lengths = batch["sequence_lengths"].tolist()
            supervised = int((batch["labels"] != -100).sum())
            flops = model_flops(lengths, [supervised])
            for rep in range(args.reps):
                last = index == len(batches) - 1 and rep == args.reps - 1
                profiler = torch.profiler.profile() if args.profile and last else None
                started = time.perf_counter()
                if profiler:
                    with profiler:
                        step(batch)
                else:
                    step(batch)
                seconds = time.perf_counter() - started
                print(f"batch {index} ({sum(lengths)} tokens) rep {rep}: {seconds:6.2f} s  "
                      f"{sum(lengths) / seconds:6.1f} tokens/s  MFU {flops / seconds / peak:5.1%}",
                      flush=True)
    if args.profile:
        events = profiler.key_averages()
        total = sum(e.self_cpu_time_total for e in events)
        print(f"\noperators of the last step (self CPU time, {total / 1e6:.2f} s in all):")
        for event in sorted(events, key=lambda e: -e.self_cpu_time_total)[:15]:
            print(f"  {event.key[:40]:<40} {event.self_cpu_time_total / 1e3:9.1f} ms "
                  f"{event.self_cpu_time_total / total:6.1%}  x{event.count}")


if __name__ == "__main__":
    main()
