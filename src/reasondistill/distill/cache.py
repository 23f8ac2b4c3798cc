"""The teacher cache: run the teacher once, keep only what the loss reads, train from disk.

``reasondistill cache CONFIG`` runs the online teacher (built as training would build it)
over the prepared training rows and stores, per row, its states at the mapped layers and the
aligned groups — ``[layer pairs, groups, teacher hidden size]`` in bfloat16 — keyed by the
example id. Training with ``distill.teacher.cache: DIR`` reads them back
(:class:`CachedTeacher`) instead of running a teacher forward each step.

A cache directory::

    fingerprint.json         what the cache was built from (see fingerprint())
    index.json               example id → shard, groups per row, the teacher's shape
    shard-00000.safetensors  the rows of one shard, one tensor per example id
    teacher-tokenizer/       the teacher's tokenizer (answer_anchor aligns with it)

Writing is resumable and atomic: a shard is written as ``shard-N.safetensors.tmp``, synced and
renamed, and only then listed in ``index.json`` (itself replaced atomically); a rerun skips the
ids the index lists and deletes any shard file it does not list. Logit KD (β > 0) needs the
teacher's final states at every supervised position, which the cache does not store.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from reasondistill.distill.layer_map import LayerMap, build_layer_map, num_blocks
from reasondistill.errors import ConfigError, ReasondistillError
from reasondistill.io import atomic_write_json

CACHE_VERSION = 1
STORED_DTYPE = "bfloat16"
STORED_BYTES = 2  # per value
FINGERPRINT_FILE = "fingerprint.json"
INDEX_FILE = "index.json"
TOKENIZER_DIR = "teacher-tokenizer"
SHARD_TARGET_BYTES = 256 << 20
HEADER_BYTES_PER_ROW = 96  # a shard's JSON header entry per tensor, roughly
DISK_MARGIN = 1.2
FULL_HASH_LIMIT = 2 << 30  # models up to 2 GiB are hashed whole
PARTIAL_HASH_BYTES = 16 << 20  # larger ones: the first and last 16 MiB of each file + its size
# Fingerprint keys that describe the teacher itself: a training config that names no teacher
# (only the cache) cannot check them, and trusts the cache's.
TEACHER_KEYS = ("teacher_kind", "teacher_weights", "teacher_adapter", "teacher_dtype",
                "teacher_tokenizer")


# --------------------------------------------------------------------------- what runs


@dataclass
class TeacherSpec:
    """The teacher a config names, known without loading its weights."""

    kind: str  # self | model
    name: str | None  # the model whose weights run (self: the student's base)
    adapter: Path | None  # self: the teacher adapter directory
    dtype: str  # what it computes in
    num_blocks: int
    hidden_size: int
    named: bool = True  # False: the config names only a cache

    def describe(self) -> str:
        if not self.named:
            return "the cache's teacher"
        if self.kind == "self":
            return f"self: {self.name} + adapter {self.adapter}"
        return f"model: {self.name}"


def _dtype_name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def teacher_named(cfg) -> bool:
    t = cfg.distill.teacher
    return bool(t.adapter) if t.kind == "self" else bool(t.name)


def teacher_spec(cfg) -> TeacherSpec:
    """The teacher of ``cfg.distill`` (it must be named), from configs alone."""
    from reasondistill.config import ModelConfig
    from reasondistill.distill.setup import _adapter_dir
    from reasondistill.models import load_model_config, resolve_dtype

    t = cfg.distill.teacher
    if not teacher_named(cfg):
        raise ConfigError("distill.teacher names no teacher to run: set distill.teacher.adapter "
                          "(kind: self) or distill.teacher.name (kind: model)")
    if t.kind == "self":
        from reasondistill.train.arguments import use_bf16

        config = load_model_config(cfg.model)
        name, adapter = cfg.model.name, _adapter_dir(t.adapter)
        dtype = "bfloat16" if use_bf16(cfg.train) else "float32"
    else:
        config = load_model_config(ModelConfig(name=t.name, dtype=t.dtype,
                                               trust_remote_code=t.trust_remote_code))
        name, adapter, dtype = t.name, None, _dtype_name(resolve_dtype(t.dtype))
    return TeacherSpec(t.kind, name, adapter, dtype, num_blocks(config),
                       int(config.get_text_config().hidden_size))


@dataclass
class CachePlan:
    """What a cache of ``cfg``'s rows holds: the layer map, the rows and their alignments."""

    spec: TeacherSpec
    layer_map: LayerMap
    ids: list[str]  # every prepared row's example id (a batch's row_index → id)
    alignments: list
    teacher_rows: list | None
    kept: list[int]
    teacher_tokenizer: object
    rows: list = field(repr=False, default_factory=list)

    @property
    def n_pairs(self) -> int:
        return len(self.layer_map.pairs)

    @property
    def bytes_per_token(self) -> int:
        return self.n_pairs * self.spec.hidden_size * STORED_BYTES

    def aligned_tokens(self, indices=None) -> int:
        return sum(self.alignments[i].n_groups for i in (self.kept if indices is None else indices))

    def bytes_for(self, indices=None) -> int:
        indices = self.kept if indices is None else indices
        return (self.aligned_tokens(indices) * self.bytes_per_token
                + len(indices) * HEADER_BYTES_PER_ROW)


