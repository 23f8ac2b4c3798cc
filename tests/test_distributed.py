"""``accelerate launch`` with 2 CPU processes (gloo) against one process (issue 15).

One module fixture trains, on the tiny model, a trace run (Train → Nudge, two epochs in
phase 1) and two latent runs (``balance: initial``; a self-teacher, and a ``kind: model``
teacher of another width, through learned projections): once in this process with
per-device batch 2 × accumulation 4, once in one 2-process launch with batch 2 ×
accumulation 2 — the same effective batch of 8 (per device × accumulation × processes), so
the same stratified order and the same rows in each optimizer step. The driver
(tests/distributed_driver.py) records the rows of every micro-batch each rank trains on.

NEFTune is off in these runs: its noise is random per process, so it would make the curves
differ by design rather than by a fault.
"""

import json
import math
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from test_train import adapter_tensors, make_config
from typer.testing import CliRunner

from reasondistill.config import dump_config, parse_config

DRIVER = Path(__file__).with_name("distributed_driver.py")
BATCH, ACCUMULATION, PROCESSES = 2, 2, 2  # the launch; one process accumulates 2 × 2 = 4

# Loss tolerance, 1 process vs 2. Not exact because the same sums are added in another
# order: one process accumulates the 4 micro-batches' gradients in turn, two processes add
# 2 each and gloo's all-reduce adds the two halves (and the logged loss is a mean of two
# per-rank sums). The micro-batches themselves are identical — each is packed alone, so
# there is no per-rank padding — and so are the token counts the loss divides by. fp32
# rounding then carries through Adam over the steps; measured max |Δloss| 4.8e-7 (one
# float32 step at a loss of ~6) over the 24 logged steps of the three runs. 1e-4 leaves
# room for other CPUs' kernels and is far below what a real fault moves (a row in the
# wrong step, a lost or doubled gradient, rank 0's balancing factor alone: > 3e-2).
LOSS_TOLERANCE = 1e-4


def _config(tmp, model_dir, name, accumulation, **extra):
    """A config (parsed) for run ``name`` in ``tmp``: trace by default, latent with ``distill``."""
    distill = extra.pop("distill", None)
    cfg = make_config(tmp, model_dir, per_device_batch_size=BATCH,
                      gradient_accumulation_steps=accumulation, save_steps=4, **extra)
    raw = cfg.model_dump(mode="json", exclude_unset=True)
    raw["output_dir"] = str(tmp / name)
    if distill:
        raw["distill"] = {"enabled": True, **distill}
    return parse_config(raw)


def trace_config(tmp, model_dir, name, accumulation):
    """Train → Nudge; phase 1 two epochs (a fresh order each), so 8 + 4 steps on 48 rows."""
    return _config(tmp, model_dir, name, accumulation,
                   train={"num_train_epochs": 2, "learning_rate": 1e-2,
                          "neftune_noise_alpha": 0.0},
                   nudge={"neftune_noise_alpha": 0.0})


def latent_config(tmp, model_dir, name, accumulation, teacher):
    """One phase with the hidden-state term, balanced at the first micro-batch (the default
    ``balance: initial``); ``teacher`` is the distill.teacher section."""
    return _config(tmp, model_dir, name, accumulation, phases=["train"], hard_types=[],
                   train={"learning_rate": 1e-2, "neftune_noise_alpha": 0.0},
                   distill={"teacher": teacher, "layers": {"last_k": 1}})


