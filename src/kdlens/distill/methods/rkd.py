"""Relational KD: Park, Kim, Lu & Cho (2019), "Relational Knowledge Distillation", CVPR.

The student matches the *structure* of the teacher's embedding (pairwise distances and the angles
of triplets), not the embedding itself, so the two may have different widths.

The distiller adds the distance and angle terms to KD's, on the embeddings entering each
model's classifier by default.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdlens.data.loader import Batch
from kdlens.distill.distiller import loss_dict, register_distiller
from kdlens.distill.features import EmbeddingDistiller


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


@register_distiller("rkd")
class RKDDistiller(EmbeddingDistiller):
    """Relational KD (Park et al. 2019): KD plus matching pairwise distances and triplet angles."""

    method = "rkd"

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        teacher_layer: str | None = None,
        student_layer: str | None = None,
        distance_weight: float = 25.0,
        angle_weight: float = 50.0,
        temperature: float = 4.0,
        alpha: float = 0.1,
        example_weighting: str = "none",
    ):
        super().__init__(
            student, teacher, teacher_layer, student_layer, temperature, alpha, example_weighting
        )
        self.distance_weight, self.angle_weight = distance_weight, angle_weight

    def forward(self, batch: Batch):
        logits, teacher_logits, (s,), (t,) = self.features(batch)
        parts = self.logit_loss_parts(logits, teacher_logits, batch)
        parts["rkd_distance"] = self.distance_weight * rkd_distance_loss(s, t)
        parts["rkd_angle"] = self.angle_weight * rkd_angle_loss(s, t)
        return loss_dict(parts, logits)