def plan_cache(cfg, prepared, student_tokenizer, spec: TeacherSpec,
               teacher_tokenizer=None) -> CachePlan:
    """The layer map and alignments ``cfg`` gives ``prepared`` with ``spec``'s teacher."""
    from reasondistill.distill.setup import align_rows, same_tokenizer
    from reasondistill.models import load_model_config, load_tokenizer

    d = cfg.distill
    if teacher_tokenizer is None:
        teacher_tokenizer = (student_tokenizer if spec.kind == "self" else load_tokenizer(
            spec.name, trust_remote_code=d.teacher.trust_remote_code))
    if d.tokens == "same_sequence" and not same_tokenizer(student_tokenizer, teacher_tokenizer):
        raise ConfigError("distill.tokens: same_sequence needs the teacher to read the "
                          "student's tokens, but the two tokenizers differ (vocabulary or chat "
                          "template); use tokens: answer_anchor")
    student_blocks = num_blocks(load_model_config(cfg.model))
    layer_map = build_layer_map(d.layers, student_blocks, spec.num_blocks)
    alignments, teacher_rows, kept, _ = align_rows(d.tokens, cfg.format, prepared,
                                                   teacher_tokenizer)
    ids = [e.id for e in prepared.examples]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:3]
        raise ReasondistillError(f"the teacher cache keys rows by example id, but ids repeat "
                                 f"(e.g. {', '.join(dup)}); give every row a unique id")
    return CachePlan(spec, layer_map, ids, alignments, teacher_rows, kept, teacher_tokenizer,
                     prepared.tokenized.rows)


# --------------------------------------------------------------------------- fingerprint


def _sha256_file(path: Path, *, partial: bool) -> str:
    digest = hashlib.sha256()
    size = path.stat().st_size
    with open(path, "rb") as handle:
        if not partial or size <= 2 * PARTIAL_HASH_BYTES:
            for block in iter(lambda: handle.read(8 << 20), b""):
                digest.update(block)
        else:
            digest.update(handle.read(PARTIAL_HASH_BYTES))
            handle.seek(size - PARTIAL_HASH_BYTES)
            digest.update(handle.read(PARTIAL_HASH_BYTES))
    return f"{size}:{digest.hexdigest()}"


class WeightsNotLocal(ReasondistillError):
    """A hub model not downloaded yet: its files can be hashed only after loading it."""