def wider_teacher(path):
    """A tiny Llama of another width (48) and depth (3), same tokenizer: a ``kind: model``
    teacher whose states reach the student through learned projections."""
    import transformers as tf
    from tiny import tiny_config, tiny_tokenizer

    tok = tiny_tokenizer()
    config = tiny_config("llama", tok)
    config.hidden_size, config.num_hidden_layers, config.intermediate_size = 48, 3, 96
    tf.AutoModelForCausalLM.from_config(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def write_yaml(cfg, path):
    path.write_text(dump_config(cfg), encoding="utf-8")
    return path


def launch(args, *, cwd, env=None, timeout=300):
    """``accelerate launch`` of the driver on 2 CPU processes (gloo); the finished process
    and its wall time."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
           "--num_processes", str(PROCESSES), "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", str(DRIVER), *map(str, args)]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    started = time.monotonic()
    proc = subprocess.run(cmd, env=full_env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
    return proc, time.monotonic() - started


def records(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def logged_steps(run_dir):
    return [r for r in records(run_dir / "metrics.jsonl") if "loss" in r]


def files_of(run_dir):
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir):
    """The three runs, in this process and in one 2-process launch: their configs, their
    directories and the micro-batches each rank trained on."""
    from distributed_driver import install_recorder

    from reasondistill.train.recipe import run_training
    from reasondistill.train.trainer import DistillTrainer

    tmp = tmp_path_factory.mktemp("distributed")
    # self: the 1-process trace run's adapter; model: another width, so projections train
    teachers = {"latent": {"kind": "self", "adapter": str(tmp / "trace-1" / "adapter")},
                "latent-model": {"kind": "model", "name": str(wider_teacher(tmp / "wide"))}}

    def configs(processes):
        accumulation = ACCUMULATION * PROCESSES // processes  # the same effective batch
        made = {"trace": trace_config(tmp, tiny_model_dir, f"trace-{processes}", accumulation)}
        for kind, teacher in teachers.items():
            made[kind] = latent_config(tmp, tiny_model_dir, f"{kind}-{processes}",
                                       accumulation, teacher)
        return made

    one_process = configs(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DistillTrainer, "training_step", DistillTrainer.training_step)
        install_recorder(tmp / "record-1", rank=0)
        for cfg in one_process.values():
            run_training(cfg)

    launched = [write_yaml(cfg, tmp / f"{kind}-2.yaml") for kind, cfg in configs(2).items()]
    cwd = tmp / "cwd"  # nothing may be written here
    cwd.mkdir()
    proc, seconds = launch(["runs", *launched], cwd=cwd,
                           env={"RD_TEST_RECORD_DIR": str(tmp / "record-2")})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    micro_batches = {"1": records(tmp / "record-1" / "rank0.jsonl"),
                     **{f"2.{r}": records(tmp / "record-2" / f"rank{r}.jsonl")
                        for r in range(PROCESSES)}}
    print(f"2-process launch of the three runs: {seconds:.1f} s")
    return {"dir": tmp, "cwd": cwd, "micro_batches": micro_batches, "configs": one_process}


def compare_curves(one, two, keys):
    """Max |difference| per key between two metrics.jsonl curves with the same steps."""
    assert [(r["phase"], r["step"]) for r in one] == [(r["phase"], r["step"]) for r in two]
    return {key: max(abs(a[key] - b[key]) for a, b in zip(one, two)) for key in keys}


@pytest.mark.slow
def test_trace_training_on_two_processes_follows_the_one_process_loss_curve(runs):
    one, two = (logged_steps(runs["dir"] / f"trace-{n}") for n in (1, 2))
    assert [r["step"] for r in one if r["phase"] == "train"] == list(range(1, 9))
    assert [r["step"] for r in one if r["phase"] == "nudge"] == list(range(1, 5))
    assert one[-1 - 4]["loss"] < one[0]["loss"] - 0.1  # phase 1 learned: the curve moves
    differences = compare_curves(one, two, ["loss"])
    assert differences["loss"] <= LOSS_TOLERANCE, differences
    grad = max(abs(a["grad_norm"] - b["grad_norm"]) / max(a["grad_norm"], 1e-6)
               for a, b in zip(one, two))
    assert grad <= 1e-3, grad
    adapters = [adapter_tensors(runs["dir"] / f"trace-{n}" / "adapter") for n in (1, 2)]
    assert adapters[0].keys() == adapters[1].keys()
    weights = max(float((adapters[0][k] - adapters[1][k]).abs().max()) for k in adapters[0])
    assert weights <= 1e-5, weights


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["latent", "latent-model"])
def test_latent_training_on_two_processes_follows_the_one_process_loss_curve(runs, kind):
    one, two = (logged_steps(runs["dir"] / f"{kind}-{n}") for n in (1, 2))
    assert len(one) == 48 // (BATCH * ACCUMULATION * PROCESSES)
    assert all(0 < r["share_hidden"] < 1 for r in one)
    assert one[-1]["loss_hidden"] < one[0]["loss_hidden"]  # the curve moves
    # every term is the whole effective batch's, not rank 0's half of it
    differences = compare_curves(one, two, ["loss", "loss_ce", "loss_hidden"])
    assert max(differences.values()) <= LOSS_TOLERANCE, differences
    # the balancing factor comes from the micro-batch a single process measures first
    factors = [json.loads((runs["dir"] / f"{kind}-{n}" / "distill_balance.json").read_text())
               for n in (1, 2)]
    assert factors[1]["hidden"] == pytest.approx(factors[0]["hidden"], rel=1e-6)
    if kind == "latent-model":  # the learned projections: trained alike, saved by rank 0
        from safetensors.torch import load_file

        saved = [load_file(runs["dir"] / f"{kind}-{n}" / "adapter" / "projections.safetensors")
                 for n in (1, 2)]
        assert saved[0].keys() == saved[1].keys() and saved[0]
        for name in saved[0]:
            assert (saved[0][name] - saved[1][name]).abs().max() <= 1e-5, name


def prepared_rows(cfg):
    """The run's prepared examples and each one's token ids."""
    from rich.console import Console

    from reasondistill.train.recipe import prepare_rows

    prepared = prepare_rows(cfg, Console(quiet=True))[1]
    return prepared.examples, {e.id: tuple(row.input_ids)
                               for e, row in zip(prepared.examples, prepared.tokenized.rows)}


def _steps(micro_batches, run, phase):
    """step → list of micro-batches (each a list of row token tuples), in training order."""
    steps = {}
    for record in micro_batches:
        if record["run"] == run and record["phase"] == phase:
            steps.setdefault(record["step"], []).append([tuple(r) for r in record["rows"]])
    return steps


@pytest.mark.slow
def test_each_optimizer_step_is_one_stratified_block_across_the_ranks(runs):
    from reasondistill.train.phases import plan_phases

    micro, effective = runs["micro_batches"], BATCH * ACCUMULATION * PROCESSES
    for kind, cfg in runs["configs"].items():
        examples, tokens = prepared_rows(cfg)
        type_of = {tokens[e.id]: e.type for e in examples}  # same text, same type
        for phase in plan_phases(cfg.train, examples):
            count, total = Counter(e.type for e in phase.examples), len(phase.examples)
            one = _steps(micro["1"], f"{kind}-1", phase.name)
            ranks = [_steps(micro[f"2.{r}"], f"{kind}-2", phase.name) for r in range(PROCESSES)]
            assert one and sorted(one) == sorted(ranks[0]) == sorted(ranks[1])
            combined = {}
            for step, batches in one.items():
                for rank in ranks:  # each rank: `accumulation` micro-batches of BATCH rows
                    assert [len(b) for b in rank[step]] == [BATCH] * ACCUMULATION
                combined[step] = [row for rank in ranks for b in rank[step] for row in b]
                # together, the rows one process trains in that step
                assert Counter(combined[step]) == Counter(row for b in batches for row in b)
                mix = Counter(type_of[row] for row in combined[step])
                for type_, c in count.items():  # floor or ceil of the type's share
                    share = effective * c / total
                    assert math.floor(share) <= mix[type_] <= math.ceil(share), (kind, phase.name,
                                                                            step, mix)
            # each epoch trains every row of the phase once, each epoch in an order of its own
            per_epoch = total // effective
            steps = sorted(combined)
            epochs = [[row for s in steps[e:e + per_epoch] for row in combined[s]]
                      for e in range(0, len(steps), per_epoch)]
            for epoch in epochs:
                assert Counter(epoch) == Counter(tokens[e.id] for e in phase.examples)
            assert len(epochs) == phase.settings.num_train_epochs
            if len(epochs) > 1:
                assert epochs[0] != epochs[1]


@pytest.mark.slow
def test_only_rank_zero_writes_the_run_directory(runs):
    for kind in runs["configs"]:
        one, two = (runs["dir"] / f"{kind}-{n}" for n in (1, 2))
        rng_one = [f for f in files_of(one) if Path(f).name.startswith("rng_state")]
        rng_two = [f for f in files_of(two) if Path(f).name.startswith("rng_state")]
        # the same files as one process writes, with no rank's duplicates ...
        assert sorted(set(files_of(two)) - set(rng_two)) == sorted(
            set(files_of(one)) - set(rng_one))
        # ... but the Trainer's RNG state, which --resume restores per rank
        assert sorted(rng_two) == sorted(str(Path(f).with_name(f"rng_state_{r}.pth"))
                                         for f in rng_one for r in range(PROCESSES))
        lines = records(two / "metrics.jsonl")
        assert len(lines) == len(records(one / "metrics.jsonl"))
        steps = [(r["phase"], r["step"]) for r in lines if "loss" in r]
        assert len(steps) == len(set(steps))  # each step once
    assert not any(runs["cwd"].iterdir())


@pytest.mark.slow
def test_a_failing_rank_ends_the_whole_launch_promptly(tmp_path, tiny_model_dir):
    cfg = _config(tmp_path, tiny_model_dir, "run", ACCUMULATION, phases=["train"],
                  hard_types=[])
    config = write_yaml(cfg, tmp_path / "run.yaml")
    # rank 1 raises in step 2's first micro-batch; rank 0 is then waiting in a collective
    try:
        proc, seconds = launch(["train", config], cwd=tmp_path, timeout=120,
                               env={"RD_TEST_FAIL_RANK": "1", "RD_TEST_FAIL_STEP": "1"})
    except subprocess.TimeoutExpired:
        pytest.fail("the launch hung for 120 s after rank 1 failed")
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-3000:]
    assert "test-only failure on rank 1 at step 1" in output
    assert not (tmp_path / "run" / "adapter").exists()
    print(f"failed launch returned {proc.returncode} after {seconds:.1f} s")


@pytest.mark.parametrize("env, engine", [
    ({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2"}, "FSDP"),
    ({"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"},
     "DeepSpeed ZeRO-3"),
    ({"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_CONFIG_FILE": "{ds}"},
     "DeepSpeed ZeRO-3"),
])
def test_sharded_engines_are_refused_before_any_weights_load(tmp_path, tiny_model_dir,
                                                             monkeypatch, env, engine):
    from reasondistill.cli import app

    ds = tmp_path / "ds.json"
    ds.write_text(json.dumps({"zero_optimization": {"stage": 3}}))
    for key, value in env.items():
        monkeypatch.setenv(key, value.format(ds=ds))
    config = write_yaml(_config(tmp_path, tiny_model_dir, "run", ACCUMULATION), tmp_path / "r.yaml")
    result = CliRunner().invoke(app, ["train", str(config)])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert f"{engine} shards the model's parameters" in message and "accelerate config" in message
    assert "examples/accelerate/ddp.yaml" in message
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_the_example_fsdp_config_launched_for_real_is_refused(tmp_path, tiny_model_dir):
    """accelerate launches examples/accelerate/fsdp.yaml on a CPU-only machine too; each
    rank must stop in the CLI's check, before any weights load."""
    example = Path(__file__).parents[1] / "examples" / "accelerate" / "fsdp.yaml"
    config = write_yaml(_config(tmp_path, tiny_model_dir, "run", ACCUMULATION), tmp_path / "r.yaml")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(example),
           "-m", "reasondistill", "train", str(config)]
    proc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    output = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode != 0
    assert "FSDP shards the model's parameters" in output, output[-3000:]
    assert not (tmp_path / "run").exists()


