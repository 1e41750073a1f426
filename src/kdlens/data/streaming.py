"""Batches of data that do not fit in memory, read by ``torch.utils.data.DataLoader`` workers.

A ``BatchLoader`` over :class:`~kdlens.data.lazy.LazyRows` streams, and yields exactly the batches
the in-memory path yields for the same seed: the batch order and every augmentation parameter are
drawn from the loader's generator in the training process, in the in-memory path's order (by the
batch sampler, which the DataLoader iterates in the training process); the workers only read
rows; augmentation is applied to the collated batch, vectorised, in the training process. So the
generator's state after an epoch is the in-memory path's, and resume saves and restores it alike.

With several processes (``world_size > 1``) each process reads only its contiguous share of each
global batch, plus, with mixup, the partners its rows are mixed with: what ``DistributedSampler``
does, with kdlens's "every process draws the same global batch and keeps its share".
"""

from __future__ import annotations

import weakref
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, SequentialSampler

from kdlens.data.lazy import LazyRows
from kdlens.data.transforms import (
    draw_flips,
    draw_mixup,
    draw_shifts,
    flip_images,
    mix_pairs,
    shift_images,
)
from kdlens.errors import DataError


@dataclass
class _Failed:
    """A worker's DataError, carried back as a value: DataLoader would re-raise it with the
    worker's traceback in the message, and errors are one line."""

    message: str


class _Reading(torch.utils.data.Dataset):
    """The rows of a LazyRows, read a whole batch per call (``__getitems__``)."""

    def __init__(self, rows: LazyRows):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitems__(self, positions: list[int]) -> torch.Tensor | _Failed:
        try:
            return self.rows[np.asarray(positions, dtype=np.int64)]
        except DataError as e:
            return _Failed(str(e))

    def __getitem__(self, position: int) -> torch.Tensor | _Failed:
        return self.__getitems__([position])


def _data_loader(rows: LazyRows, batch_sampler, **kwargs) -> DataLoader:
    # Its own generator: a DataLoader draws a seed for its workers whenever it starts an epoch,
    # from the global torch generator by default, which would shift dropout's draws (and make a
    # resumed run differ from an uninterrupted one). The workers draw nothing.
    return DataLoader(
        _Reading(rows),
        batch_sampler=batch_sampler,
        num_workers=rows.workers,
        collate_fn=_as_read,
        generator=torch.Generator(),
        **kwargs,
    )


def _as_read(batch):
    """The collate function: rows come stacked already."""
    return batch


def _checked(batch) -> torch.Tensor:
    if isinstance(batch, _Failed):
        raise DataError(batch.message)
    return batch


def read_batches(rows: LazyRows, batch_size: int) -> Iterator[torch.Tensor]:
    """``rows`` in order, ``batch_size`` at a time, read by ``rows.workers`` processes."""
    sampler = BatchSampler(SequentialSampler(range(len(rows))), batch_size, drop_last=False)
    for batch in _data_loader(rows, sampler):
        yield _checked(batch)


@dataclass
class _Step:
    """One batch as the training process planned it, before its rows were read."""

    index: torch.Tensor  # (B,) positions in the loader's rows: the global batch
    keep: torch.Tensor  # positions in the batch of this process's share
    read: torch.Tensor  # positions in the batch that are read: the share and its mixup partners
    shifts: torch.Tensor | None = None  # (2, B) offsets
    flips: torch.Tensor | None = None  # (B,) bool
    lam: torch.Tensor | None = None  # (B,) mixup weights
    perm: torch.Tensor | None = None  # (B,) mixup partners


class _Plan:
    """The batch sampler: draws what the in-memory ``BatchLoader.__iter__`` draws, in its order,
    and hands the DataLoader the positions to read; the plan of each batch waits in ``steps``."""

    def __init__(self, loader: Any, steps: deque[_Step]):
        self.loader = loader
        self.steps = steps

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[list[int]]:
        lo = self.loader
        g, n = lo.generator, len(lo.y)
        order = torch.randperm(n, generator=g) if lo.shuffle else torch.arange(n)
        for b in range(len(lo)):
            index = order[b * lo.batch_size : (b + 1) * lo.batch_size]
            step = _Step(index, keep=torch.arange(len(index)), read=torch.arange(len(index)))
            if lo.augment is not None:
                _draw(step, lo.augment, len(index), lo.x.ndim, g)
            if lo.world_size > 1:
                if len(index) < lo.world_size:
                    continue  # a last batch too small to share; every process skips it alike
                step.keep = torch.tensor_split(step.keep, lo.world_size)[lo.rank]
                step.read = step.keep
                if step.perm is not None:  # mixup: the share's partners are read too
                    step.read = torch.unique(torch.cat([step.keep, step.perm[step.keep]]))
            self.steps.append(step)
            yield index[step.read].tolist()


def _draw(step: _Step, augment, batch: int, ndim: int, g: torch.Generator) -> None:
    """The random draws of ``BatchLoader._augment``, in its order, for a batch of ``batch``."""
    if ndim == 4 and augment.shift > 0:
        step.shifts = draw_shifts(batch, augment.shift, g)
    if ndim == 4 and augment.flip:
        step.flips = draw_flips(batch, g)
    if augment.mixup > 0:
        step.lam, step.perm = draw_mixup(batch, augment.mixup, g)


Parts = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]


class Streamer:
    """Iterates a streaming ``BatchLoader``'s batches as (x, y, index, target, source_index),
    ``x`` normalised and augmented; one DataLoader (and its workers) serves every epoch."""

    def __init__(self, loader: Any):
        # A weak reference: the loader owns this streamer, and a reference cycle through the
        # DataLoader's iterator would leave its workers to the garbage collector, which may tear
        # down their queues first (every worker then waits out a 5 s join timeout).
        self.loader = weakref.proxy(loader)
        self.steps: deque[_Step] = deque()
        rows: LazyRows = loader.x
        self.data = _data_loader(
            rows,
            _Plan(self.loader, self.steps),
            pin_memory=loader.device.type == "cuda",
            persistent_workers=rows.workers > 0,
        )

    def __iter__(self) -> Iterator[Parts]:
        self.steps.clear()
        for rows in self.data:
            yield self._finish(_checked(rows), self.steps.popleft())

    def _finish(self, x: torch.Tensor, step: _Step) -> Parts:
        lo = self.loader
        x = x.to(lo.device)  # (len(step.read), ...) the rows read, in batch order
        y = lo.y[step.index].to(lo.device)  # (B,) the global batch's labels
        if step.shifts is not None:
            x = shift_images(x, lo.augment.shift, step.shifts[:, step.read])
        if step.flips is not None:
            x = flip_images(x, step.flips[step.read])
        row = torch.full((len(step.index),), -1, dtype=torch.long)
        row[step.read] = torch.arange(len(step.read))  # batch position -> row of x
        keep, target = step.keep, None
        if step.perm is not None:
            partner = step.perm[keep]
            x, target = mix_pairs(
                x[row[keep]], x[row[partner]], y[keep], y[partner], step.lam[keep], lo.num_classes
            )
        elif len(step.read) != len(keep) or not torch.equal(step.read, keep):
            x = x[row[keep]]
        index = step.index[keep]
        source = None if lo.source_index is None else lo.source_index[index].to(lo.device)
        return lo.normalizer(x), y[keep], index.to(lo.device), target, source
