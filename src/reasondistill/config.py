"""The run config: one YAML file, validated by a schema that rejects unknown keys.

Every section is a pydantic model with ``extra="forbid"``; :func:`load_config` turns a
validation failure into one :class:`ConfigError` naming the key, the bad value, the allowed
values and the closest valid key. The resolved config is written into the run directory so a
result can be reproduced from its own folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from reasondistill.data.format import DEFAULT_PROMPT_SUFFIX
from reasondistill.errors import ConfigError, did_you_mean


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(Section):
    name: str = "smollm2-135m"  # the embedded default, a hub id, or a local directory
    trust_remote_code: bool = False
    dtype: Literal["auto", "bfloat16", "float32", "float16"] = "auto"
    revision: str | None = None


class ColumnMap(Section):
    """Which source column feeds each :class:`~reasondistill.data.Example` field."""

    id: str | None = "id"  # used when the file has it; otherwise ids are <file>-<row>
    prompt: str = "prompt"
    trace: str | None = "trace"
    answer: str = "answer"
    type: str | None = "type"
    difficulty: str | None = "difficulty"


class PuzzleSourceConfig(Section):
    n: int = Field(2000, ge=1)
    seed: int = 0
    families: list[str] | None = None
    level: int | None = None
    # compact: each result and rule in one line (`15*89 = 1335`); stepwise: every line a
    # step a small model can compute (arithmetic column by column, candidate rules checked
    # and rejected, letters read off the examples) — numeral, cipher, equation_numeric
    trace_style: Literal["compact", "stepwise"] = "compact"


class DataConfig(Section):
    source: Literal["jsonl", "csv", "parquet", "hf", "gsm8k", "aqua", "puzzles"] = "puzzles"
    path: str | None = None  # a file, or for "hf" a dataset id / directory
    split: str = "train"
    hf_config: str | None = None
    columns: ColumnMap = ColumnMap()
    on_bad_row: Literal["error", "drop"] = "error"
    limit: int | None = Field(None, ge=1)
    puzzles: PuzzleSourceConfig = PuzzleSourceConfig()


class FormatConfig(Section):
    prompt_suffix: str = DEFAULT_PROMPT_SUFFIX
    min_trace_chars: int = Field(5, ge=0)
    answer_only: bool = False
    enable_thinking: bool = True
    max_length: int = Field(1024, ge=8)
    truncate: Literal["drop", "trace"] = "drop"


LoraFamily = Literal["attention", "mlp", "mamba", "moe"]


class LoraConfig(Section):
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    families: list[LoraFamily] = ["attention", "mlp"]
    target_modules: list[str] | None = None  # explicit list overrides families


class PhaseConfig(Section):
    """One phase of training; unset keys come from the phase's preset."""

    learning_rate: float | None = Field(None, gt=0)
    lr_scheduler_type: str | None = None
    warmup_steps: int | None = Field(None, ge=0)
    max_grad_norm: float | None = Field(None, ge=0)  # 0 = clipping off
    neftune_noise_alpha: float | None = Field(None, ge=0)
    num_train_epochs: float | None = Field(None, gt=0)
    max_steps: int | None = None


class TrainConfig(Section):
    phases: list[Literal["train", "nudge"]] = ["train"]
    hard_types: list[str] = []
    stratify: bool = True
    largest_batch_first: bool = True  # each epoch's costliest micro-batch first (sampling.py)
    per_device_batch_size: int = Field(4, ge=1)
    gradient_accumulation_steps: int = Field(2, ge=1)
    seed: int = 42
    bf16: bool | Literal["auto"] = "auto"
    gradient_checkpointing: bool = False
    packing: bool | Literal["auto"] = "auto"  # padding-free rows for pure-attention models
    logging_steps: int = Field(5, ge=1)
    save_steps: int = Field(50, ge=1)
    train: PhaseConfig = PhaseConfig()
    nudge: PhaseConfig = PhaseConfig()


class EvalConfig(Section):
    data: DataConfig | None = None  # held-out problems; default: the training source's test split
    max_new_tokens: int = Field(512, ge=1)
    batch_size: int = Field(64, ge=1)  # sequences per generate batch (64 is fastest on CPU)
    backend: Literal["auto", "transformers", "vllm"] = "auto"
    temperature: float = Field(0.0, ge=0.0)
    num_samples: int = Field(1, ge=1)
    rel_tol: float = Field(1e-4, ge=0.0)
    integer_tolerance: bool = False  # True: whole numbers also match within rel_tol
    limit: int | None = Field(None, ge=1)