def test_ddp_and_zero2_launches_are_not_refused(monkeypatch, tmp_path):
    from reasondistill.train.distributed import launch_engine

    for key in ("ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED",
                "ACCELERATE_DEEPSPEED_ZERO_STAGE", "ACCELERATE_DEEPSPEED_CONFIG_FILE"):
        monkeypatch.delenv(key, raising=False)
    assert launch_engine() is None  # plain run or DDP
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2")
    assert launch_engine() is None
    ds = tmp_path / "ds.json"
    ds.write_text(json.dumps({"zero_optimization": {"stage": 2}}))
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_CONFIG_FILE", str(ds))
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")  # the file's stage wins
    assert launch_engine() is None


def test_example_accelerate_configs_parse_and_name_their_engine():
    """examples/accelerate/*.yaml load with accelerate's own config class."""
    from accelerate.commands.config.config_args import ClusterConfig

    folder = Path(__file__).parents[1] / "examples" / "accelerate"
    expected = {"ddp.yaml": "MULTI_GPU", "fsdp.yaml": "FSDP",
                "deepspeed-zero2.yaml": "DEEPSPEED", "deepspeed-zero3.yaml": "DEEPSPEED"}
    assert sorted(p.name for p in folder.glob("*.yaml")) == sorted(expected)
    for name, engine in expected.items():
        config = ClusterConfig.from_yaml_file(folder / name)
        assert str(config.distributed_type).endswith(engine), name
        assert yaml.safe_load((folder / name).read_text())["num_processes"] >= 2
