"""In-memory datasets: small enough for CPU distillation, so everything is a tensor."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch


@dataclass
class Dataset:
    """All examples of one dataset, before splitting.

    ``x`` is float32: images in [0, 1] as (N, C, H, W), tabular data as (N, D) in raw units.
    Normalisation is fitted later, on the training split only.
    """

    name: str
    x: torch.Tensor
    y: torch.Tensor
    kind: Literal["image", "tabular"]
    class_names: list[str]
    feature_names: list[str] = field(default_factory=list)
    # Datasets that come with a fixed train/test partition (torchvision) mark their test rows here.
    is_test: torch.Tensor | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def __len__(self) -> int:
        return int(self.x.shape[0])
