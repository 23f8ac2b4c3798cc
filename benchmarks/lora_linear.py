"""One LoRA linear, forward + backward: PEFT's forward vs the update inside one ``addmm``.

SmolLM2-135M's linear shapes (576 → 576, 576 → 192, 576 → 1536, 1536 → 576) with an fp32
rank-16 adapter over ``--tokens`` packed tokens, the way training runs them: with ``--dtype``
bfloat16 (``auto`` where the CPU has it natively) a bf16 base under bf16 autocast, with float32
a float32 base and no autocast. The two paths alternate so a change in machine load biases
neither. ``reasondistill.train.lora_fused`` is what training uses.

    python benchmarks/lora_linear.py [--tokens 2048] [--repeats 5] [--dtype auto]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import _machine
import torch

from reasondistill.io import atomic_write_json
from reasondistill.train.lora_fused import fused_lora_linears

REPO = Path(__file__).resolve().parents[1]
SHAPES = ((576, 576), (576, 192), (576, 1536), (1536, 576))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    _machine.add_dtype_argument(parser)
    parser.add_argument("--out", default=str(REPO / "results" / "lora_linear.json"))
    return parser.parse_args(argv)


def lora_layer(n_in, n_out, rank, dtype):
    from peft import LoraConfig, get_peft_model

    model = torch.nn.Sequential(torch.nn.Linear(n_in, n_out, bias=False)).to(dtype)
    model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["0"]))
    for name, param in model.named_parameters():
        if "lora_" in name:
            param.data = param.data.float()
            if "lora_B" in name:
                torch.nn.init.normal_(param, std=0.02)
    return model


def time_shape(n_in: int, n_out: int, args, dtype) -> dict[str, float]:
    """Best seconds per forward + backward of one LoRA linear, each way."""
    from peft.helpers import disable_input_dtype_casting

    model = lora_layer(n_in, n_out, args.rank, dtype)
    x = torch.randn(args.tokens, n_in, dtype=dtype, requires_grad=True)
    grad = torch.randn(args.tokens, n_out, dtype=dtype)

    def step():
        with _machine.autocast(dtype), disable_input_dtype_casting(model):
            out = model(x)
        out.backward(grad)

    def fused_step():
        with fused_lora_linears(model):
            step()

    best = {"peft": float("inf"), "addmm": float("inf")}
    for _ in range(args.repeats + 1):  # the first round warms up
        for name, run in (("peft", step), ("addmm", fused_step)):
            started = time.perf_counter()
            for _ in range(5):
                run()
            best[name] = min(best[name], (time.perf_counter() - started) / 5)
    return best


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dtype = _machine.resolve(args.dtype)
    rows, total = [], {"peft": 0.0, "addmm": 0.0}
    for n_in, n_out in SHAPES:
        best = time_shape(n_in, n_out, args, dtype)
        for name in best:
            total[name] += best[name]
        rows.append({"shape": f"{n_in}->{n_out}", "peft_ms": round(best["peft"] * 1e3, 2),
                     "addmm_ms": round(best["addmm"] * 1e3, 2),
                     "ratio": round(best["peft"] / best["addmm"], 3)})
        print(f"{n_in:>5} -> {n_out:<5} PEFT {best['peft'] * 1e3:7.2f} ms   addmm "
              f"{best['addmm'] * 1e3:7.2f} ms   {best['peft'] / best['addmm']:.2f}x")
    ratio = total["peft"] / total["addmm"]
    name = _machine.dtype_name(dtype)
    print(f"all four shapes: addmm is {ratio:.2f}x PEFT's forward + backward "
          f"({args.tokens} tokens, {name}, {args.threads} threads)")
    machine = _machine.report_machine(dtype)
    atomic_write_json(Path(args.out), {
        "benchmark": "lora_linear", "ratio_addmm_vs_peft": round(ratio, 3), "shapes": rows,
        "dtype": name, "machine": machine,
        "settings": {"tokens": args.tokens, "rank": args.rank, "base": name,
                     "adapter": "float32",
                     "autocast": "bfloat16" if dtype == torch.bfloat16 else "none",
                     "repeats": args.repeats, "threads": args.threads,
                     "torch": torch.__version__},
    })
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
