"""Datasets by name: ``create_dataset(name, ...)``, ``list_datasets()``."""

from __future__ import annotations

import math

import torch

from kdlens.data.base import Dataset
from kdlens.errors import DataError
from kdlens.registry import Registry

DATASETS: Registry[Dataset] = Registry("dataset")
register_dataset = DATASETS.register


def list_datasets(pattern: str = "*") -> list[str]:
    return DATASETS.names(pattern)


def create_dataset(name: str, root: str | None = None, download: bool = False) -> Dataset:
    """Load a registered dataset (or ``npz:<file>``) and check that it is usable."""
    if name.startswith("npz:"):
        from kdlens.data.files import load_npz

        dataset = load_npz(name.split(":", 1)[1])
    else:
        dataset = DATASETS.get(name)(root=root, download=download)
    check_dataset(dataset)
    return dataset


def check_dataset(dataset: Dataset) -> None:
    """Reject data that would train silently wrong: empty, non-finite, bad labels."""
    name = dataset.name
    if len(dataset) == 0:
        raise DataError(f"dataset {name!r} is empty")
    if dataset.y.shape[0] != dataset.x.shape[0]:
        raise DataError(
            f"dataset {name!r}: {dataset.x.shape[0]} inputs but {dataset.y.shape[0]} labels"
        )
    if not torch.isfinite(dataset.x).all():
        bad = int((~torch.isfinite(dataset.x)).flatten(1).any(1).sum())
        raise DataError(f"dataset {name!r}: {bad} examples contain NaN or inf")
    if dataset.y.dtype not in (torch.int64, torch.int32):
        raise DataError(f"dataset {name!r}: labels must be integers, got {dataset.y.dtype}")
    lo, hi = int(dataset.y.min()), int(dataset.y.max())
    if lo < 0 or hi >= dataset.num_classes:
        raise DataError(
            f"dataset {name!r}: labels must lie in [0, {dataset.num_classes - 1}], found {lo}..{hi}"
        )


def reshape_square(x: torch.Tensor) -> torch.Tensor:
    """(N, H*W) grey pixels -> (N, 1, H, W)."""
    side = math.isqrt(x.shape[1])
    return x.reshape(-1, 1, side, side)