class TeacherConfig(Section):
    """Where the teacher's signal comes from (see ``reasondistill.distill.teacher``)."""

    # self: the student's own base with a trained adapter, as a second PEFT adapter (no second
    # copy of the weights); model: another model, frozen; cache: a `reasondistill cache` dir.
    kind: Literal["self", "model"] = "self"
    adapter: str | None = None  # self: the teacher adapter (an adapter or run directory)
    name: str | None = None  # model: hub id or local directory
    dtype: Literal["auto", "bfloat16", "float32", "float16"] = "auto"
    trust_remote_code: bool = False
    cache: str | None = None  # a teacher cache directory; training reads it instead


class LayerMapConfig(Section):
    """Which student layer is pulled toward which teacher layer.

    Index convention (both models): 0 = the embeddings, i = the output of block i, and
    L (the number of blocks) = the final state, which transformers returns *after* the final
    norm. ``last_k: K`` takes student blocks L-K .. L-1 (the last K before the final norm)
    and maps each proportionally onto the teacher; ``pairs`` lists them explicitly;
    ``student`` with ``proportional`` maps chosen student indices proportionally.
    """

    last_k: int | None = Field(5, ge=1)
    pairs: list[tuple[int, int]] | None = None
    student: list[int] | None = None  # with proportional teacher indices

    @model_validator(mode="after")
    def _one_choice(self) -> LayerMapConfig:
        if self.pairs is not None or self.student is not None:
            if self.pairs is not None and self.student is not None:
                raise ValueError("distill.layers: give either pairs or student, not both")
            object.__setattr__(self, "last_k", None)
        return self


class KDConfig(Section):
    """Logit distillation on completion tokens (same vocabulary)."""

    loss: Literal["forward_kl", "reverse_kl", "jsd"] = "forward_kl"
    temperature: float = Field(1.0, gt=0)
    jsd_beta: float = Field(0.5, gt=0, lt=1)  # generalised JSD's mixing weight


class DistillConfig(Section):
    """Latent reasoning distillation: L = (1-α)·L_task + α·L_hidden + β·L_kd."""

    enabled: bool = False
    alpha: float = Field(0.1, ge=0.0, le=1.0)
    beta: float = Field(0.0, ge=0.0)
    teacher: TeacherConfig = TeacherConfig()
    layers: LayerMapConfig = LayerMapConfig()
    # same_sequence: teacher and student read the same text, every completion token aligned;
    # answer_anchor: the teacher reads the full trace, the student its own (shorter) target;
    # the token before the answer and the answer span are aligned by role.
    tokens: Literal["same_sequence", "answer_anchor"] = "same_sequence"
    normalize: Literal["none", "layernorm", "teacher_std"] = "layernorm"
    distance: Literal["mse", "cosine", "smooth_l1"] = "mse"
    # initial: each extra term is rescaled, once, by L_task/L_term measured on the first
    # micro-batch, so α (and β) are the terms' shares of the loss at the start: a hidden
    # term 100x smaller than the cross-entropy still moves the student at α = 0.1.
    # none: the raw sum.
    balance: Literal["initial", "none"] = "initial"
    projection: Literal["auto", "always"] = "auto"  # auto: only where hidden sizes differ
    kd: KDConfig = KDConfig()
    similarity_rows: int = Field(32, ge=0)  # held-out rows for layer similarity (0 = off)


class TrackingConfig(Section):
    report_to: list[Literal["tensorboard", "wandb", "none"]] = ["none"]
    run_name: str | None = None


class TraceTeacherConfig(Section):
    """Who writes the candidate traces for ``reasondistill generate``."""

    # transformers / vllm: a local model (auto = vllm with CUDA and vLLM installed);
    # openai: an OpenAI-compatible HTTP server (vLLM, SGLang, llama.cpp, a hosted API)
    backend: Literal["auto", "transformers", "vllm", "openai"] = "auto"
    model: str | None = None  # local: a hub id or directory (default model.name); openai: served name
    adapter: str | None = None  # local backends: a LoRA adapter (or run directory)
    url: str | None = None  # openai: the base URL, e.g. http://127.0.0.1:8000/v1
    api_key_env: str | None = "OPENAI_API_KEY"  # the variable holding the key (never logged)


