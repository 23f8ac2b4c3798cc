"""Packaging a trained adapter: a Kaggle-style ``submission.zip`` or a merged full model."""

from __future__ import annotations

import contextlib
import json
import zipfile
from pathlib import Path

from reasondistill.errors import ReasondistillError

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def find_adapter(path: Path) -> Path:
    """Accept a run directory (its final ``adapter/``) or an adapter directory itself."""
    for candidate in (path / "adapter", path):
        if (candidate / "adapter_config.json").is_file():
            missing = [f for f in ADAPTER_FILES if not (candidate / f).is_file()]
            if missing:
                raise ReasondistillError(f"{candidate}: adapter is incomplete, missing {missing}")
            return candidate
    raise ReasondistillError(f"{path}: no adapter found (expected {path}/adapter/"
                             "adapter_config.json); did the training run finish?")


def adapter_config(adapter_dir: Path) -> dict:
    path = Path(adapter_dir) / "adapter_config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ReasondistillError(f"{path}: not a readable adapter config ({error})") from None
    if not isinstance(config, dict):
        raise ReasondistillError(f"{path}: not an adapter config (expected a JSON object)")
    return config


@contextlib.contextmanager
def loading_adapter(adapter_dir):
    """Wrap PEFT's loading of ``adapter_dir`` onto a base model, so an adapter that does not
    fit that base is one clear error naming the adapter, not a traceback.

    PEFT reports an adapter trained on another base as a RuntimeError listing every size
    mismatch, targets the base lacks as a ValueError, and a garbled config or weight file as
    a ValueError or safetensors' own error: all of them the user's choice of adapter or base.
    """
    from safetensors import SafetensorError

    try:
        yield
    except (RuntimeError, ValueError, KeyError, SafetensorError) as error:
        import torch

        if isinstance(error, torch.OutOfMemoryError):
            raise
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        mismatches = [line for line in lines if line.startswith("size mismatch")]
        detail = (f"{len(mismatches)} tensors have other shapes, e.g. {mismatches[0]}"
                  if mismatches else lines[0] if lines else type(error).__name__)
        raise ReasondistillError(f"adapter {adapter_dir} does not fit the base model (was it "
                                 f"trained on another one?): {detail}") from None


def check_rank(config: dict, max_rank: int | None, adapter_dir: Path) -> None:
    ranks = [config.get("r", 0), *(config.get("rank_pattern") or {}).values()]
    if max_rank is not None and max(ranks) > max_rank:
        raise ReasondistillError(f"{adapter_dir}: adapter rank {max(ranks)} exceeds --max-rank "
                                 f"{max_rank}; retrain with lora.r <= {max_rank}")


def write_submission_zip(adapter_dir: Path, out: Path, *, base_model: str | None,
                         max_rank: int | None = None) -> Path:
    """``submission.zip`` with the adapter config (base model set, inference mode on) and
    the adapter weights at the archive root, as Kaggle's LoRA submissions expect."""
    config = adapter_config(adapter_dir)
    check_rank(config, max_rank, adapter_dir)
    if base_model:
        config["base_model_name_or_path"] = base_model
    config["inference_mode"] = True
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = out.with_name(out.name + ".tmp")
    with zipfile.ZipFile(temp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("adapter_config.json", json.dumps(config, indent=2))
        archive.write(adapter_dir / "adapter_model.safetensors", "adapter_model.safetensors")
    temp.replace(out)
    return out


def write_merged_model(adapter_dir: Path, out: Path, *, model_name: str,
                       max_rank: int | None = None) -> Path:
    """Base model + adapter merged into plain weights (loadable without PEFT)."""
    import shutil

    from peft import PeftModel

    from reasondistill.config import ModelConfig
    from reasondistill.models import load_model

    check_rank(adapter_config(adapter_dir), max_rank, adapter_dir)
    model, tokenizer = load_model(ModelConfig(name=model_name), dtype="float32")
    with loading_adapter(adapter_dir):
        merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    temp = out.with_name(out.name + ".tmp")
    shutil.rmtree(temp, ignore_errors=True)
    merged.save_pretrained(str(temp))
    tokenizer.save_pretrained(str(temp))
    shutil.rmtree(out, ignore_errors=True)
    temp.rename(out)
    return out
