"""Datasets: inputs and labels as tensors, or (data larger than memory) inputs read from disk."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import torch

from kdlens.data.lazy import LazyRows
from kdlens.errors import DataError

# Values of ``Dataset.fixed_split``: the part each row belongs to when the data comes split.
TRAIN, VAL, TEST = 0, 1, 2


class Preparer(Protocol):
    """What a source must fit on the training rows only (a table's one-hot encoder, its medians).

    ``fit`` returns a JSON-ready state; ``transform`` turns every row into inputs with that state,
    so a run folder can save the state and re-apply it without fitting again.
    """

    def fit(self, train: Sequence[int]) -> dict[str, Any]: ...

    def transform(self, state: dict[str, Any]) -> tuple[torch.Tensor, list[str]]: ...


@dataclass
class Dataset:
    """All examples of one dataset, before splitting.

    ``x`` is float32: images in [0, 1] as (N, C, H, W), tabular data as (N, D) in raw units, text
    as (N, 0) with the strings in ``texts``. Normalisation is fitted later, on the training split
    only, and so is anything a source must learn from data (see :meth:`prepare`). When the decoded
    inputs would exceed ``data.max_memory_gb``, a source that can read rows one by one gives ``x``
    as :class:`~kdlens.data.lazy.LazyRows` (``streaming``): indexing it reads those rows.
    """

    name: str
    x: torch.Tensor | LazyRows
    y: torch.Tensor
    kind: Literal["image", "tabular", "text"]
    class_names: list[str]
    feature_names: list[str] = field(default_factory=list)
    # Data that comes split (torchvision's test sets, a folder's train/ val/ test/) marks each row
    # with TRAIN, VAL or TEST (int8); None lets make_split choose every part.
    fixed_split: torch.Tensor | None = None
    texts: list[str] | None = None
    # Files left out because they could not be read (data.skip_bad_files), as the source names them.
    skipped_files: list[str] = field(default_factory=list)
    # Set while ``x`` still waits for something fitted on the training rows; see prepare().
    preparer: Preparer | None = field(default=None, repr=False)
    prepared: dict[str, Any] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    @property
    def streaming(self) -> bool:
        """Inputs stay on disk and are read batch by batch."""
        return isinstance(self.x, LazyRows)

    @property
    def is_test(self) -> torch.Tensor | None:
        """(N,) bool: rows of a fixed test set, or None."""
        return None if self.fixed_split is None else self.fixed_split == TEST

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def prepare(self, train: Sequence[int], state: dict[str, Any] | None = None) -> Dataset:
        """The dataset ready to train on, given the training split's row indices.

        Sources whose inputs depend on fitted values (tables: one-hot categories, medians) fit them
        on ``train`` only, or re-apply a saved ``state`` (see :meth:`state_dict`); for every other
        dataset this returns ``self``.
        """
        if self.preparer is None:
            return self
        if state is None:
            state = self.preparer.fit(train)
        x, names = self.preparer.transform(state)
        ready = dataclasses.replace(self, x=x, feature_names=names, preparer=None, prepared=state)
        check_dataset(ready)
        return ready

    def state_dict(self) -> dict[str, Any] | None:
        """What :meth:`prepare` fitted, JSON-ready; None when nothing was fitted."""
        return self.prepared


def check_dataset(dataset: Dataset) -> None:
    """Reject data that would train silently wrong: empty, non-finite, bad labels."""
    name = dataset.name
    if len(dataset) == 0:
        raise DataError(f"dataset {name!r} is empty")
    if dataset.y.shape[0] != dataset.x.shape[0]:
        raise DataError(
            f"dataset {name!r}: {dataset.x.shape[0]} inputs but {dataset.y.shape[0]} labels"
        )
    # Streaming sources check their values as they read them (decoded pixels are finite).
    if not dataset.streaming and not torch.isfinite(dataset.x).all():
        bad = int((~torch.isfinite(dataset.x)).flatten(1).any(1).sum())
        raise DataError(f"dataset {name!r}: {bad} examples contain NaN or inf")
    if dataset.y.dtype not in (torch.int64, torch.int32):
        raise DataError(f"dataset {name!r}: labels must be integers, got {dataset.y.dtype}")
    lo, hi = int(dataset.y.min()), int(dataset.y.max())
    if lo < 0 or hi >= dataset.num_classes:
        raise DataError(
            f"dataset {name!r}: labels must lie in [0, {dataset.num_classes - 1}], found {lo}..{hi}"
        )
    if dataset.fixed_split is not None and dataset.fixed_split.shape != dataset.y.shape:
        raise DataError(f"dataset {name!r}: fixed_split must mark each of the {len(dataset)} rows")
    if dataset.texts is not None and len(dataset.texts) != len(dataset):
        raise DataError(f"dataset {name!r}: {len(dataset.texts)} texts for {len(dataset)} rows")