def model_files_dir(name: str, revision: str | None = None) -> Path:
    """The local directory of ``name``'s weight files (a local dir, the embedded model's
    converted cache, or the hub cache's snapshot)."""
    from reasondistill.models import resolve_model_source

    source = Path(resolve_model_source(name))
    if source.is_dir():
        return source
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, revision=revision, local_files_only=True))
    except Exception as error:  # not in the hub cache (yet)
        raise WeightsNotLocal(f"{name}: no local copy of its weights to hash") from error


def weights_digest(directory: Path) -> dict:
    """``config.json`` and every weight file of a model directory: size and sha256 — of the
    whole file up to 2 GiB in all, else of each file's first and last 16 MiB (and said so)."""
    files = sorted(p for p in directory.iterdir() if p.is_file() and (
        p.suffix in (".safetensors", ".bin", ".pt", ".pth", ".gguf") or p.name == "config.json"))
    if not any(p.name != "config.json" for p in files):
        raise ReasondistillError(f"{directory} holds no weight files (*.safetensors, *.bin) to "
                                 "fingerprint the teacher by")
    total = sum(p.stat().st_size for p in files)
    partial = total > FULL_HASH_LIMIT
    method = ("size + sha256 of each file's first and last 16 MiB (model over 2 GiB)"
              if partial else "size + sha256 of each file")
    return {"method": method,
            "files": {p.name: _sha256_file(p, partial=partial) for p in files}}


def adapter_digest(directory: Path) -> dict:
    files = sorted(p for p in directory.iterdir()
                   if p.is_file() and p.name.startswith(("adapter_config", "adapter_model")))
    return {p.name: _sha256_file(p, partial=False) for p in files}


def tokenizer_digest(tokenizer) -> str:
    """sha256 of the vocabulary (added tokens included) and the chat template."""
    digest = hashlib.sha256()
    digest.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    digest.update(json.dumps(getattr(tokenizer, "chat_template", None)).encode())
    return digest.hexdigest()


def _rows_digest(plan: CachePlan) -> str:
    digest = hashlib.sha256()
    for i in plan.kept:
        row = plan.rows[i]
        digest.update(json.dumps([plan.ids[i], row.input_ids, row.labels]).encode())
    return f"{len(plan.kept)} rows, sha256 {digest.hexdigest()}"


def _alignment_digest(plan: CachePlan) -> str:
    digest = hashlib.sha256()
    for i in plan.kept:
        a = plan.alignments[i]
        teacher_ids = plan.teacher_rows[i]["input_ids"] if plan.teacher_rows else None
        digest.update(json.dumps([a.teacher_positions, a.teacher_groups, a.n_groups,
                                  teacher_ids]).encode())
    return f"{plan.aligned_tokens()} aligned tokens, sha256 {digest.hexdigest()}"


def fingerprint(cfg, plan: CachePlan, student_tokenizer, *, teacher: bool = True,
                weights: bool = True) -> dict:
    """What the cached values depend on, key by key (a differing key is named on refusal).

    ``teacher=False`` leaves out the keys describing the teacher (:data:`TEACHER_KEYS`),
    for a training config that names only the cache; ``weights=False`` leaves out only the
    weights' hash (a hub teacher with no local copy). Raises :class:`WeightsNotLocal` where
    the weights are to be hashed but not on disk yet."""
    spec = plan.spec
    out = {"version": CACHE_VERSION, "stored_dtype": STORED_DTYPE,
           "tokens": cfg.distill.tokens,
           "layer_map": [list(p) for p in plan.layer_map.pairs],
           "format": cfg.format.model_dump(mode="json"),
           "tokenizer": tokenizer_digest(student_tokenizer),
           "data_rows": _rows_digest(plan),
           "alignment": _alignment_digest(plan)}
    if teacher:
        revision = cfg.model.revision if spec.kind == "self" else None
        if weights:
            out["teacher_weights"] = weights_digest(model_files_dir(spec.name, revision))
        out.update({
            "teacher_kind": spec.kind,
            "teacher_adapter": adapter_digest(spec.adapter) if spec.adapter else None,
            "teacher_dtype": spec.dtype,
            "teacher_tokenizer": tokenizer_digest(plan.teacher_tokenizer),
        })
    return out


