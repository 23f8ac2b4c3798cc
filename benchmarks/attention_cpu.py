"""Packed-training attention on CPU: the fused SDPA kernel vs matmul + softmax, per sequence.

The packed trainer attends once per sequence. This times one attention layer's forward and
backward over the sequences of real GSM8K training rows (SmolLM2-135M's shapes: 9 query
heads, 3 key/value heads, head dim 64, in ``--dtype``: ``auto`` = bf16 where the CPU has it
natively, else float32, as training picks) both ways, alternating the two so a change in
machine load biases neither, and prints the ratio. ``EXPLICIT_ATTENTION_MAX_TOKENS`` in
``reasondistill.train.packing`` decides which one training uses.

    python benchmarks/attention_cpu.py [--rows 64] [--repeats 5] [--dtype auto]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from types import SimpleNamespace

import _machine
import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from reasondistill.config import DataConfig, ModelConfig
from reasondistill.data.format import FormatSpec
from reasondistill.data.loaders import load_examples
from reasondistill.io import atomic_write_json
from reasondistill.models import load_model_config, load_tokenizer
from reasondistill.tokenize import tokenize_examples
from reasondistill.train.packing import explicit_causal_attention

REPO = Path(__file__).resolve().parents[1]


def sequence_lengths(gsm8k_dir: str, rows: int) -> list[int]:
    examples = load_examples(DataConfig(source="gsm8k", path=gsm8k_dir, split="train",
                                        limit=rows)).examples
    tokenizer = load_tokenizer("smollm2-135m")
    return [len(r.input_ids) for r in tokenize_examples(tokenizer, examples, FormatSpec(),
                                                        max_length=512).rows]


def one_layer(kernel, lengths, heads, kv_heads, dim, dtype) -> float:
    """Seconds for forward + backward of one attention layer over every sequence."""
    module = SimpleNamespace(is_causal=True, training=True, num_key_value_groups=heads // kv_heads)
    tensors = [(torch.randn(1, heads, n, dim, dtype=dtype, requires_grad=True),
                torch.randn(1, kv_heads, n, dim, dtype=dtype, requires_grad=True),
                torch.randn(1, kv_heads, n, dim, dtype=dtype, requires_grad=True))
               for n in lengths]
    started = time.perf_counter()
    for q, k, v in tensors:
        out = kernel(module, q, k, v)
        out.backward(torch.ones_like(out))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gsm8k-dir", default=str(REPO.parent / "shared" / "data" / "gsm8k"))
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(REPO / "results" / "attention_cpu.json"))
    _machine.add_dtype_argument(parser)
    args = parser.parse_args()
    dtype = _machine.resolve(args.dtype)

    config = load_model_config(ModelConfig(name="smollm2-135m"))
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    dim = config.hidden_size // heads
    lengths = sequence_lengths(args.gsm8k_dir, args.rows)
    kernels = {
        "fused_sdpa": lambda m, q, k, v: sdpa_attention_forward(m, q, k, v, None)[0],
        "explicit": explicit_causal_attention,
    }
    for kernel in kernels.values():  # warm-up
        one_layer(kernel, lengths[:4], heads, kv_heads, dim, dtype)
    seconds = {name: [] for name in kernels}
    for _ in range(args.repeats):
        for name, kernel in kernels.items():
            seconds[name].append(one_layer(kernel, lengths, heads, kv_heads, dim, dtype))
    best = {name: min(times) for name, times in seconds.items()}
    ratio = best["fused_sdpa"] / best["explicit"]
    for name in kernels:
        print(f"{name:<11} {best[name] * 1000:8.1f} ms per layer (fwd+bwd, {len(lengths)} sequences)")
    print(f"explicit is {ratio:.2f}x the speed of the fused kernel "
          f"(sequences {min(lengths)}-{max(lengths)} tokens, {_machine.dtype_name(dtype)}, "
          f"{torch.get_num_threads()} threads)")
    machine = _machine.report_machine(dtype)
    atomic_write_json(Path(args.out), {
        "benchmark": "attention_cpu", "ratio_explicit_vs_fused": round(ratio, 3),
        "ms_per_layer": {name: round(s * 1000, 1) for name, s in best.items()},
        "dtype": _machine.dtype_name(dtype), "machine": machine,
        "settings": {"heads": heads, "kv_heads": kv_heads, "head_dim": dim,
                     "dtype": _machine.dtype_name(dtype),
                     "sequences": len(lengths), "min_tokens": min(lengths),
                     "max_tokens": max(lengths), "repeats": args.repeats,
                     "threads": torch.get_num_threads(), "torch": torch.__version__},
    })
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
