"""Eval speed: our batched generation backend vs one-at-a-time ``model.generate``.

Same model (SmolLM2-135M-Instruct, the embedded default), same GSM8K test problems, same
prompts (``render_prompt``), greedy, same ``max_new_tokens`` and the same stop rule (EOS, or
the answer box after ``</think>`` closing), so both arms do the same work and should write
the same tokens. The baseline is what a user writes by hand: a loop of ``model.generate``
on one unpadded prompt at a time. Half of the baseline runs before the batched run and half
after, so a change in machine load between the two arms biases neither.

``--dtype auto`` (the default) is what ``reasondistill eval`` picks: bfloat16 where the CPU
runs it natively (AVX512-BF16/AMX), float32 elsewhere. Greedy decoding is compared token for
token; in bfloat16 a batched matmul may round differently from a one-row matmul, so some long
generations diverge after a near-tie, and ``--check-dtype float32`` (the default) then repeats
the comparison (on ``--check-n`` problems) in float32 to show whether batching itself changes
anything. In float32 batching changes no token, and the check is skipped.

    python benchmarks/eval_speed.py [--gsm8k-dir ../shared/data/gsm8k] [--n 64]
    python benchmarks/eval_speed.py --dtype float32 --out results/eval_speed.json
    python benchmarks/eval_speed.py --dtype bfloat16 --out results/eval_speed_bf16.json
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import _machine
import torch
from rich.console import Console
from rich.table import Table
from transformers import StoppingCriteriaList

from reasondistill.config import DataConfig, ModelConfig
from reasondistill.data.format import FormatSpec
from reasondistill.data.loaders import load_examples
from reasondistill.evaluate.generate import AnswerStop, TransformersBackend
from reasondistill.io import atomic_write_json
from reasondistill.models import load_model
from reasondistill.tokenize import render_prompt

REPO = Path(__file__).resolve().parents[1]


def one_at_a_time(model, tokenizer, prompts: list[str],
                  backend: TransformersBackend) -> list[list[int]]:
    """The baseline: plain ``model.generate`` per prompt (no padding, default cache), with the
    backend's generation settings and stop rule."""
    outputs = []
    for prompt in prompts:
        ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
        stop = AnswerStop.fresh(tokenizer, 1, backend.eos_ids)
        model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=backend.config,
                       stopping_criteria=StoppingCriteriaList([stop]))
        outputs.append(stop.rows[0].tokens)
    return outputs


def compare(batched: list[list[int]], single: list[list[int]]) -> dict:
    """Token-for-token agreement, and where the first disagreement falls when there is one."""
    diverged = []
    for index, (a, b) in enumerate(zip(batched, single)):
        if a != b:
            at = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            diverged.append({"problem": index, "first_different_token": at,
                             "tokens_batched": len(a), "tokens_single": len(b)})
    return {"identical": not diverged, "n_identical": len(batched) - len(diverged),
            "n": len(batched), "diverged": diverged}


