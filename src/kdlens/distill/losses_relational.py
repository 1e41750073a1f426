"""Relational KD: Park, Kim, Lu & Cho (2019), "Relational Knowledge Distillation", CVPR.

The student matches the *structure* of the teacher's embedding (pairwise distances and the angles
of triplets), not the embedding itself, so the two may have different widths.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pairwise_distances(e: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Euclidean distances (B, B) with a zero diagonal; clamped so sqrt has a finite gradient."""
    sq = e.pow(2).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2 * e @ e.t()).clamp(min=eps)
    d = d2.sqrt()
    return d * (1 - torch.eye(len(e), device=e.device, dtype=e.dtype))


def _normalised_distances(e: torch.Tensor) -> torch.Tensor:
    d = pairwise_distances(e)
    return d / d[d > 0].mean()  # the paper's mu: makes the loss scale-free


def rkd_distance_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Huber loss between mean-normalised pairwise distances (Park et al., eq. 4-5)."""
    s, t = student.flatten(1), teacher.flatten(1)
    with torch.no_grad():
        t_d = _normalised_distances(t)
    return F.smooth_l1_loss(_normalised_distances(s), t_d)


def _angles(e: torch.Tensor) -> torch.Tensor:
    diff = F.normalize(e[None, :, :] - e[:, None, :], p=2, dim=2)  # (B, B, D) unit e_j - e_i
    return torch.bmm(diff, diff.transpose(1, 2)).flatten()  # cos of angle j-i-k, (B*B*B,)


def rkd_angle_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Huber loss between the cosines of all triplet angles (Park et al., eq. 6-7)."""
    s, t = student.flatten(1), teacher.flatten(1)
    with torch.no_grad():
        t_a = _angles(t)
    return F.smooth_l1_loss(_angles(s), t_a)
