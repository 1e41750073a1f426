"""Relational KD (Park et al. 2019) as a Distiller: KD plus distance and angle terms."""

from __future__ import annotations

from torch import nn

from kdlens.data.loader import Batch
from kdlens.distill.distiller import loss_dict, register_distiller
from kdlens.distill.features import FeatureDistiller
from kdlens.distill.hooks import last_linear_input
from kdlens.distill.losses_relational import rkd_angle_loss, rkd_distance_loss


@register_distiller("rkd")
class RKDDistiller(FeatureDistiller):
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
        # Default: the embeddings entering each model's classifier, as in the paper.
        teacher_layer = teacher_layer or last_linear_input(teacher)
        student_layer = student_layer or last_linear_input(student)
        super().__init__(
            student, teacher, [teacher_layer], [student_layer], temperature, alpha,
            example_weighting,
        )  # fmt: skip
        self.distance_weight, self.angle_weight = distance_weight, angle_weight

    def forward(self, batch: Batch):
        logits, teacher_logits, (s,), (t,) = self.features(batch)
        parts = self.logit_loss_parts(logits, teacher_logits, batch)
        parts["rkd_distance"] = self.distance_weight * rkd_distance_loss(s, t)
        parts["rkd_angle"] = self.angle_weight * rkd_angle_loss(s, t)
        return loss_dict(parts, logits)
