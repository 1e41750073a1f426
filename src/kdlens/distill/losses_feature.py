"""Feature-based losses: pure functions of feature tensors.

FitNets: Romero et al. (2015), "FitNets: Hints for Thin Deep Nets", arXiv:1412.6550.
Attention transfer: Zagoruyko & Komodakis (2017), "Paying More Attention to Attention", ICLR.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def match_spatial(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Average-pool the larger of two (B, C, H, W) maps down to the other's size."""
    if a.ndim != 4 or a.shape[-2:] == b.shape[-2:]:
        return a, b
    if a.shape[-2] * a.shape[-1] > b.shape[-2] * b.shape[-1]:
        return F.adaptive_avg_pool2d(a, b.shape[-2:]), b
    return a, F.adaptive_avg_pool2d(b, a.shape[-2:])


def hint_loss(regressed_student: torch.Tensor, teacher_feature: torch.Tensor) -> torch.Tensor:
    """FitNets' hint loss: mean squared error between the regressed student and teacher features."""
    return F.mse_loss(regressed_student, teacher_feature)


def attention_map(feature: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Spatial attention (Zagoruyko & Komodakis, eq. 2 and §3.1): mean over channels of
    |A|^p, flattened and L2-normalised per example. (B, C, H, W) -> (B, H*W)."""
    return F.normalize(feature.abs().pow(p).mean(1).flatten(1), dim=1)


def attention_transfer_loss(
    student_feature: torch.Tensor, teacher_feature: torch.Tensor, p: float = 2.0
) -> torch.Tensor:
    """Mean squared distance between normalised attention maps (the RepDistiller form of eq. 3).

    Maps of different resolution are compared after pooling the larger one to the smaller.
    """
    s, t = match_spatial(student_feature, teacher_feature)
    return (attention_map(s, p) - attention_map(t, p)).pow(2).mean()
