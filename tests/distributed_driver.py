"""Test-only driver for ``accelerate launch`` (tests/test_distributed.py); not part of the package.

    python distributed_driver.py train CONFIG         # exactly ``reasondistill train CONFIG``
    python distributed_driver.py runs CONFIG [...]    # run_training on each, in one launch

Two hooks, read from the environment here and nowhere in reasondistill:

- ``RD_TEST_RECORD_DIR``: every micro-batch a rank trains on is appended to
  ``<dir>/rank<R>.jsonl`` as ``{"run", "phase", "step", "rows"}`` (``step``: the optimizer
  steps done before it; ``rows``: the token ids of each row in it).
- ``RD_TEST_FAIL_RANK`` / ``RD_TEST_FAIL_STEP``: that rank raises in its first micro-batch
  after that many optimizer steps, while the other ranks go on into the step's collectives.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def rows_of(inputs: dict) -> list[list[int]]:
    """The token ids of each row of a collated micro-batch (packed or padded)."""
    ids = inputs["input_ids"]
    lengths = inputs.get("sequence_lengths")
    if lengths is not None:  # packed: one row, cut at the sequence lengths
        flat, rows, start = ids.reshape(-1).tolist(), [], 0
        for n in lengths.tolist():
            rows.append(flat[start:start + n])
            start += n
        return rows
    mask = inputs["attention_mask"].bool()
    return [row[keep].tolist() for row, keep in zip(ids, mask)]


def install_recorder(directory: Path, rank: int) -> None:
    """Record each micro-batch's rows before the trainer trains on it (see the module doc)."""
    from reasondistill.train.trainer import DistillTrainer

    original = DistillTrainer.training_step
    path = Path(directory) / f"rank{rank}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)

    def recording_step(self, model, inputs, num_items_in_batch=None):
        checkpoints = Path(self.args.output_dir)  # <run>/checkpoints/<phase>
        record = {"run": checkpoints.parents[1].name, "phase": checkpoints.name,
                  "step": self.state.global_step, "rows": rows_of(inputs)}
        with path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        return original(self, model, inputs, num_items_in_batch)

    DistillTrainer.training_step = recording_step


def install_failure(step: int) -> None:
    """This rank raises in its first micro-batch after ``step`` optimizer steps."""
    from reasondistill.train.trainer import DistillTrainer

    original = DistillTrainer.training_step

    def failing_step(self, model, inputs, num_items_in_batch=None):
        if self.state.global_step >= step:
            raise RuntimeError(f"test-only failure on rank {os.environ.get('RANK')} "
                               f"at step {self.state.global_step}")
        return original(self, model, inputs, num_items_in_batch)

    DistillTrainer.training_step = failing_step


def main(argv: list[str]) -> None:
    rank = int(os.environ.get("RANK", "0"))
    if os.environ.get("RD_TEST_RECORD_DIR"):
        install_recorder(Path(os.environ["RD_TEST_RECORD_DIR"]), rank)
    if os.environ.get("RD_TEST_FAIL_RANK") == str(rank):
        install_failure(int(os.environ.get("RD_TEST_FAIL_STEP", "0")))
    mode, configs = argv[0], argv[1:]
    if mode == "train":
        from reasondistill.cli import main as cli_main

        sys.argv = ["reasondistill", "train", *configs]
        cli_main()
        return
    from rich.console import Console

    from reasondistill.config import load_config
    from reasondistill.train.distributed import close_distributed
    from reasondistill.train.recipe import run_training

    try:  # as `reasondistill train` does it, for several configs in one launch
        for config in configs:
            run_training(load_config(Path(config), []), console=Console(quiet=True))
    except BaseException:
        close_distributed(wait=False)
        raise
    close_distributed(wait=True)


if __name__ == "__main__":
    main(sys.argv[1:])
