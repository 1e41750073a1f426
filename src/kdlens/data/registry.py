"""Datasets by name: ``create_dataset(name, ...)``, ``list_datasets()``, ``list_sources()``.

A name is either a registered dataset (``mnist5k``, ``wine``, ``cifar10``...) or a source prefix
and a path (``csv:data/loans.csv``): each source is a loader ``load(path, **options)`` whose
keyword arguments are the ``data.*`` fields it reads.
"""

from __future__ import annotations

import inspect
import math
from typing import TYPE_CHECKING, Any

import torch

from kdlens.data.base import Dataset, check_dataset
from kdlens.data.lazy import LazyRows
from kdlens.errors import ConfigError
from kdlens.registry import Registry

if TYPE_CHECKING:
    from kdlens.config import DataConfig

DATASETS: Registry[Dataset] = Registry("dataset")
register_dataset = DATASETS.register

# prefix -> loader(path, **options); its help names what follows the prefix, e.g. "<folder>: ..."
SOURCES: Registry[Dataset] = Registry("data source")
register_source = SOURCES.register

# data.* fields that only sources read; a registered dataset takes none of them.
SOURCE_OPTIONS = (
    "image_size",
    "channels",
    "target",
    "text",
    "image",
    "impute",
    "drop_columns",
    "skip_bad_files",
)


def list_datasets(pattern: str = "*") -> list[str]:
    return DATASETS.names(pattern)


def list_sources() -> dict[str, str]:
    """``"csv:<file>" -> description`` for ``kdlens list``."""
    out = {}
    for prefix, text in SOURCES.describe().items():
        argument, _, description = text.partition(" ")
        out[f"{prefix}:{argument}"] = description
    return out


def create_dataset(
    name: str,
    root: str | None = None,
    download: bool = False,
    max_memory_gb: float | None = None,
    workers: int = 0,
    **options: Any,
) -> Dataset:
    """Load a registered dataset or a source (``prefix:path``) and check that it is usable.

    ``options`` are ``data.*`` fields for sources (``target="label"``, ``image_size=(32, 32)``);
    one a source does not read, set to anything but its default, is a :class:`ConfigError`.
    A source that can read its rows one by one (``imagefolder:``, ``hf:`` images, ``npz:``)
    leaves inputs that would take more than ``max_memory_gb`` decoded on disk (``x`` is then
    :class:`~kdlens.data.lazy.LazyRows`, read by ``workers`` DataLoader processes); None: always
    load them.
    """
    prefix, colon, path = name.partition(":")
    if colon and len(prefix) > 1:  # "C:\\data" is a Windows path, not a prefix
        loader = SOURCES.get(prefix)
        accepted = set(inspect.signature(loader).parameters)
        _refuse_options(options, accepted, f"{prefix}: data")
        if "max_memory_gb" in accepted:
            options = {**options, "max_memory_gb": max_memory_gb}
        dataset = loader(path, **{k: v for k, v in options.items() if k in accepted})
    else:
        _refuse_options(options, set(), f"dataset {name!r}")
        dataset = DATASETS.get(name)(root=root, download=download)
    if isinstance(dataset.x, LazyRows):
        dataset.x = dataset.x.with_workers(workers)
    check_dataset(dataset)
    return dataset


def dataset_from_config(data: DataConfig, download: bool | None = None) -> Dataset:
    """``create_dataset`` with every option of a ``data:`` config section."""
    return create_dataset(
        data.name,
        root=data.root,
        download=data.download if download is None else download,
        max_memory_gb=data.max_memory_gb,
        workers=data.workers,
        **{k: getattr(data, k) for k in SOURCE_OPTIONS},
    )


def _refuse_options(options: dict[str, Any], accepted: set[str], what: str) -> None:
    from kdlens.config import DataConfig

    for key, value in options.items():
        if key not in SOURCE_OPTIONS:
            raise TypeError(f"create_dataset() got an unexpected option {key!r}")
        default = DataConfig.model_fields[key].get_default(call_default_factory=True)
        if key not in accepted and value != default:
            raise ConfigError(f"data.{key} does not apply to {what}")


def check_text_teacher(dataset: Dataset, teacher_model: str) -> None:
    """Text reaches a model only through its own tokenizer: a Hugging Face teacher's."""
    if dataset.kind == "text" and not teacher_model.startswith("hf:"):
        raise ConfigError("data.text needs an hf: teacher (teacher.model: hf:PATH)")


def reshape_square(x: torch.Tensor) -> torch.Tensor:
    """(N, H*W) grey pixels -> (N, 1, H, W)."""
    side = math.isqrt(x.shape[1])
    return x.reshape(-1, 1, side, side)
