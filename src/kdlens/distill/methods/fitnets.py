"""FitNets: Romero et al. (2015), "FitNets: Hints for Thin Deep Nets", arXiv:1412.6550.

A learned regressor maps a student layer (the "guided" layer) onto a teacher layer (the "hint");
the regressor trains with the student and is discarded afterwards.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kdlens.data.loader import Batch
from kdlens.distill.distiller import loss_dict, register_distiller
from kdlens.distill.features import FeatureDistiller, match_spatial
from kdlens.errors import ConfigError


def hint_loss(regressed_student: torch.Tensor, teacher_feature: torch.Tensor) -> torch.Tensor:
    """FitNets' hint loss: mean squared error between the regressed student and teacher features."""
    return F.mse_loss(regressed_student, teacher_feature)


def make_regressor(student_shape: tuple[int, ...], teacher_shape: tuple[int, ...]) -> nn.Module:
    """1x1 conv + BN + ReLU for feature maps (RepDistiller's and mdistiller's ConvReg for maps of
    one size; the ReLU matches post-ReLU hints), a linear map for vectors."""
    if len(student_shape) == 3 and len(teacher_shape) == 3:
        return nn.Sequential(
            nn.Conv2d(student_shape[0], teacher_shape[0], 1, bias=False),
            nn.BatchNorm2d(teacher_shape[0]),
            nn.ReLU(),
        )
    if len(student_shape) == 3:
        raise ConfigError(
            f"distill.options.fitnets: the student layer gives a feature map {student_shape} but "
            f"the teacher layer {teacher_shape}; pick a teacher feature map (C, H, W)"
        )
    # A vector student (e.g. an MLP) regresses the flattened teacher feature.
    return nn.Sequential(
        nn.Flatten(), nn.Linear(math.prod(student_shape), math.prod(teacher_shape))
    )


@register_distiller("fitnets")
class FitNetsDistiller(FeatureDistiller):
    """FitNets (Romero et al. 2015): KD plus a hint loss through a learned regressor."""

    method = "fitnets"

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        input_shape: tuple[int, ...],
        teacher_layer: str | None = None,
        student_layer: str | None = None,
        weight: float = 100.0,
        temperature: float = 4.0,
        alpha: float = 0.1,
        example_weighting: str = "none",
    ):
        if not teacher_layer or not student_layer:
            raise ConfigError(
                "distill.options.fitnets: name teacher_layer and student_layer (module names, "
                "see model.named_modules())"
            )
        super().__init__(
            student, teacher, [teacher_layer], [student_layer], temperature, alpha,
            example_weighting,
        )  # fmt: skip
        self.weight = weight
        s_shape, t_shape = self.probe_shapes(input_shape)
        self.regressor = make_regressor(s_shape[0], t_shape[0]).to(
            next(student.parameters()).device
        )

    def trainable_parameters(self) -> list[nn.Parameter]:
        return super().trainable_parameters() + list(self.regressor.parameters())

    def forward(self, batch: Batch):
        logits, teacher_logits, (s,), (t,) = self.features(batch)
        regressed = self.regressor(s)
        if regressed.ndim == 2:
            t = t.flatten(1)
        else:
            regressed, t = match_spatial(regressed, t)
            if regressed.shape[-2:] != t.shape[-2:]:
                regressed = F.interpolate(regressed, size=t.shape[-2:])
        parts = self.logit_loss_parts(logits, teacher_logits, batch)
        parts["hint"] = self.weight * hint_loss(regressed, t)
        return loss_dict(parts, logits)
