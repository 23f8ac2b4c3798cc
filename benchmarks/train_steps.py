"""Where a whole run's time goes, step by step: seconds, tokens, page faults, system time.

Runs reasondistill's contender of ``train_throughput.py`` (same model, rows, LoRA, batch and
settings) and prints, for every optimizer step, its wall time, packed tokens and tokens/s,
the minor page faults and the kernel (system) CPU time it cost, and the process's peak RSS
after it. On a VM, memory a process touches for the first time is expensive; this shows how
much of a short run goes to that (the first step, and any step that needs more memory than
the run has held so far) against steps that reuse what is already there.

    python benchmarks/train_steps.py [--rows 64]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

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

    tokens, steps = [], []
    real_call = collate.PackedCollator.__call__

    def counting_call(self, features):
        batch = real_call(self, features)
        tokens.append(int(batch["input_ids"].shape[-1]))
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
    # the data loader fetches one batch ahead, so its token counts line up with steps in order
    print(f"\n{'step':>4}{'tokens':>8}{'seconds':>9}{'tokens/s':>10}{'faults':>9}"
          f"{'fault MiB':>11}{'system s':>10}{'user s':>8}{'peak RSS MB':>13}")
    for index, (step, n) in enumerate(zip(steps, tokens), start=1):
        print(f"{index:>4}{n:>8}{step['seconds']:>9.2f}{n / step['seconds']:>10.0f}"
              f"{step['faults']:>9}{step['faults'] * 4 / 1024:>11.0f}{step['system_s']:>10.2f}"
              f"{step['user_s']:>8.2f}{step['rss_mb']:>13.0f}")
    quiet = [(s, n) for s, n in zip(steps, tokens) if s["faults"] < 5000]
    total = sum(s["seconds"] for s in steps)
    print(f"\nall {len(steps)} steps: {sum(tokens) / total:.0f} tokens/s over {total:.1f} s "
          f"(train() took {row['seconds']:.1f} s)")
    if quiet:
        rate = sum(n for _, n in quiet) / sum(s["seconds"] for s, _ in quiet)
        print(f"the {len(quiet)} steps that touched no new memory (< 5,000 faults): "
              f"{rate:.0f} tokens/s; at that rate the run would take "
              f"{sum(tokens) / rate:.1f} s")


if __name__ == "__main__":
    main()