def run_arms(model, tokenizer, prompts: list[str], *, batch_size: int,
             max_new_tokens: int) -> dict:
    backend = TransformersBackend(model, tokenizer, max_new_tokens=max_new_tokens,
                                  batch_size=batch_size)
    warm = prompts[:2]  # first calls pay one-time costs (allocator, kernels)
    backend.generate(warm)
    one_at_a_time(model, tokenizer, warm, backend)

    half = len(prompts) // 2
    started = time.perf_counter()
    single = one_at_a_time(model, tokenizer, prompts[:half], backend)
    single_s = time.perf_counter() - started
    started = time.perf_counter()
    generations = backend.generate(prompts)
    batched_s = time.perf_counter() - started
    started = time.perf_counter()
    single += one_at_a_time(model, tokenizer, prompts[half:], backend)
    single_s += time.perf_counter() - started

    batched = [samples[0].token_ids for samples in generations]
    n = len(prompts)
    return {
        "batched": {"seconds": batched_s, "problems_per_s": n / batched_s,
                    "tokens_per_s": sum(map(len, batched)) / batched_s,
                    "generated_tokens": sum(map(len, batched))},
        "single": {"seconds": single_s, "problems_per_s": n / single_s,
                   "tokens_per_s": sum(map(len, single)) / single_s,
                   "generated_tokens": sum(map(len, single))},
        "speedup": single_s / batched_s,
        "match": compare(batched, single),
        "stop_reasons": {r: sum(s[0].stop_reason == r for s in generations)
                         for r in ("answer", "eos", "length")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gsm8k-dir", default=str(REPO.parent / "shared" / "data" / "gsm8k"))
    parser.add_argument("--n", type=int, default=64, help="GSM8K test problems (the first N)")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    _machine.add_dtype_argument(parser)
    parser.add_argument("--check-dtype", default="float32",
                        help="dtype of the extra identity check ('none' to skip)")
    parser.add_argument("--check-n", type=int, default=16)
    parser.add_argument("--out", default=str(REPO / "results" / "eval_speed.json"))
    args = parser.parse_args()
    console = Console()

    examples = load_examples(DataConfig(source="gsm8k", path=args.gsm8k_dir, split="test",
                                        limit=args.n)).examples
    dtype = _machine.dtype_name(_machine.resolve(args.dtype))
    model, tokenizer = load_model(ModelConfig(), dtype=dtype)
    prompts = [render_prompt(tokenizer, e.prompt, FormatSpec()) for e in examples]
    load_before = os.getloadavg()
    main_run = run_arms(model, tokenizer, prompts, batch_size=args.batch_size,
                        max_new_tokens=args.max_new_tokens)
    check = None
    if args.check_dtype != "none" and args.check_dtype != dtype:
        check_model, _ = load_model(ModelConfig(), dtype=args.check_dtype)
        check = run_arms(check_model, tokenizer, prompts[:args.check_n],
                         batch_size=args.batch_size, max_new_tokens=args.max_new_tokens)
        check = {"dtype": args.check_dtype, "n": len(prompts[:args.check_n]), **check}

    machine = _machine.report_machine(_machine.resolve(dtype))
    result = {
        "benchmark": "eval_speed", "dtype": dtype, "machine": machine,
        "speedup": main_run["speedup"],
        "outputs_identical": main_run["match"]["identical"],
        "problems_per_s_batched": main_run["batched"]["problems_per_s"],
        "problems_per_s_single": main_run["single"]["problems_per_s"],
        "settings": {
            "model": "smollm2-135m (SmolLM2-135M-Instruct)", "dtype": dtype,
            "n_problems": len(prompts), "data": f"{args.gsm8k_dir} test[:{args.n}]",
            "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size,
            "decoding": "greedy", "stop": "EOS or the answer box after </think>",
            "torch_threads": torch.get_num_threads(), "cpu": machine["cpu"]["model"],
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(), "torch": torch.__version__,
        },
        "main": main_run,
        "float_check": check,
    }
    atomic_write_json(args.out, result)

    table = Table(title=f"eval speed: {len(prompts)} GSM8K problems, SmolLM2-135M, {dtype}, "
                        f"greedy, max_new_tokens={args.max_new_tokens}", title_justify="left")
    for column in ("arm", "seconds", "problems/s", "tokens/s"):
        table.add_column(column, justify="right" if column != "arm" else "left")
    for arm, label in (("single", "one-at-a-time generate"),
                       ("batched", f"batched backend (batch {args.batch_size})")):
        r = main_run[arm]
        table.add_row(label, f"{r['seconds']:.1f}", f"{r['problems_per_s']:.3f}",
                      f"{r['tokens_per_s']:.1f}")
    console.print(table)
    match = main_run["match"]
    console.print(f"speedup {main_run['speedup']:.2f}x; identical outputs "
                  f"{match['n_identical']}/{match['n']} ({dtype})")
    if check:
        console.print(f"{check['dtype']} check on {check['n']} problems: identical "
                      f"{check['match']['n_identical']}/{check['match']['n']}, speedup "
                      f"{check['speedup']:.2f}x")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
