"""Distillation: pure loss functions and the Distillers that apply them."""

import importlib
import pkgutil

from kdlens.distill import methods as _methods
from kdlens.distill.build import build_distiller, check_options, method_options
from kdlens.distill.distiller import (
    DISTILLERS,
    Distiller,
    TeacherDistiller,
    compute_logits,
    create_distiller,
    list_distillers,
)
from kdlens.distill.losses import soft_kl, soft_targets


def load_methods() -> None:
    """Import every module of :mod:`kdlens.distill.methods`; each registers its method."""
    for info in pkgutil.iter_modules(_methods.__path__):
        importlib.import_module(f"{_methods.__name__}.{info.name}")


load_methods()

from kdlens.distill.methods.kd import KDDistiller, kd_loss, kd_loss_parts  # noqa: E402

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
    "load_methods",
    "method_options",
    "soft_kl",
    "soft_targets",
]
