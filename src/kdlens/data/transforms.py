"""Normalisation fitted on the training split, and batch-vectorised augmentation."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Normalizer:
    """Per-channel (images) or per-feature (tabular) standardisation, fitted on training data."""

    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def fit(cls, x: torch.Tensor) -> Normalizer:
        dims = (0, 2, 3) if x.ndim == 4 else (0,)
        mean = x.mean(dim=dims, keepdim=True)[0]
        std = x.std(dim=dims, keepdim=True)[0]
        # A constant feature (std 0) would divide by zero; leave it centred but unscaled.
        return cls(mean, torch.where(std > 1e-8, std, torch.ones_like(std)))

    @classmethod
    def fit_batches(cls, batches: Iterable[torch.Tensor]) -> Normalizer:
        """The statistics of :meth:`fit` in one pass over batches of rows (data larger than
        memory): each batch's count, mean and sum of squared deviations per channel or feature,
        merged in float64 (Chan, Golub & LeVeque 1979), so no batch is kept."""
        n, mean, m2 = 0, torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.float64)
        image = False
        for x in batches:
            image = x.ndim == 4
            dims = (0, 2, 3) if image else (0,)
            k = x.numel() // x.shape[1]  # values per channel (feature) in this batch
            # One reduction without a temporary the size of the batch: large temporaries freed
            # between small long-lived tensors fragment glibc's heap (+250 MB over 35,000 rows).
            var, batch_mean = torch.var_mean(x, dim=dims, correction=0)
            batch_mean, batch_m2 = batch_mean.double(), var.double() * k
            delta = batch_mean - mean
            total = n + k
            mean = mean + delta * (k / total)
            m2 = m2 + batch_m2 + delta**2 * (n * k / total)
            n = total
        if n < 2:
            raise ValueError("Normalizer.fit_batches needs two or more values per channel")
        std = (m2 / (n - 1)).sqrt().float()
        mean = mean.float()
        if image:  # as fit: (C, 1, 1) for images, (D,) for features
            mean, std = mean.view(-1, 1, 1), std.view(-1, 1, 1)
        return cls(mean, torch.where(std > 1e-8, std, torch.ones_like(std)))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def to_dict(self) -> dict[str, list]:
        return {"mean": self.mean.flatten().tolist(), "std": self.std.flatten().tolist()}


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by its own random (dy, dx) in [-max_shift, max_shift], zero-filled.

    One gather for the whole batch: (B, C, H, W) -> (B, C, H, W).
    """
    return shift_images(x, max_shift, draw_shifts(x.shape[0], max_shift, generator))


def draw_shifts(batch: int, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """(2, B) offsets into the padded image, rows then columns: what random_shift draws."""
    return torch.randint(0, 2 * max_shift + 1, (2, batch), generator=generator)


def shift_images(x: torch.Tensor, max_shift: int, off: torch.Tensor) -> torch.Tensor:
    """Each image of (B, C, H, W) shifted by its column of the (2, B) offsets ``off``."""
    b, c, h, w = x.shape
    p = max_shift
    padded = torch.nn.functional.pad(x, (p, p, p, p))  # (B, C, H+2p, W+2p)
    off = off.to(x.device)
    rows = off[0][:, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = off[1][:, None] + torch.arange(w, device=x.device)  # (B, W)
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return flip_images(x, draw_flips(x.shape[0], generator))


def draw_flips(batch: int, generator: torch.Generator) -> torch.Tensor:
    """(B,) bool: which images random_flip mirrors."""
    return torch.rand(batch, generator=generator) < 0.5


def flip_images(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    return torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)


def mixup(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, alpha: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix each example with a random partner; labels become mixed class distributions."""
    lam, perm = draw_mixup(x.shape[0], alpha, generator)
    return mix_pairs(x, x[perm.to(x.device)], y, y[perm.to(y.device)], lam, num_classes)


def draw_mixup(
    batch: int, alpha: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,) float64 mixing weights and (B,) partners: what mixup draws."""
    # numpy's Beta, seeded from our generator, so a run repeats exactly.
    rng = np.random.default_rng(int(torch.randint(2**31, (1,), generator=generator)))
    lam = torch.as_tensor(rng.beta(alpha, alpha, size=batch))
    return lam, torch.randperm(batch, generator=generator)


def mix_pairs(
    x: torch.Tensor,
    partner: torch.Tensor,
    y: torch.Tensor,
    partner_y: torch.Tensor,
    lam: torch.Tensor,
    num_classes: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``lam * x + (1 - lam) * partner`` per row, and the mixed one-hot labels likewise."""
    lam = lam.to(dtype=x.dtype, device=x.device)
    shape = (-1,) + (1,) * (x.ndim - 1)
    mixed = lam.view(shape) * x + (1 - lam.view(shape)) * partner
    onehot = torch.nn.functional.one_hot(y, num_classes).float()
    partner_onehot = torch.nn.functional.one_hot(partner_y, num_classes).float()
    target = lam[:, None] * onehot + (1 - lam[:, None]) * partner_onehot
    return mixed, target
