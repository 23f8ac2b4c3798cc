"""What every benchmark records about the machine it ran on, and the peak its MFU is held to.

One place for the scripts in ``benchmarks/``: the ``--dtype`` option (``auto`` is what the
product picks, :func:`reasondistill.models.resolve_dtype` — bfloat16 only where the CPU or GPU
runs it natively, as ``train.bf16: auto`` does), the CPU record (torch's capability string,
core counts, the model name from ``/proc/cpuinfo``) and the matmul peak per dtype.

The peak is the best of many 2048² matmuls, so one slow sample on a shared machine does not
lower it (and so inflate every MFU). Where a dtype is emulated (bfloat16 on a CPU without
AVX512-BF16/AMX runs at about 1 GFLOP/s), a 2048² matmul would take many seconds; the
record is the best of five 512² matmuls instead (a fraction of a second each), marked
``capped`` — enough to show that dtype is slow there.
"""

from __future__ import annotations

import os
import platform
import time

DTYPE_CHOICES = ("auto", "float32", "bfloat16")
PEAK_SIZE = 2048
PEAK_REPEATS = 30
# First the best of a few 512² matmuls; if one of the peak's size would take longer than
# CAP_SECONDS at that rate (a float32 2048² matmul takes ~0.2 s on 2 AVX2 cores, an emulated
# bfloat16 one ~13 s), that small measurement is the record, marked capped.
CAPPED_SIZE = 512
CAPPED_REPEATS = 5
CAP_SECONDS = 3.0


def add_dtype_argument(parser, default: str = "auto", help_extra: str = "") -> None:
    parser.add_argument(
        "--dtype", default=default, choices=DTYPE_CHOICES,
        help="compute dtype: auto (default) = what reasondistill picks, bfloat16 only where "
             "this CPU has it natively (AVX512-BF16/AMX), else float32" + help_extra)


def resolve(spec: str):
    """``--dtype`` → a torch dtype, the product's way."""
    from reasondistill.models import resolve_dtype

    return resolve_dtype(spec)


def autocast(dtype):
    """The trainer's autocast for a compute dtype: bf16 autocast for bfloat16, none for float32
    (what ``TrainingArguments(bf16=...)`` does on a CPU)."""
    import contextlib

    import torch

    if dtype == torch.bfloat16:
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def dtype_name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def cpu_model_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_record() -> dict:
    """The CPU the numbers came from: they move with it, bfloat16 ones most of all."""
    import torch

    from reasondistill.models import bf16_supported

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    return {"model": cpu_model_name(), "capability": torch.backends.cpu.get_cpu_capability(),
            "logical_cores": os.cpu_count(), "usable_cores": usable,
            "torch_threads": torch.get_num_threads(), "bf16_native": bf16_supported(),
            "machine": platform.machine()}


def _seconds_per_matmul(a, b, repeats: int) -> float:
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return best


def matmul_peak(dtype, size: int = PEAK_SIZE, repeats: int = PEAK_REPEATS) -> dict:
    """Best of ``repeats`` ``size``² matmuls in ``dtype`` on this process's threads, in
    GFLOP/s; capped (best of a few 512² matmuls) where one of ``size`` would take seconds."""
    import torch

    small = torch.randn(CAPPED_SIZE, CAPPED_SIZE, dtype=dtype)
    rate = 2 * CAPPED_SIZE**3 / _seconds_per_matmul(small, small, CAPPED_REPEATS)
    if 2 * size**3 / rate > CAP_SECONDS:
        return {"gflops": round(rate / 1e9, 1), "size": CAPPED_SIZE,
                "repeats": CAPPED_REPEATS, "capped": True}
    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    seconds = _seconds_per_matmul(a, b, repeats)
    return {"gflops": round(2 * size**3 / seconds / 1e9, 1), "size": size, "repeats": repeats,
            "capped": False}


def machine_record(run_dtype=None) -> dict:
    """The CPU, and the matmul peak in float32 and in bfloat16 (capped where it is emulated),
    plus ``run_dtype``'s if it is neither; MFU is held against ``run_dtype``'s peak."""
    import torch

    dtypes = [torch.float32, torch.bfloat16]
    if run_dtype is not None and run_dtype not in dtypes:
        dtypes.append(run_dtype)
    record = {"cpu": cpu_record(),
              "matmul_peak": {dtype_name(d): matmul_peak(d) for d in dtypes}}
    if run_dtype is not None:
        record["dtype"] = dtype_name(run_dtype)
    return record


def best_of(*records: dict) -> dict:
    """One record from several taken in a run (before and after its work, say): each dtype's
    highest peak. Other work on a shared machine only ever lowers a measured peak, and a low
    peak inflates every MFU held against it."""
    best = dict(records[-1], matmul_peak={})
    for name in records[-1]["matmul_peak"]:
        best["matmul_peak"][name] = max((r["matmul_peak"][name] for r in records),
                                        key=lambda peak: peak["gflops"])
    return best


def peak_flops(record: dict, dtype) -> float:
    """FLOP/s of ``dtype``'s matmul peak in a :func:`machine_record`."""
    return record["matmul_peak"][dtype_name(dtype)]["gflops"] * 1e9


def describe(record: dict) -> str:
    """One line for a script's output: the CPU and each measured peak."""
    cpu = record["cpu"]
    peaks = ", ".join(f"{name} {p['gflops']:.1f} GFLOP/s"
                      + (f" (capped: {p['size']}², best of {p['repeats']})" if p["capped"] else "")
                      for name, p in record["matmul_peak"].items())
    return (f"CPU {cpu['model']} ({cpu['capability']}, {cpu['usable_cores']} cores, "
            f"{cpu['torch_threads']} threads); matmul peak: {peaks}")


def report_machine(run_dtype=None) -> dict:
    """:func:`machine_record`, its :func:`describe` line printed: what each script ends with."""
    record = machine_record(run_dtype)
    print(describe(record))
    return record
