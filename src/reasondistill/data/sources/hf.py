"""``data.source: hf``: any Hugging Face ``datasets`` dataset, through ``data.columns``.

``data.path`` is a hub id, a local dataset folder, or a ``save_to_disk`` folder. ``datasets``
is imported here, only when this source is used, so the data core stays light.
"""

from __future__ import annotations

from pathlib import Path

from reasondistill.config import DataConfig
from reasondistill.data.sources.base import Row, Source
from reasondistill.data.sources.columns import ColumnMapper
from reasondistill.errors import ConfigError, DataError, did_you_mean


def load_dataset(path: str, *, split: str, name: str | None = None):
    """One split of a dataset as a ``datasets.Dataset``, or a DataError saying why not."""
    import datasets

    folder = Path(path).expanduser()
    try:
        if (folder / "state.json").is_file() or (folder / "dataset_dict.json").is_file():
            return _split_of(datasets.load_from_disk(str(folder)), split, path)
        return datasets.load_dataset(path, name, split=split)
    except ConnectionError as error:
        raise DataError(f"could not reach the Hugging Face Hub (offline?): {error}",
                        file=path) from None
    except (OSError, ValueError, datasets.exceptions.DatasetsError) as error:
        raise DataError(f"could not load the dataset: {type(error).__name__}: {error}",
                        file=path) from None


def _split_of(dataset, split: str, path: str):
    if not hasattr(dataset, "keys"):  # a single saved Dataset
        return dataset
    if split not in dataset:
        splits = list(dataset.keys())
        raise DataError(f"no split {split!r} (data.split){did_you_mean(split, splits)}; splits: "
                        f"{', '.join(splits)}", file=path)
    return dataset[split]


def dataset_rows(dataset):
    return (Row(index, values) for index, values in enumerate(dataset))


def open_source(cfg: DataConfig) -> Source:
    if cfg.path is None:
        raise ConfigError("data.source 'hf' needs data.path: a dataset id (org/name) or a "
                          "local dataset folder")
    dataset = load_dataset(cfg.path, split=cfg.split, name=cfg.hf_config)
    mapper = ColumnMapper(cfg.columns, dataset.column_names, file=cfg.path,
                          id_prefix=f"{Path(cfg.path).name}-{cfg.split}")
    return Source(f"{cfg.path} (split {cfg.split})", dataset_rows(dataset), mapper,
                  mapper.warnings)
