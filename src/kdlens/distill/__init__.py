"""Distillation: pure loss functions and the Distillers that apply them."""

from kdlens.distill.distiller import (
    DISTILLERS,
    Distiller,
    KDDistiller,
    TeacherDistiller,
    compute_logits,
    create_distiller,
    list_distillers,
)
from kdlens.distill.losses import kd_loss, kd_loss_parts, soft_kl, soft_targets

__all__ = [
    "DISTILLERS",
    "Distiller",
    "KDDistiller",
    "TeacherDistiller",
    "compute_logits",
    "create_distiller",
    "kd_loss",
    "kd_loss_parts",
    "list_distillers",
    "soft_kl",
    "soft_targets",
]
