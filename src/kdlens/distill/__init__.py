"""Distillation: pure loss functions and the Distillers that apply them."""

from kdlens.distill import at, dkd, fitnets, rkd  # noqa: F401  (fill the registry)
from kdlens.distill.build import build_distiller, check_options, method_options
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
    "build_distiller",
    "check_options",
    "compute_logits",
    "create_distiller",
    "kd_loss",
    "kd_loss_parts",
    "list_distillers",
    "method_options",
    "soft_kl",
    "soft_targets",
]
