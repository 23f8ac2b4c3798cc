"""Where a whole run's time goes, step by step: seconds, tokens, page faults, system time.

Runs reasondistill's contender of ``train_throughput.py`` (same model, rows, LoRA, batch and
settings) and prints, for every optimizer step, its wall time, packed tokens and tokens/s,
its MFU (``train_throughput.py``'s FLOP count, against the matmul peak of the dtype it ran),
the minor page faults and the kernel (system) CPU time it cost, and the process's peak RSS
after it, under a line naming the CPU it ran on. It takes ``train_throughput.py``'s options, ``--dtype``
among them. On a VM, memory a process touches for the first time is expensive; this shows how
much of a short run goes to that (the first step, and any step that needs more memory than
the run has held so far) against steps that reuse what is already there.

    python benchmarks/train_steps.py [--rows 64] [--batch 4 --accumulation 2] [--dtype auto]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import _machine
import torch
import train_throughput


def main(argv=None) -> None:
    from transformers import TrainerCallback

    from reasondistill.train import collate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    args, rest = parser.parse_known_args(argv)
    bench_args = train_throughput.parse_args(rest)
    torch.set_num_threads(args.threads)

    tokens, lengths, supervised, steps = [], [], [], []
    real_call = collate.PackedCollator.__call__

    def counting_call(self, features):
        batch = real_call(self, features)
        tokens.append(int(batch["input_ids"].shape[-1]))
        lengths.append(batch["sequence_lengths"].tolist())
        supervised.append(int((batch["labels"] != -100).sum()))
        return batch

    class StepMeter(TrainerCallback):
        def on_step_begin(self, *_, **__):
            self.usage, self.started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()

        def on_step_end(self, *_, **__):
            usage = resource.getrusage(resource.RUSAGE_SELF)
            steps.append({"seconds": time.perf_counter() - self.started,
                          "faults": usage.ru_minflt - self.usage.ru_minflt,
                          "system_s": usage.ru_stime - self.usage.ru_stime,
                          "user_s": usage.ru_utime - self.usage.ru_utime,
                          "rss_mb": usage.ru_maxrss / 1024})

    real_timed_train = train_throughput.timed_train

    def metered_train(trainer, *rest_args):
        trainer.add_callback(StepMeter())
        return real_timed_train(trainer, *rest_args)

    collate.PackedCollator.__call__ = counting_call
    train_throughput.timed_train = metered_train
    with tempfile.TemporaryDirectory() as out_dir:
        row = train_throughput.run_reasondistill(bench_args, Path(out_dir))
    dtype = train_throughput.run_dtype(bench_args)
    machine = _machine.machine_record(dtype)
    peak = _machine.peak_flops(machine, dtype)
    # the data loader fetches one batch ahead, so its batches line up with the steps in order;
    # with gradient accumulation, each step is that many micro-batches
    per_step = bench_args.accumulation
    tokens = [sum(tokens[i:i + per_step]) for i in range(0, len(tokens), per_step)]
    lengths = [sum(lengths[i:i + per_step], []) for i in range(0, len(lengths), per_step)]
    supervised = [sum(supervised[i:i + per_step]) for i in range(0, len(supervised), per_step)]
    print(f"\n{_machine.describe(machine)}")
    print(f"MFU against the {_machine.dtype_name(dtype)} peak, {peak / 1e9:.1f} GFLOP/s")
    print(f"{'step':>4}{'tokens':>8}{'seconds':>9}{'tokens/s':>10}{'MFU':>7}{'faults':>9}"
          f"{'fault MiB':>11}{'system s':>10}{'user s':>8}{'peak RSS MB':>13}{'longest':>9}")
    for index, step in enumerate(steps):
        n = tokens[index]
        mfu = (train_throughput.model_flops(lengths[index], [supervised[index]])
               / step["seconds"] / peak)
        print(f"{index + 1:>4}{n:>8}{step['seconds']:>9.2f}{n / step['seconds']:>10.0f}"
              f"{mfu:>7.1%}{step['faults']:>9}{step['faults'] * 4 / 1024:>11.0f}"
              f"{step['system_s']:>10.2f}{step['user_s']:>8.2f}{step['rss_mb']:>13.0f}"
              f"{max(lengths[index]):>9}")
    total = sum(s["seconds"] for s in steps)
    faulted = sum(s["faults"] for s in steps) * 4 / 1024
    system = sum(s["system_s"] for s in steps)
    cpu = system + sum(s["user_s"] for s in steps)
    print(f"\nall {len(steps)} steps: {sum(tokens) / total:.0f} tokens/s over {total:.1f} s "
          f"(train() took {row['seconds']:.1f} s); {faulted:,.0f} MiB faulted in, "
          f"{system:.1f} s of kernel time = {system / cpu:.0%} of the steps' CPU time")
    later = steps[1:]
    if not later:  # a one-step run has nothing to hold step 1 against
        return
    rate = sum(tokens[1:]) / sum(s["seconds"] for s in later)
    print(f"steps 2-{len(steps)}: {rate:.0f} tokens/s; step 1 took {steps[0]['seconds']:.1f} s, "
          f"{steps[0]['seconds'] - tokens[0] / rate:.1f} s more than at that rate")

if __name__ == "__main__":
    main()
