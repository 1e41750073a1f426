"""Deterministic stratified train/val/test splits, saved with each run."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from kdlens.data.base import TEST, TRAIN, VAL, Dataset
from kdlens.errors import DataError
from kdlens.utils import write_bytes_atomic


@dataclass
class Split:
    train: list[int]
    val: list[int]
    test: list[int]

    def save(self, path: str | Path) -> None:
        write_bytes_atomic(path, json.dumps(asdict(self)).encode())

    @classmethod
    def load(cls, path: str | Path) -> Split:
        return cls(**json.loads(Path(path).read_text()))


def _stratified(idx: np.ndarray, y: np.ndarray, size: float | int, seed: int):
    try:
        return train_test_split(idx, test_size=size, random_state=seed, stratify=y[idx])
    except ValueError:  # a class too rare to stratify: fall back to a plain shuffle split
        return train_test_split(idx, test_size=size, random_state=seed)


def make_split(
    dataset: Dataset,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    limit: int | None = None,
) -> Split:
    """Stratified split from ``seed``. Data that comes split (``Dataset.fixed_split``) keeps its
    parts; a part it lacks (val, test) is carved from its training rows."""
    try:
        split = _make_split(dataset, val_fraction, test_fraction, seed, limit)
    except ValueError as e:  # scikit-learn: a part would be empty
        raise DataError(
            f"dataset {dataset.name!r}: {len(dataset) if limit is None else min(limit, len(dataset))} "
            f"examples are too few to split into train, val and test ({str(e).splitlines()[0].split('. ')[0]})"
        ) from None
    check_split(split, dataset)
    return split


def _make_split(
    dataset: Dataset, val_fraction: float, test_fraction: float, seed: int, limit: int | None
) -> Split:
    y = dataset.y.numpy()
    idx = np.arange(len(y))
    if limit is not None and limit < len(idx):
        idx, _ = _stratified(idx, y, len(idx) - limit, seed)
    fixed = np.full(len(y), TRAIN) if dataset.fixed_split is None else dataset.fixed_split.numpy()
    train, val, test = (idx[fixed[idx] == part] for part in (TRAIN, VAL, TEST))
    if not len(test):  # fractions stay shares of the whole dataset
        train, test = _stratified(
            train, y, test_fraction / (1 - val_fraction * bool(len(val))), seed
        )
    if not len(val):
        train, val = _stratified(train, y, val_fraction / (1 - test_fraction), seed + 1)
    return Split(sorted(map(int, train)), sorted(map(int, val)), sorted(map(int, test)))


def check_split(split: Split, dataset: Dataset) -> None:
    for part in ("train", "val", "test"):
        if not getattr(split, part):
            raise DataError(f"dataset {dataset.name!r}: the {part} split is empty")
    present = set(torch.unique(dataset.y[split.train]).tolist())
    missing = [dataset.class_names[c] for c in range(dataset.num_classes) if c not in present]
    if missing:
        raise DataError(
            f"dataset {dataset.name!r}: classes missing from the training split: {missing}"
        )