def _short(value) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    return text if len(text) <= 90 else text[:87] + "..."


def differences(cached: dict, expected: dict) -> list[str]:
    """The keys of ``expected`` whose values differ in ``cached``, each with both values
    (of a mapping, only its differing entries: two adapters' digests share the config
    file's, and showing that one would make the two values look equal)."""
    out = []
    for key, value in expected.items():
        old = cached.get(key, "<absent>")
        if old != value:
            if isinstance(old, dict) and isinstance(value, dict):
                keys = sorted(k for k in set(old) | set(value) if old.get(k) != value.get(k))
                old = {k: old.get(k, "<absent>") for k in keys}
                value = {k: value.get(k, "<absent>") for k in keys}
            out.append(f"{key} (cache: {_short(old)}; this config: {_short(value)})")
    return out


# --------------------------------------------------------------------------- size


def describe_size(plan: CachePlan, todo=None) -> str:
    total = plan.bytes_for()
    line = (f"teacher cache: {len(plan.kept)} rows, {plan.aligned_tokens():,} aligned tokens; "
            f"{plan.n_pairs} layer pairs × {plan.spec.hidden_size} (teacher hidden) × "
            f"{STORED_BYTES} bytes ({STORED_DTYPE}) = {plan.bytes_per_token:,} bytes per aligned "
            f"token; {total / 1e6:,.1f} MB in all")
    if todo is not None and len(todo) < len(plan.kept):
        line += f" ({plan.bytes_for(todo) / 1e6:,.1f} MB left to write, {len(todo)} rows)"
    return line


def _free_bytes(path: Path) -> int:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def check_disk_room(directory: Path, needed: int) -> None:
    free = _free_bytes(directory)
    if free < needed * DISK_MARGIN:
        raise ReasondistillError(
            f"not enough disk for the teacher cache in {directory}: it needs {needed / 1e6:,.1f} "
            f"MB (+{DISK_MARGIN - 1:.0%} margin = {needed * DISK_MARGIN / 1e6:,.1f} MB) and "
            f"{free / 1e6:,.1f} MB are free; free some space or choose another --out")


def estimate_for_run(cfg, prepared, student_tokenizer) -> str | None:
    """The size line for ``train --dry-run`` (None where the teacher is known only by a
    cache that does not exist yet); a teacher that cannot be read yet (an adapter still to
    train) gives a line that says why, not an error."""
    try:
        if teacher_named(cfg):
            spec = teacher_spec(cfg)
            tokenizer = None
        elif cfg.distill.teacher.cache and (Path(cfg.distill.teacher.cache) / INDEX_FILE).is_file():
            cached = CachedTeacher.open(cfg.distill.teacher.cache,
                                        [e.id for e in prepared.examples])
            spec, tokenizer = cached.spec(), cached.tokenizer
        else:
            return None
        return describe_size(plan_cache(cfg, prepared, student_tokenizer, spec, tokenizer))
    except ReasondistillError as error:
        return f"teacher cache: no size estimate yet ({error})"


# --------------------------------------------------------------------------- writing


def cache_dir(cfg, out: str | Path | None = None) -> Path:
    return Path(out or cfg.distill.teacher.cache or Path(cfg.output_dir) / "teacher-cache")


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ReasondistillError(f"cannot read {path}: {error}") from None


def new_index(plan: CachePlan) -> dict:
    return {"version": CACHE_VERSION, "complete": False, "stored_dtype": STORED_DTYPE,
            "teacher": {"kind": plan.spec.kind, "num_blocks": plan.spec.num_blocks,
                        "hidden_size": plan.spec.hidden_size, "about": plan.spec.describe()},
            "layer_map": [list(p) for p in plan.layer_map.pairs],
            "rows": {}, "groups": {}, "shards": {}}


