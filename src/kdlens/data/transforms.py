"""Normalisation fitted on the training split, and batch-vectorised augmentation."""

from __future__ import annotations

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

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def to_dict(self) -> dict[str, list]:
        return {"mean": self.mean.flatten().tolist(), "std": self.std.flatten().tolist()}


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by its own random (dy, dx) in [-max_shift, max_shift], zero-filled.

    One gather for the whole batch: (B, C, H, W) -> (B, C, H, W).
    """
    b, c, h, w = x.shape
    p = max_shift
    padded = torch.nn.functional.pad(x, (p, p, p, p))  # (B, C, H+2p, W+2p)
    off = torch.randint(0, 2 * p + 1, (2, b), generator=generator).to(x.device)
    rows = off[0][:, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = off[1][:, None] + torch.arange(w, device=x.device)  # (B, W)
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flip = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def mixup(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, alpha: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix each example with a random partner; labels become mixed class distributions."""
    # numpy's Beta, seeded from our generator, so a run repeats exactly.
    rng = np.random.default_rng(int(torch.randint(2**31, (1,), generator=generator)))
    lam = torch.as_tensor(rng.beta(alpha, alpha, size=x.shape[0]), dtype=x.dtype, device=x.device)
    perm = torch.randperm(x.shape[0], generator=generator).to(x.device)
    shape = (-1,) + (1,) * (x.ndim - 1)
    mixed = lam.view(shape) * x + (1 - lam.view(shape)) * x[perm]
    onehot = torch.nn.functional.one_hot(y, num_classes).float()
    target = lam[:, None] * onehot + (1 - lam[:, None]) * onehot[perm]
    return mixed, target
