"""Saved activations and step time: autograd's RMSNorm and softmax vs the lean ones.

One packed batch of 8 GSM8K rows through SmolLM2-135M with LoRA r16 on attention and MLP
(fp32 adapter; with ``--dtype`` bfloat16 a bf16 base under bf16 autocast, with float32 a float32
base; ``auto`` picks as training does), the trainer's loss and backward, under the trainer's
speed-ups — once with transformers' own RMSNorm and a float32 softmax cast to the compute
dtype (autograd keeps both under bf16), once with ``reasondistill.train.lean_layers``. Prints
the bytes autograd keeps for the backward pass (every saved tensor's storage counted once,
model weights excluded) and the median forward + backward time, the two alternating. The
saving is a bf16 one: in float32 the two sides keep nearly the same.

    python benchmarks/lean_layers.py [--repeats 5] [--dtype auto]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from pathlib import Path

import _machine
import torch
from train_throughput import REPO, base_model, examples, lora_config


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gsm8k-dir", default=str(REPO.parent / "shared/data/gsm8k"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    _machine.add_dtype_argument(parser)
    parser.add_argument("--out", default=str(REPO / "results" / "lean_layers.json"))
    return parser.parse_args(argv)


@contextlib.contextmanager
def autograd_layers():
    """transformers' RMSNorm forward and a plain float32 softmax in the packed attention."""
    from reasondistill.train import lean_layers, packing

    def eager_softmax_to(scores, dtype):
        return torch.softmax(scores, dim=-1, dtype=torch.float32).to(dtype)

    real_norms, real_softmax = lean_layers.lean_norms, packing.softmax_to
    lean_layers.lean_norms = lambda model: contextlib.nullcontext(0)
    packing.softmax_to = eager_softmax_to
    try:
        yield
    finally:
        lean_layers.lean_norms, packing.softmax_to = real_norms, real_softmax


def main(argv=None) -> None:
    from transformers import TrainingArguments

    from reasondistill.data.format import FormatSpec
    from reasondistill.io import atomic_write_json
    from reasondistill.lora import apply_lora
    from reasondistill.tokenize import tokenize_examples
    from reasondistill.train.collate import PackedCollator
    from reasondistill.train.packing import packed_forward
    from reasondistill.train.trainer import DistillTrainer

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    dtype = _machine.resolve(args.dtype)
    model, tok = base_model(dtype)
    rows = tokenize_examples(tok, examples(argparse.Namespace(gsm8k_dir=args.gsm8k_dir, rows=8)),
                             FormatSpec(), max_length=512).rows
    model, _ = apply_lora(model, lora_config(argparse.Namespace(rank=16)))
    model.train()
    collator = PackedCollator()
    batch = collator([{"input_ids": r.input_ids, "labels": r.labels} for r in rows])
    lengths = batch.pop("sequence_lengths").tolist()
    trainer = DistillTrainer(
        model=model, train_dataset=[], data_collator=collator,
        args=TrainingArguments(output_dir=tempfile.mkdtemp(), report_to="none", use_cpu=True,
                               bf16=dtype == torch.bfloat16))
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def step(measure: bool) -> int:
        kept = {}

        def pack(tensor):
            pointer = tensor.untyped_storage().data_ptr()
            if measure and pointer not in weights:
                kept[pointer] = tensor.untyped_storage().nbytes()
            return tensor

        with (trainer.training_speedups(), packed_forward(lengths),
              _machine.autocast(dtype),
              torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor)):
            loss = trainer.compute_loss(model, dict(batch))
        loss.backward()
        model.zero_grad(set_to_none=True)
        return sum(kept.values())

    sides = {"autograd": autograd_layers, "lean": contextlib.nullcontext}
    saved, seconds = {}, {name: [] for name in sides}
    for name, context in sides.items():
        with context():
            saved[name] = step(measure=True)
    for _ in range(args.repeats + 1):  # the first round warms up
        for name, context in sides.items():
            with context():
                started = time.perf_counter()
                step(measure=False)
                seconds[name].append(time.perf_counter() - started)
    median = {name: statistics.median(times[1:]) for name, times in seconds.items()}
    tokens = sum(lengths)
    for name in sides:
        print(f"{name:<9} saved for backward {saved[name] / 2**20:7.0f} MiB   "
              f"forward + backward {median[name]:6.2f} s")
    print(f"lean keeps {1 - saved['lean'] / saved['autograd']:.0%} less for the backward pass "
          f"and runs the step {median['autograd'] / median['lean']:.2f}x as fast "
          f"({tokens} packed tokens, {_machine.dtype_name(dtype)}, {args.threads} threads)")
    machine = _machine.report_machine(dtype)
    atomic_write_json(Path(args.out), {
        "benchmark": "lean_layers", "tokens": tokens,
        "dtype": _machine.dtype_name(dtype), "machine": machine,
        "saved_mib": {name: round(saved[name] / 2**20, 1) for name in sides},
        "saved_reduction": round(1 - saved["lean"] / saved["autograd"], 3),
        "step_seconds_median": {name: round(median[name], 3) for name in sides},
        "ratio_step_time": round(median["autograd"] / median["lean"], 3),
        "settings": {"model": f"SmolLM2-135M-Instruct ({_machine.dtype_name(dtype)} base, "
                              "fp32 LoRA r16 attention+mlp)",
                     "rows": 8, "repeats": args.repeats, "threads": args.threads,
                     "torch": torch.__version__},
    })
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