def write_shard(path: Path, tensors: dict) -> int:
    """Write ``tensors`` to ``path`` atomically (``<path>.tmp``, fsync, rename); its size."""
    from safetensors.torch import save_file

    temp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(temp), metadata={"format": "pt", "reasondistill": "teacher-cache"})
    with open(temp, "rb") as handle:
        os.fsync(handle.fileno())
    os.chmod(temp, 0o644)
    os.replace(temp, path)
    return path.stat().st_size


def _save_tokenizer(tokenizer, directory: Path) -> None:
    target = directory / TOKENIZER_DIR
    if (target / "tokenizer_config.json").is_file():
        return
    temp = directory / (TOKENIZER_DIR + ".tmp")
    shutil.rmtree(temp, ignore_errors=True)
    tokenizer.save_pretrained(str(temp))
    shutil.rmtree(target, ignore_errors=True)
    temp.rename(target)


def build_online_teacher(cfg, spec: TeacherSpec, layer_map: LayerMap):
    """The teacher as training runs it, on the fastest device here, for inference only: the
    student's base with the teacher adapter (kind self; no student adapter), or the model."""
    import torch

    from reasondistill.distill.setup import load_teacher_model
    from reasondistill.distill.teacher import ModelTeacher
    from reasondistill.models import load_model

    if spec.kind == "self":
        from peft import PeftModel

        from reasondistill.export import loading_adapter

        base, _ = load_model(cfg.model, dtype=spec.dtype)
        with loading_adapter(spec.adapter):
            model = PeftModel.from_pretrained(base, str(spec.adapter), is_trainable=False)
    else:
        model, _ = load_teacher_model(cfg.distill.teacher)
    if torch.cuda.is_available():
        model = model.to("cuda")
    return ModelTeacher(model, layer_map)


def _device_of(model):
    return next(model.parameters()).device


@dataclass
class CacheResult:
    directory: Path
    rows: int
    written: int  # rows computed by this call
    aligned_tokens: int
    bytes: int  # shard bytes on disk

    @property
    def bytes_per_token(self) -> float:
        return self.bytes / max(self.aligned_tokens, 1)


