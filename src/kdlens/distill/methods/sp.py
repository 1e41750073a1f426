"""Similarity-preserving KD: Tung & Mori (2019), "Similarity-Preserving Knowledge
Distillation", ICCV, arXiv:1907.09682.

Inputs that the teacher represents alike should be represented alike by the student: the student
matches the teacher's batch similarity matrix G = F F^T (F: the flattened activations, one row per
example), each row L2-normalised. Widths and resolutions may differ, as G is B x B.

The distiller adds ``weight`` times the sum over layer pairs to KD's terms; by default on the
embeddings entering each model's classifier (the paper and mdistiller use the last stage's map,
e.g. ``layer3`` of a CIFAR ResNet).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdlens.data.loader import Batch
from kdlens.distill.distiller import loss_dict, register_distiller
from kdlens.distill.features import FeatureDistiller
from kdlens.distill.hooks import last_linear_input
from kdlens.errors import ConfigError


def similarity_matrix(feature: torch.Tensor) -> torch.Tensor:
    """Row-normalised Gram matrix of the flattened activations: (B, ...) -> (B, B) (eq. 2)."""
    f = feature.flatten(1)
    return F.normalize(f @ f.t(), dim=1)


def sp_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """||G_t - G_s||_F^2 / B^2 for one layer pair (Tung & Mori, eq. 3-4)."""
    b = student.shape[0]
    return (similarity_matrix(teacher) - similarity_matrix(student)).pow(2).sum() / b**2


@register_distiller("sp")
class SPDistiller(FeatureDistiller):
    """SP (Tung & Mori 2019) matches the batch similarity matrices of student and teacher."""

    method = "sp"

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        teacher_layers: list[str] | str | None = None,
        student_layers: list[str] | str | None = None,
        weight: float = 3000.0,
        temperature: float = 4.0,
        alpha: float = 0.1,
        example_weighting: str = "none",
    ):
        teacher_layers = teacher_layers or last_linear_input(teacher)
        student_layers = student_layers or last_linear_input(student)
        teacher_layers = [teacher_layers] if isinstance(teacher_layers, str) else teacher_layers
        student_layers = [student_layers] if isinstance(student_layers, str) else student_layers
        if len(teacher_layers) != len(student_layers):
            raise ConfigError(
                "distill.options.sp: teacher_layers and student_layers must have the same length "
                "(paired in order)"
            )
        super().__init__(
            student, teacher, teacher_layers, student_layers, temperature, alpha,
            example_weighting,
        )  # fmt: skip
        self.weight = weight

    def forward(self, batch: Batch):
        logits, teacher_logits, s_feats, t_feats = self.features(batch)
        parts = self.logit_loss_parts(logits, teacher_logits, batch)
        # Summed over layer pairs, as the paper's eq. 4 and mdistiller.
        parts["sp"] = self.weight * sum(
            sp_loss(s, t) for s, t in zip(s_feats, t_feats, strict=True)
        )
        return loss_dict(parts, logits)
