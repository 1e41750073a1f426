"""Mini-batches: shuffle, augment, normalise, in that order; from in-memory tensors, or streamed
from disk for data larger than memory (``kdlens.data.streaming``), batch for batch the same."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from kdlens.config import AugmentConfig
from kdlens.data.lazy import LazyRows
from kdlens.data.streaming import Streamer
from kdlens.data.transforms import Normalizer, mixup, random_flip, random_shift


@dataclass
class Batch:
    """What one training step sees. ``target`` holds class distributions when mixup is on."""

    x: torch.Tensor  # normalised, augmented input: exactly what teacher and student both see
    y: torch.Tensor  # (B,) int labels
    index: torch.Tensor  # (B,) positions in the loader's tensors, for cached teacher logits
    target: torch.Tensor | None = None  # (B, K) mixed labels, or None
    # (B,) each row's index in the run's dataset (a teacher known by its saved outputs looks its
    # rows up by it); None for rows from another dataset (a transfer set).
    source_index: torch.Tensor | None = None

    @property
    def labels(self) -> torch.Tensor:
        return self.y if self.target is None else self.target


class BatchLoader:
    """Iterates (shuffled) batches of one split; augmentation is vectorised per batch.

    With ``world_size > 1`` (several processes, see ``kdlens.distributed``) ``batch_size`` stays
    the global batch: every process draws the same order and augmentation, then keeps its own
    contiguous share of each batch, so N processes take the same steps as one process would.

    ``x`` may be :class:`~kdlens.data.lazy.LazyRows` (data larger than memory): then the rows are
    read by ``x.workers`` DataLoader processes, and the batches are the same as from a tensor.
    """

    def __init__(
        self,
        x: torch.Tensor | LazyRows,
        y: torch.Tensor,
        normalizer: Normalizer,
        batch_size: int,
        shuffle: bool = False,
        augment: AugmentConfig | None = None,
        num_classes: int | None = None,
        seed: int = 0,
        max_batches: int | None = None,
        device: torch.device | str = "cpu",
        rank: int = 0,
        world_size: int = 1,
        source_index: torch.Tensor | None = None,
    ):
        self.x, self.y = x, y
        # (N,) dataset index of each row of x, or None (see Batch.source_index).
        self.source_index = None if source_index is None else torch.as_tensor(source_index)
        self.normalizer = normalizer
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment if augment is not None and is_augmenting(augment) else None
        self.num_classes = num_classes
        self.max_batches = max_batches
        self.device = torch.device(device)
        self.generator = torch.Generator().manual_seed(seed)
        self.rank, self.world_size = rank, world_size
        self._streamer: Streamer | None = None

    def __len__(self) -> int:
        n = -(-len(self.y) // self.batch_size)
        return min(n, self.max_batches) if self.max_batches else n

    def __iter__(self) -> Iterator[Batch]:
        if isinstance(self.x, LazyRows):
            if self._streamer is None:
                self._streamer = Streamer(self)
            for x, y, index, target, source in self._streamer:
                yield Batch(x, y, index, target, source)
            return
        n = len(self.y)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for b in range(len(self)):
            index = order[b * self.batch_size : (b + 1) * self.batch_size]
            x = self.x[index].to(self.device)
            y = self.y[index].to(self.device)
            source = None if self.source_index is None else self.source_index[index]
            target = None
            if self.augment is not None:
                x, target = self._augment(x, y)
            if self.world_size > 1:
                if len(index) < self.world_size:
                    continue  # a last batch too small to share; every process skips it alike
                x, y, index, target, source = self._share(x, y, index, target, source)
            source = None if source is None else source.to(self.device)
            yield Batch(self.normalizer(x), y, index.to(self.device), target, source)

    def _share(self, *tensors):
        """This process's contiguous part of each batch tensor (None stays None)."""
        return tuple(
            None if t is None else torch.tensor_split(t, self.world_size)[self.rank]
            for t in tensors
        )

    def _augment(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        aug, g = self.augment, self.generator
        if x.ndim == 4 and aug.shift > 0:
            x = random_shift(x, aug.shift, g)
        if x.ndim == 4 and aug.flip:
            x = random_flip(x, g)
        if aug.mixup > 0:
            x, target = mixup(x, y, self.num_classes, aug.mixup, g)
            return x, target
        return x, None

    def get_state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)


def is_augmenting(augment: AugmentConfig) -> bool:
    return augment.shift > 0 or augment.flip or augment.mixup > 0
