"""``reasondistill sweep SWEEP.yaml``: a grid of configs × seeds as resumable runs.

A sweep file names a base run config, the overrides every point shares, named **arms** (each a
set of overrides; ``train: false`` evaluates the base model without training, ``grid:
false`` keeps the arm out of the grid, ``seeds: [0]`` gives it its own seeds), a **grid**
(``key: [values]``, every combination) and **seeds**. Each arm × grid point × seed is one run
directory, trained and then evaluated with the ordinary recipe. Both resume where they
stopped, so a killed sweep continues where it was. Each finished point's record goes into
one ``results.json`` straight away. ``--print-commands`` prints every point as standalone
``reasondistill`` commands instead, for a scheduler (a Slurm array, a W&B agent);
``--collect`` rebuilds ``results.json`` from the run directories those commands filled.

    base: demo                    # the embedded demo config, or a path relative to this file
    output_dir: runs/sweeps/alpha
    set: {data.puzzles.families: [numeral]}
    arms:
      zero-shot: {train: false, grid: false}
      answer-only: {format.answer_only: true}
      trace: {}
    grid: {lora.r: [8, 16]}
    seeds: [0, 1, 2]              # written to every key of seed_keys
    seed_keys: [train.seed]
    order: arm                    # or seed: all arms of seed 0 first ("{seed}" in a value
                                  # is the point's seed)

The report (``sweep/report/``, written at the end of a run and by ``--collect``) is drawn
from the results only: :mod:`reasondistill.evaluate.sweep_report`.
"""

from __future__ import annotations

import itertools
import json
import re
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from rich.console import Console

from reasondistill.errors import ConfigError, did_you_mean

RESULTS = "results.json"
ARM_FLAGS = ("train", "grid", "seeds")  # an arm's keys that are not config overrides


class SweepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base: str = "demo"
    output_dir: str = "runs/sweep"
    set: dict[str, Any] = Field(default_factory=dict)
    arms: dict[str, dict[str, Any]] = Field(default_factory=lambda: {"run": {}})
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    seed_keys: list[str] = Field(default_factory=lambda: ["train.seed"])
    # arm: every seed of an arm before the next arm; seed: every arm of a seed before the
    # next seed (a stopped sweep then holds complete seeds, and an arm can read an earlier
    # arm's run of the same seed through "{seed}" in a value)
    order: Literal["arm", "seed"] = "arm"


@dataclass
class Point:
    name: str
    arm: str
    seed: int
    params: dict[str, Any]  # the grid values of this point
    overrides: list[str]  # --set strings, in order: shared, arm, grid, seeds, output_dir
    trains: bool
    run_dir: Path
    config_path: Path
    config: Any = field(default=None, repr=False)  # the validated RunConfig


def load_sweep(path: Path) -> tuple[SweepSpec, Path]:
    """The validated sweep file and the base config's path (None: the embedded demo)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sweep file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        spec = SweepSpec.model_validate(raw)
    except yaml.YAMLError as error:
        from reasondistill.config import yaml_problem

        raise ConfigError(f"{path}: not valid YAML: {yaml_problem(error)}") from None
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        if first["type"] == "extra_forbidden" and len(first["loc"]) == 1:
            raise ConfigError(f"{path}: unknown key {where!r}"
                              f"{did_you_mean(where, SweepSpec.model_fields)}; allowed: "
                              f"{', '.join(SweepSpec.model_fields)}") from None
        raise ConfigError(f"{path}: {where or 'top level'}: {first['msg']}") from None
    for arm, overrides in spec.arms.items():
        for flag, meaning in (("train", "false = evaluate the base model without training"),
                              ("grid", "false = this arm is not crossed with the grid")):
            if flag in overrides and not isinstance(overrides[flag], bool):
                raise ConfigError(f"{path}: arms.{arm}.{flag}: true or false ({meaning})")
        seeds = overrides.get("seeds", spec.seeds)
        if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) for s in seeds)):
            raise ConfigError(f"{path}: arms.{arm}.seeds: a non-empty list of integers")
    for key, values in spec.grid.items():
        if not values:
            raise ConfigError(f"{path}: grid.{key}: give at least one value")
    if spec.base == "demo":
        from reasondistill.demo import DEMO_CONFIG

        return spec, DEMO_CONFIG
    return spec, (path.parent / spec.base).resolve()


def _with_seed(value: Any, seed: int) -> Any:
    """``"{seed}"`` inside a string value becomes the point's seed (e.g. a teacher adapter
    from another arm's run of the same seed)."""
    return value.replace("{seed}", str(seed)) if isinstance(value, str) else value