def write_cache(cfg, out: str | Path | None = None, *, console=None,
                batch_size: int | None = None, rows_per_shard: int | None = None,
                progress: bool = True) -> CacheResult:
    """Run the teacher over ``cfg``'s prepared rows and store the aligned states in ``out``
    (default: ``distill.teacher.cache``, else ``<output_dir>/teacher-cache``); resumes a
    cache of the same fingerprint, refuses one of another."""
    import torch
    from rich.console import Console

    from reasondistill.models import load_tokenizer
    from reasondistill.prepare import prepare_data
    from reasondistill.reporting import print_data_report
    from reasondistill.train.collate import DistillCollator, PaddedCollator

    console = console or Console()
    directory = cache_dir(cfg, out)
    if directory.exists() and not directory.is_dir():
        raise ReasondistillError(f"teacher cache: {directory} is a file, not a directory")
    if directory.is_dir() and any(directory.iterdir()) and not (directory / INDEX_FILE).is_file():
        raise ReasondistillError(f"teacher cache: {directory} is not empty and holds no "
                                 f"{INDEX_FILE}; it is not a teacher cache (choose another --out)")
    spec = teacher_spec(cfg)
    if cfg.distill.beta > 0:
        console.print("[yellow]note[/]: distill.beta > 0 (logit KD) needs the online teacher; "
                      "the cache stores the hidden states only")
    tokenizer = load_tokenizer(cfg.model.name, trust_remote_code=cfg.model.trust_remote_code,
                               revision=cfg.model.revision)
    prepared = prepare_data(cfg.data, cfg.format, tokenizer, progress=progress)
    print_data_report(prepared.report, console)
    if not prepared.examples:
        raise ReasondistillError("no training rows left after the data stage (see drops above)")
    plan = plan_cache(cfg, prepared, tokenizer, spec)
    index = (read_json(directory / INDEX_FILE) if (directory / INDEX_FILE).is_file()
             else new_index(plan))
    todo = [i for i in plan.kept if plan.ids[i] not in index["rows"]]
    console.print(describe_size(plan, todo), highlight=False, soft_wrap=True)
    if todo:
        check_disk_room(directory, plan.bytes_for(todo))

    teacher = None
    try:
        expected = fingerprint(cfg, plan, tokenizer)
    except WeightsNotLocal:  # a hub teacher not downloaded yet: load it, then hash its files
        teacher = build_online_teacher(cfg, spec, plan.layer_map)
        expected = fingerprint(cfg, plan, tokenizer)
    console.print(f"teacher: {spec.describe()} ({spec.dtype}); weights fingerprinted by "
                  f"{expected['teacher_weights']['method']}", highlight=False, soft_wrap=True)
    if (directory / FINGERPRINT_FILE).is_file():
        diff = differences(read_json(directory / FINGERPRINT_FILE).get("fingerprint", {}),
                           expected)
        if diff:
            raise ReasondistillError(f"{directory} holds a teacher cache of another setup; "
                                     f"differs: {'; '.join(diff)}. Choose another --out or "
                                     "delete it")
    if todo and teacher is None:  # before the first write: a teacher that cannot load
        teacher = build_online_teacher(cfg, spec, plan.layer_map)  # leaves no half cache
    directory.mkdir(parents=True, exist_ok=True)
    if not (directory / INDEX_FILE).is_file():  # first: a kill after it leaves a cache to resume
        atomic_write_json(directory / INDEX_FILE, index)
    _write_fingerprint(directory, expected, spec)
    _save_tokenizer(plan.teacher_tokenizer, directory)
    for stale in directory.glob("shard-*"):  # a killed write's .tmp, or a shard never indexed
        if stale.name not in index["shards"]:
            stale.unlink()
    if not todo:
        index["complete"] = True
        atomic_write_json(directory / INDEX_FILE, index)
        console.print(f"teacher cache complete: {directory}")
        return _result(directory, plan, index, 0)

    teacher = teacher or build_online_teacher(cfg, spec, plan.layer_map)
    device = _device_of(teacher.model)
    per_row = max(plan.bytes_for() // max(len(plan.kept), 1), 1)
    rows_per_shard = rows_per_shard or max(1, SHARD_TARGET_BYTES // per_row)
    batch_size = batch_size or cfg.train.per_device_batch_size
    pad = plan.teacher_tokenizer.pad_token_id
    collator = DistillCollator(PaddedCollator(pad), plan.alignments, plan.teacher_rows)
    numbers = [int(name.split("-")[1].split(".")[0]) for name in index["shards"]]
    shard_number = max(numbers, default=-1) + 1
    pending: dict[str, torch.Tensor] = {}
    from tqdm.auto import tqdm

    with tqdm(total=len(todo), unit="row", desc="teacher cache", disable=not progress) as bar:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            batch = collator([{"input_ids": plan.rows[i].input_ids,
                               "labels": plan.rows[i].labels, "row": i} for i in chunk])
            batch = {k: v.to(device) for k, v in batch.items()}
            stacked = torch.stack(teacher.signal(batch).aligned)  # [pairs, groups, d]
            stacked = stacked.to(torch.bfloat16).cpu()
            offset = 0
            for i in chunk:
                n = plan.alignments[i].n_groups
                pending[plan.ids[i]] = stacked[:, offset:offset + n].clone(
                    memory_format=torch.contiguous_format)  # its own storage
                offset += n
            bar.update(len(chunk))
            if len(pending) >= rows_per_shard or start + batch_size >= len(todo):
                _flush(directory, index, shard_number, pending, expected, spec)
                shard_number, pending = shard_number + 1, {}
    index["complete"] = True
    atomic_write_json(directory / INDEX_FILE, index)
    result = _result(directory, plan, index, len(todo))
    console.print(f"wrote the teacher cache: {directory} ({result.rows} rows, "
                  f"{result.bytes / 1e6:,.1f} MB, {result.bytes_per_token:,.0f} bytes per "
                  "aligned token on disk)", highlight=False, soft_wrap=True)
    return result


def _write_fingerprint(directory: Path, expected: dict, spec: TeacherSpec) -> None:
    atomic_write_json(directory / FINGERPRINT_FILE, {
        "fingerprint": expected, "teacher": spec.describe(),
        "written": time.strftime("%Y-%m-%dT%H:%M:%S")})


def _flush(directory: Path, index: dict, number: int, pending: dict, expected: dict,
           spec: TeacherSpec) -> None:
    name = f"shard-{number:05d}.safetensors"
    size = write_shard(directory / name, pending)
    index["shards"][name] = {"rows": len(pending), "bytes": size}
    for row_id, tensor in pending.items():
        index["rows"][row_id] = name
        index["groups"][row_id] = int(tensor.shape[1])
    atomic_write_json(directory / INDEX_FILE, index)
    _write_fingerprint(directory, expected, spec)


def _result(directory: Path, plan: CachePlan, index: dict, written: int) -> CacheResult:
    return CacheResult(directory, len(index["rows"]), written,
                       sum(index["groups"].values()),
                       sum(s["bytes"] for s in index["shards"].values()))


# --------------------------------------------------------------------------- reading


KD_REFUSAL = ("logit KD (distill.beta > 0) needs the teacher's final states at every "
              "supervised position, which the teacher cache does not store; set distill.beta: 0 "
              "or train with the online teacher (drop distill.teacher.cache)")


class CachedTeacher:
    """The teacher's signal read from a cache directory (the interface of OnlineTeacher).

    ``ids`` are the example ids of the prepared rows, in order: a batch's ``row_index``
    picks from them."""

    def __init__(self, directory: str | Path, ids: list[str]):
        self.directory = Path(directory)
        self.index = read_json(self.directory / INDEX_FILE)
        self.stored = read_json(self.directory / FINGERPRINT_FILE)
        self.layer_map = LayerMap(tuple((int(s), int(t)) for s, t in self.index["layer_map"]))
        self.num_blocks = int(self.index["teacher"]["num_blocks"])
        self.hidden_size = int(self.index["teacher"]["hidden_size"])
        self.ids = list(ids)
        self._handles: dict = {}
        self._tokenizer = None

    @classmethod
    def open(cls, directory: str | Path, ids: list[str]) -> CachedTeacher:
        directory = Path(directory)
        if not directory.is_dir():
            raise ReasondistillError(f"distill.teacher.cache: {directory} is not a directory; "
                                     "write one with `reasondistill cache CONFIG`")
        for name in (INDEX_FILE, FINGERPRINT_FILE):
            if not (directory / name).is_file():
                raise ReasondistillError(f"distill.teacher.cache: {directory} holds no {name}, "
                                         "so it is not a teacher cache; write one with "
                                         "`reasondistill cache CONFIG`")
        teacher = cls(directory, ids)
        if teacher.index.get("version") != CACHE_VERSION:
            raise ReasondistillError(f"distill.teacher.cache: {directory} was written by "
                                     f"cache version {teacher.index.get('version')}, this is "
                                     f"{CACHE_VERSION}; rewrite it with `reasondistill cache`")
        return teacher

    @property
    def tokenizer(self):
        """The teacher's tokenizer as the cache saved it (alignment reads it)."""
        if self._tokenizer is None and (self.directory / TOKENIZER_DIR).is_dir():
            from transformers import AutoTokenizer

            from reasondistill.models import ensure_pad_token

            self._tokenizer = AutoTokenizer.from_pretrained(str(self.directory / TOKENIZER_DIR))
            ensure_pad_token(self._tokenizer)
        return self._tokenizer

    def spec(self) -> TeacherSpec:
        t = self.index["teacher"]
        return TeacherSpec(t["kind"], None, None, self.stored["fingerprint"].get(
            "teacher_dtype", "?"), self.num_blocks, self.hidden_size, named=False)

    def check(self, expected: dict) -> None:
        """Refuse a cache whose fingerprint differs from ``expected``, naming each key."""
        diff = differences(self.stored.get("fingerprint", {}), expected)
        if diff:
            raise ReasondistillError(f"the teacher cache {self.directory} was built for another "
                                     f"setup; differs: {'; '.join(diff)}. Rebuild it with "
                                     "`reasondistill cache CONFIG` or fix the config")

    def missing(self, ids) -> list[str]:
        return [i for i in ids if i not in self.index["rows"]]

    def _row(self, row_id: str):
        from safetensors import safe_open

        shard = self.index["rows"].get(row_id)
        if shard is None:
            raise ReasondistillError(f"the teacher cache {self.directory} holds no row "
                                     f"{row_id!r}; finish it with `reasondistill cache CONFIG`")
        handle = self._handles.get(shard)
        if handle is None:
            handle = self._handles[shard] = safe_open(str(self.directory / shard),
                                                      framework="pt")
        return handle.get_tensor(row_id)

    def signal(self, batch: dict, *, final_positions=None):
        import torch

        from reasondistill.distill.teacher import TeacherSignal

        if final_positions is not None:
            raise ReasondistillError(KD_REFUSAL)
        indices = batch["row_index"].tolist()
        rows = torch.cat([self._row(self.ids[i]) for i in indices], dim=1)
        if rows.shape[1] != int(batch["align_groups"]):
            raise ReasondistillError(f"the teacher cache {self.directory} holds {rows.shape[1]} "
                                     f"aligned groups for this batch, the batch aligns "
                                     f"{int(batch['align_groups'])}; rebuild the cache")
        device = batch["row_index"].device
        stacked = rows.to(device=device, dtype=torch.float32)
        return TeacherSignal(list(stacked.unbind(0)))

    def __getstate__(self):  # safetensors handles do not pickle; reopened on demand
        state = dict(self.__dict__)
        state["_handles"] = {}
        return state


def open_for_run(cfg, prepared, student_tokenizer, console=None) -> CachedTeacher:
    """The cache ``distill.teacher.cache`` names, checked against this run: its fingerprint
    (the teacher's keys too when the config names the teacher) and that it holds every row."""
    d = cfg.distill
    if d.beta > 0:
        raise ConfigError(KD_REFUSAL)
    teacher = CachedTeacher.open(d.teacher.cache, [e.id for e in prepared.examples])
    named = teacher_named(cfg)
    spec = teacher_spec(cfg) if named else teacher.spec()
    plan = plan_cache(cfg, prepared, student_tokenizer, spec,
                      None if named else teacher.tokenizer)
    try:
        expected = fingerprint(cfg, plan, student_tokenizer, teacher=named)
    except WeightsNotLocal:
        expected = fingerprint(cfg, plan, student_tokenizer, teacher=named, weights=False)
        if console is not None:
            console.print(f"note: {spec.name} has no local copy of its weights, so "
                          "teacher_weights is not re-checked", highlight=False)
    teacher.check(expected)
    if not named and console is not None:
        console.print(f"distill.teacher names only the cache: trusting its teacher "
                      f"({teacher.stored.get('teacher', '?')}; {', '.join(TEACHER_KEYS)} not "
                      "re-checked)", highlight=False, soft_wrap=True)
    missing = teacher.missing([plan.ids[i] for i in plan.kept])
    if missing:
        raise ReasondistillError(f"the teacher cache {teacher.directory} holds "
                                 f"{len(plan.kept) - len(missing)} of {len(plan.kept)} rows "
                                 "(an interrupted write?); finish it with `reasondistill cache "
                                 "CONFIG`")
    return teacher
