"""Output head + cross-entropy: full float32 logits vs the fused, chunked head loss.

Times forward + backward of the completion loss over ``--rows`` supervised positions with
SmolLM2-135M's head shape (576 → 49,152, in ``--dtype``: ``auto`` = bf16 where the CPU has
it natively, else float32, as training picks), the way the trainer computes it each step,
both ways and for several chunk sizes, alternating them so a change in machine load biases
none, and prints the ratios. ``CHUNK_BYTES`` in ``reasondistill.train.head_loss`` is the
size training uses.

    python benchmarks/head_loss.py [--rows 1000] [--repeats 5] [--dtype auto]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import _machine
import torch

from reasondistill.io import atomic_write_json
from reasondistill.train import head_loss

REPO = Path(__file__).resolve().parents[1]
CHUNK_MIB = (8, 16, 32, 64)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000, help="supervised positions")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    _machine.add_dtype_argument(parser)
    parser.add_argument("--out", default=str(REPO / "results" / "head_loss.json"))
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dtype = _machine.resolve(args.dtype)
    hidden = torch.randn(args.rows, 576, dtype=dtype, requires_grad=True)
    weight = torch.randn(49152, 576, dtype=dtype) * 0.05
    targets = torch.randint(0, weight.shape[0], (args.rows,))

    def full_logits():
        logits = (hidden @ weight.T).float()
        torch.nn.functional.cross_entropy(logits, targets, reduction="sum").backward()

    def fused(mib):
        def run():
            head_loss.CHUNK_BYTES = mib * 2**20
            head_loss.head_cross_entropy(hidden, weight, targets).backward()
        return run

    contenders = {"full_logits": full_logits} | {f"fused_{m}MiB": fused(m) for m in CHUNK_MIB}
    default = head_loss.CHUNK_BYTES
    best = dict.fromkeys(contenders, float("inf"))
    for run in contenders.values():  # warm-up
        run()
    for _ in range(args.repeats):
        for name, run in contenders.items():
            started = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - started)
    head_loss.CHUNK_BYTES = default
    for name, seconds in best.items():
        print(f"{name:<14} {seconds * 1e3:7.1f} ms  "
              f"{best['full_logits'] / seconds:5.2f}x full logits")
    machine = _machine.report_machine(dtype)
    atomic_write_json(Path(args.out), {
        "benchmark": "head_loss", "ms_best_of_repeats": {k: round(v * 1e3, 1)
                                                         for k, v in best.items()},
        "training_chunk_mib": default // 2**20,
        "dtype": _machine.dtype_name(dtype), "machine": machine,
        "settings": {"rows": args.rows, "hidden": 576, "vocab": 49152,
                     "dtype": _machine.dtype_name(dtype),
                     "repeats": args.repeats, "threads": args.threads,
                     "torch": torch.__version__},
    })
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