class GenerateConfig(Section):
    """``reasondistill generate``: k candidate traces per problem, checked against the label."""

    teacher: TraceTeacherConfig = TraceTeacherConfig()
    samples: int = Field(4, ge=1)  # candidates per problem
    temperature: float = Field(0.7, ge=0.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_new_tokens: int = Field(1024, ge=1)
    seed: int = 0
    keep: Literal["shortest", "all"] = "shortest"  # all: every verified trace ...
    max_per_problem: int | None = Field(None, ge=1)  # ... or the shortest m of them
    max_trace_tokens: int | None = Field(None, ge=1)  # longer verified traces are dropped
    concurrency: int = Field(4, ge=1)  # openai: requests in flight
    retries: int = Field(3, ge=0)  # openai: retries of a failed request (with backoff)
    timeout_s: float = Field(120.0, gt=0)  # openai: per request
    out: str | None = None  # default: <output_dir>/generated


class RunConfig(Section):
    output_dir: str = "runs/default"
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    format: FormatConfig = FormatConfig()
    lora: LoraConfig = LoraConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    tracking: TrackingConfig = TrackingConfig()
    distill: DistillConfig = DistillConfig()
    generate: GenerateConfig = GenerateConfig()

    @model_validator(mode="after")
    def _distill_teacher_is_named(self) -> RunConfig:
        d = self.distill
        if not d.enabled:
            return self
        if d.teacher.cache is None:
            if d.teacher.kind == "self" and not d.teacher.adapter:
                raise ValueError("distill.teacher.kind is 'self' but distill.teacher.adapter is "
                                 "not set; name the trained adapter (e.g. runs/demo/adapter)")
            if d.teacher.kind == "model" and not d.teacher.name:
                raise ValueError("distill.teacher.kind is 'model' but distill.teacher.name is "
                                 "not set; give a hub id or a local model directory")
        return self

    @model_validator(mode="after")
    def _nudge_needs_hard_types(self) -> RunConfig:
        if "nudge" in self.train.phases and not self.train.hard_types:
            raise ValueError(
                "train.phases includes 'nudge' but train.hard_types is empty; name the hard "
                "types (e.g. [bit_manipulation]) or set train.phases: [train]"
            )
        return self


# Names other tools (PEFT, TRL, TrainingArguments) use for our keys; difflib cannot guess these.
ALIASES = {"rank": "r", "lora_r": "r", "lora_alpha": "alpha", "lora_dropout": "dropout",
           "lr": "learning_rate", "epochs": "num_train_epochs", "batch_size": "per_device_batch_size",
           "per_device_train_batch_size": "per_device_batch_size",
           "max_seq_length": "max_length", "warmup": "warmup_steps"}


def _suggest(key: str, allowed) -> str:
    if ALIASES.get(key) in allowed:
        return f" (did you mean {ALIASES[key]!r}?)"
    return did_you_mean(key, allowed)


def _explain(error: ValidationError, model: type[BaseModel], source: str) -> str:
    lines = [f"{source}: invalid config"]
    for err in error.errors():
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            parent = _section_at(model, err["loc"][:-1])
            hint = _suggest(str(err["loc"][-1]), parent.model_fields) if parent else ""
            allowed = ", ".join(parent.model_fields) if parent else ""
            lines.append(f"  unknown key {loc!r}{hint}; allowed here: {allowed}")
        else:
            value = err.get("input")
            shown = "" if isinstance(value, dict) else f" (got {value!r})"
            lines.append(f"  {loc or '<root>'}: {err['msg']}{shown}")
    return "\n".join(lines)


def _section_at(model: type[BaseModel], loc) -> type[BaseModel] | None:
    current: Any = model
    for part in loc:
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return None
        annotation = field.annotation
        candidates = getattr(annotation, "__args__", (annotation,))
        current = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)),
                       None)
        if current is None:
            return None
    return current


def parse_config(raw: dict, source: str = "<config>") -> RunConfig:
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_explain(error, RunConfig, source)) from None


def yaml_problem(error: yaml.YAMLError) -> str:
    """A YAML parse error in one line: where and what (PyYAML's own message spans several
    lines, with a caret drawing and a blank line, and its line numbers count from 0)."""
    mark = getattr(error, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + str(getattr(error, "problem", None) or error).strip()


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply ``--set a.b=value`` overrides (values parsed as YAML) to a raw config dict."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. train.seed=3")
        key, value = item.split("=", 1)
        node = raw
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is not a section")
        try:
            node[parts[-1]] = yaml.safe_load(value)
        except yaml.YAMLError as error:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML "
                              f"({yaml_problem(error)}); quote it to pass text") from None
    return raw


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """Read, override and validate a YAML config (``None`` = all defaults)."""
    raw: dict = {}
    source = "<defaults>"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML: {yaml_problem(error)}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not UTF-8 text") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return parse_config(apply_overrides(raw, overrides or []), source)


def changed_keys(before: dict, after: dict) -> list[str]:
    """``key: old → new`` for every (dotted, nested) key whose value differs: how a refusal
    to mix two runs' settings names what changed."""

    def leaves(value, prefix=""):
        if isinstance(value, dict) and value:
            for key, inner in value.items():
                yield from leaves(inner, f"{prefix}.{key}" if prefix else str(key))
        else:
            yield prefix, value

    old, new = dict(leaves(before)), dict(leaves(after))
    return [f"{key}: {old.get(key)!r} → {new.get(key)!r}"
            for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]


def dump_config(config: RunConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
