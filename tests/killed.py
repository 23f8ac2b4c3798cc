"""Run the ``reasondistill`` CLI in this process and SIGKILL it at a chosen point.

    python tests/killed.py WHERE -- train CONFIG ...

A test driver, not part of the package: ``tests/test_kill_resume.py`` starts it as a
subprocess so that the kill is real (no ``finally``, no atexit, buffers as the OS has them),
and places the kill at a deterministic point by wrapping one function. WHERE is
``KIND:ARG:NTH`` — die the NTH time (1-based) the point is reached:

    step:PHASE@N    right after metrics.jsonl got the line of step N of PHASE
    save:STEP       inside the Trainer's checkpoint save at STEP: the adapter is written, the
                    optimizer, scheduler and trainer_state.json are not
    adapter:NAME    right after a phase's adapter NAME (e.g. adapter-train) was saved
    append:-        in the middle of a batch's last predictions.jsonl line (a torn line)
    shard:-         in the middle of writing a teacher-cache shard's temp file

If the point is never reached the CLI finishes normally, which the test sees as exit 0.
"""

from __future__ import annotations

import os
import signal
import sys


def die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def arm(where: str) -> None:
    kind, arg, nth = where.split(":")
    seen = [0]

    def reached() -> bool:
        seen[0] += 1
        return seen[0] == int(nth)

    if kind == "step":
        from reasondistill.train.callbacks import MetricsJsonl

        phase, step = arg.split("@")
        original = MetricsJsonl.on_log

        def on_log(self, args, state, control, logs=None, **kwargs):
            original(self, args, state, control, logs=logs, **kwargs)
            if self.phase == phase and state.global_step == int(step) and reached():
                die()

        MetricsJsonl.on_log = on_log
    elif kind == "save":
        from transformers import Trainer

        original = Trainer._save_optimizer_and_scheduler  # private: the test fails loudly if gone

        def save_optimizer(self, output_dir):
            if self.state.global_step == int(arg) and reached():
                die()
            return original(self, output_dir)

        Trainer._save_optimizer_and_scheduler = save_optimizer
    elif kind == "adapter":
        from reasondistill.train import recipe

        original = recipe.save_adapter

        def save_adapter(model, target):
            original(model, target)
            if target.name == arg and reached():
                die()

        recipe.save_adapter = save_adapter
    elif kind == "append":
        from reasondistill.evaluate import runner

        def append(self, rows):
            if reached():
                lines = [runner._line(r).encode("utf-8") for r in rows]
                torn = b"".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2]
                with open(self.path, "ab") as handle:
                    handle.write(torn)
                die()
            original(self, rows)

        original = runner.PredictionLog.append
        runner.PredictionLog.append = append
    elif kind == "shard":
        from reasondistill.distill import cache

        original = cache.write_shard

        def write_shard(path, tensors):
            if reached():
                path.with_name(path.name + ".tmp").write_bytes(b"half a shard")
                die()
            return original(path, tensors)

        cache.write_shard = write_shard
    else:
        raise SystemExit(f"unknown kill point {where!r}")


if __name__ == "__main__":
    where, separator, *command = sys.argv[1:]
    assert separator == "--", "usage: killed.py WHERE -- COMMAND ..."
    arm(where)
    from reasondistill.cli import app

    app(command, prog_name="reasondistill")