def _value_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", text).strip("-") or "x"


def _short(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def expand(spec: SweepSpec, base: Path, sweep_dir: Path | None = None) -> list[Point]:
    """Every arm × grid point × seed, validated (a bad key or value fails before any run)."""
    from reasondistill.config import load_config

    sweep_dir = Path(sweep_dir or spec.output_dir)
    keys = list(spec.grid)
    points = []
    for arm, arm_overrides in spec.arms.items():
        trains = arm_overrides.get("train", True)
        arm_keys = keys if arm_overrides.get("grid", True) else []
        arm_sets = {k: v for k, v in arm_overrides.items() if k not in ARM_FLAGS}
        for values in itertools.product(*(spec.grid[k] for k in arm_keys)):
            params = dict(zip(arm_keys, values))
            for seed in arm_overrides.get("seeds", spec.seeds):
                label = "__".join([arm, *(f"{_short(k)}={_value_text(v)}"
                                          for k, v in params.items()), f"seed{seed}"])
                run_dir = sweep_dir / "runs" / label
                overrides = [f"{k}={json.dumps(_with_seed(v, seed))}" for k, v in
                             [*spec.set.items(), *arm_sets.items(), *params.items()]]
                overrides += [f"{k}={seed}" for k in spec.seed_keys]
                overrides.append(f"output_dir={json.dumps(str(run_dir))}")
                try:
                    config = load_config(base, overrides)
                except ConfigError as error:
                    raise ConfigError(f"sweep point {label}: {error}") from None
                points.append(Point(label, arm, seed, params, overrides, trains, run_dir,
                                    sweep_dir / "configs" / f"{label}.yaml", config))
    if spec.order == "seed":
        points.sort(key=lambda p: spec.seeds.index(p.seed))  # stable: arms keep their order
    names = [p.name for p in points]
    if len(set(names)) != len(names):
        raise ConfigError("two sweep points get the same name; make the grid values distinct")
    return points


def write_point_configs(points: list[Point]) -> None:
    from reasondistill.config import dump_config
    from reasondistill.io import atomic_write_text

    for point in points:
        point.config_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(point.config_path, dump_config(point.config))


def point_commands(point: Point) -> str:
    """The standalone shell commands that make ``point``'s run directory."""
    config = shlex.quote(str(point.config_path))
    if not point.trains:
        return f"reasondistill eval {config} --base"
    return f"reasondistill train {config} --resume && reasondistill eval {config}"


def eval_dir(point: Point) -> Path:
    """Where ``reasondistill eval`` writes for this point (its default ``--out``)."""
    return point.run_dir / "eval" / ("after" if point.trains else "before")


def run_point(point: Point, console: Console) -> None:
    """Train (resuming) and evaluate (skipping done problems) one point."""
    from reasondistill.evaluate.runner import run_eval
    from reasondistill.train.adapters import FINAL_ADAPTER
    from reasondistill.train.recipe import run_training

    adapter = point.run_dir / FINAL_ADAPTER
    if point.trains and not (adapter / "adapter_config.json").is_file():
        result = run_training(point.config, resume=point.run_dir.exists(), console=console)
        if result and result.get("interrupted"):
            raise ConfigError(f"sweep point {point.name}: training stopped early; rerun the "
                              "sweep to continue it")
    run_eval(point.config, adapter=adapter if point.trains else None, out_dir=eval_dir(point),
             console=console)


def point_record(point: Point) -> dict | None:
    """What the report reads of a finished point (None while its evaluation is missing)."""
    summary_path = eval_dir(point) / "summary.json"
    if not summary_path.is_file():
        return None
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    record = {
        "name": point.name, "arm": point.arm, "seed": point.seed, "params": point.params,
        "trains": point.trains,
        "run_dir": f"runs/{point.run_dir.name}",  # relative to the sweep's output_dir
        "n": summary["n"], "correct": summary["n_correct"], "accuracy": summary["accuracy"],
        "accuracy_ci": summary["accuracy_ci"], "parse_rate": summary["parse_rate"],
        "mean_generated_tokens": summary["mean_generated_tokens"],
        "by_type": {t: {k: b.get(k) for k in ("n", "correct", "accuracy", "ci")}
                    for t, b in summary.get("by_type", {}).items()},
        "calibration_ece": (summary.get("calibration") or {}).get("ece"),
        "errors": {k: v.get("count", 0) for k, v in
                   (summary.get("errors") or {}).get("kinds", {}).items()},
        "train_rows": 0, "train_tokens": 0, "train_minutes": 0.0, "trainable_parameters": 0,
    }
    train_summary = point.run_dir / "train_summary.json"
    if point.trains and train_summary.is_file():
        trained = json.loads(train_summary.read_text(encoding="utf-8"))
        phases = trained.get("phases", [])
        record["train_rows"] = max((p.get("rows", 0) for p in phases), default=0)
        record["train_tokens"] = sum(p.get("tokens", 0) for p in phases)
        record["train_minutes"] = trained.get("train_minutes", 0.0)
        record["trainable_parameters"] = trainable_parameters(point.run_dir)
        similarity = trained.get("similarity")
        if similarity:
            record["similarity"] = similarity
    return record


def trainable_parameters(run_dir: Path) -> int:
    """Elements of the saved adapter (and latent projections): what training changed."""
    from safetensors import safe_open

    total = 0
    for path in sorted((run_dir / "adapter").glob("*.safetensors")):
        with safe_open(str(path), framework="numpy") as handle:
            for key in handle.keys():
                shape = handle.get_slice(key).get_shape()
                count = 1
                for size in shape:
                    count *= size
                total += count
    return total


def write_results(spec: SweepSpec, points: list[Point], sweep_dir: Path) -> dict:
    from reasondistill.io import atomic_write_json

    records = [r for r in (point_record(p) for p in points) if r is not None]
    results = {"sweep": spec.model_dump(mode="json"), "points": len(points),
               "finished": len(records), "results": records}
    atomic_write_json(sweep_dir / RESULTS, results)
    return results


def run_sweep(path: Path, *, console: Console, print_commands: bool = False,
              collect: bool = False, only: str | None = None) -> dict | None:
    """Run every point (``only``: those whose name matches the regular expression), or
    print their commands, or (``collect``) only gather the results and write the report."""
    spec, base = load_sweep(path)
    sweep_dir = Path(spec.output_dir)
    points = expand(spec, base, sweep_dir)
    if only is not None:
        try:
            pattern = re.compile(only)
        except re.error as error:
            raise ConfigError(f"--only {only!r} is not a regular expression: {error}") from None
        points_run = [p for p in points if pattern.search(p.name)]
        if not points_run:
            raise ConfigError(f"--only {only!r} matches none of the {len(points)} points")
    else:
        points_run = points
    write_point_configs(points)
    if print_commands:
        for point in points_run:
            print(point_commands(point))
        return None
    if not collect:
        started = time.perf_counter()
        for number, point in enumerate(points_run, start=1):
            done = point_record(point) is not None and (
                not point.trains or (point.run_dir / "adapter" / "adapter_config.json").is_file())
            console.rule(f"sweep point {number}/{len(points_run)}: {point.name}"
                         + (" (done)" if done else ""))
            if not done:
                run_point(point, console)
            write_results(spec, points, sweep_dir)
            elapsed = (time.perf_counter() - started) / 60
            console.print(f"{number}/{len(points_run)} points, {elapsed:.1f} min")
    results = write_results(spec, points, sweep_dir)
    from reasondistill.evaluate.sweep_report import write_sweep_report

    md_path, _ = write_sweep_report(results, sweep_dir / "report")
    console.print(f"{results['finished']}/{results['points']} points finished; results in "
                  f"{sweep_dir / RESULTS}, report in {md_path}")
    return results
