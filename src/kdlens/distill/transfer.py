"""Transfer sets: what the students learn on, when it is not the teacher's own training split.

Hinton et al. (2015, §2.3, §6.2) distill on a "transfer set" that may be unlabeled or come from
elsewhere. Here it is, by ``distill.transfer``: the training split (default); a held-out share of
it the teacher never trains on (``holdout``); or another dataset resized to the run's input shape
(``dataset``). ``distill.exclude_classes`` then removes whole classes (the omitted-class
experiment, §3). Augmented or mixup samples come from ``student.train.augment`` as usual.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from kdlens.config import RunConfig
from kdlens.data import Dataset, create_dataset
from kdlens.data.lazy import LazyRows, take
from kdlens.data.split import Split, _stratified
from kdlens.errors import ConfigError, DataError

Tensors = tuple[torch.Tensor, torch.Tensor]
# (x, y, dataset index of each row): None for rows of another dataset.
Rows = tuple[torch.Tensor | LazyRows, torch.Tensor, torch.Tensor | None]


class RunContext(Protocol):
    """What these functions read of a run (``kdlens.run.RunContext`` has it)."""

    config: RunConfig
    dataset: Dataset
    split: Split

    def tensors(self, part: str) -> Tensors: ...


def holdout_indices(ctx: RunContext) -> tuple[list[int], list[int]]:
    """(teacher's part, students' part) of the training split, stratified and seeded."""
    train = np.asarray(ctx.split.train)
    y = ctx.dataset.y.numpy()
    teacher_part, student_part = _stratified(
        train, y, ctx.config.distill.transfer.holdout, ctx.config.seed + 2
    )
    return sorted(map(int, teacher_part)), sorted(map(int, student_part))


def _rows(ctx: RunContext, idx: list[int]) -> Rows:
    i = torch.as_tensor(idx, dtype=torch.long)
    return take(ctx.dataset.x, i), ctx.dataset.y[i], i  # streaming data: rows stay unread


def teacher_rows(ctx: RunContext) -> Rows:
    """The teacher's training data: the training split, less any held-out transfer share."""
    if ctx.config.distill.transfer.holdout:
        return _rows(ctx, holdout_indices(ctx)[0])
    return _rows(ctx, ctx.split.train)


def teacher_tensors(ctx: RunContext) -> Tensors:
    return teacher_rows(ctx)[:2]


def resize_images(
    x: torch.Tensor, shape: tuple[int, ...], crop: int = 0, pad: int = 0
) -> torch.Tensor:
    """(N, C, h, w) -> (N, *shape): cut ``crop`` pixels per border, resize, zero-pad by ``pad``.

    ``pad`` and ``crop`` line up where the strokes sit: MNIST digits fill the central 20x20 of
    28x28, scikit-learn's digits fill all of 8x8.
    """
    c, h, w = shape
    if x.shape[1] != c:
        raise DataError(f"transfer set has {x.shape[1]} channels, the run's data {c}")
    if crop:
        x = x[..., crop:-crop, crop:-crop]
    inner = (h - 2 * pad, w - 2 * pad)
    if min(inner) < 1 or min(x.shape[-2:]) < 1:
        raise ConfigError("distill.transfer: crop/pad leave no image")
    if tuple(x.shape[-2:]) != inner:
        x = F.interpolate(x, size=inner, mode="bilinear", align_corners=False, antialias=True)
    return F.pad(x, (pad, pad, pad, pad)).clamp(0, 1)


def _other_dataset(ctx: RunContext) -> Tensors:
    t = ctx.config.distill.transfer
    other: Dataset = create_dataset(t.dataset, root=ctx.config.data.root)
    if other.kind != "image" or ctx.dataset.kind != "image":
        raise ConfigError("distill.transfer.dataset: only image datasets can be resized")
    if other.num_classes != ctx.dataset.num_classes:
        raise ConfigError(
            f"distill.transfer.dataset {t.dataset!r} has {other.num_classes} classes, the run's "
            f"data {ctx.dataset.num_classes}"
        )
    x, y = other.x, other.y
    if other.is_test is not None:  # never distill on another dataset's test rows
        x, y = x[~other.is_test], y[~other.is_test]
    if t.limit is not None and t.limit < len(y):
        keep = torch.randperm(len(y), generator=torch.Generator().manual_seed(ctx.config.seed))
        x, y = x[keep[: t.limit]], y[keep[: t.limit]]
    return resize_images(x, ctx.dataset.input_shape, t.crop, t.pad), y


def student_tensors(ctx: RunContext) -> Tensors:
    return student_rows(ctx)[:2]


def student_rows(ctx: RunContext) -> Rows:
    """The students' transfer set (scratch learns on it with labels, the distilled one with the
    teacher), after ``exclude_classes``, with each row's dataset index (None for another
    dataset)."""
    d = ctx.config.distill
    index: torch.Tensor | None = None
    if d.transfer.dataset:
        x, y = _other_dataset(ctx)
    elif d.transfer.holdout:
        x, y, index = _rows(ctx, holdout_indices(ctx)[1])
    else:
        x, y, index = _rows(ctx, ctx.split.train)
    if d.exclude_classes:
        bad = [c for c in d.exclude_classes if not 0 <= c < ctx.dataset.num_classes]
        if bad:
            raise ConfigError(
                f"distill.exclude_classes: {bad} not in 0..{ctx.dataset.num_classes - 1}"
            )
        keep = ~torch.isin(y, torch.as_tensor(d.exclude_classes))
        x, y = take(x, keep), y[keep]
        index = None if index is None else index[keep]
    if len(y) == 0:
        raise ConfigError("distill: the students' transfer set is empty")
    return x, y, index
