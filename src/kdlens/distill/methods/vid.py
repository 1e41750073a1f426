"""Variational information distillation: Ahn, Hu, Damianou, Lawrence & Dai (2019), "Variational
Information Distillation for Knowledge Transfer", CVPR.

VID maximises a variational lower bound on the mutual information between teacher and student
features: a regressor predicts the mean of a Gaussian over the teacher's feature from the student's,
with one learned variance per teacher channel (softplus of a parameter, plus a floor ``eps``), and
the student minimises the Gaussian's negative log-likelihood (eq. 2 and 6, constants dropped).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kdlens.data.loader import Batch
from kdlens.distill.distiller import loss_dict, register_distiller
from kdlens.distill.features import FeatureDistiller, match_spatial
from kdlens.distill.layers import conv_stages, embedding_layer, paired_layers
from kdlens.errors import ConfigError


def vid_loss(
    predicted_mean: torch.Tensor,
    log_scale: torch.Tensor,
    teacher_feature: torch.Tensor,
    eps: float = 1e-5,
) -> torch.Tensor:
    """Mean Gaussian negative log-likelihood 0.5 (mu - t)^2 / var + 0.5 log var (Ahn et al., eq. 6).

    ``var = softplus(log_scale) + eps`` per channel; ``predicted_mean`` and ``teacher_feature`` are
    (B, C, H, W) or (B, C). Every channel has as many entries, so the mean is taken per channel
    first and the variance applied to C numbers, not to every entry.
    """
    var = F.softplus(log_scale) + eps  # (C,)
    dims = [0, *range(2, predicted_mean.ndim)]
    squared = (predicted_mean - teacher_feature).pow(2).mean(dims)  # (C,)
    return 0.5 * (squared / var + torch.log(var)).mean()


def make_vid_regressor(c_in: int, c_out: int, maps: bool) -> nn.Module:
    """Three 1x1 convolutions (linear maps for vectors) with ReLUs between, as the authors'."""
    if maps:
        layer = lambda i, o: nn.Conv2d(i, o, 1, bias=False)  # noqa: E731
    else:
        layer = lambda i, o: nn.Linear(i, o, bias=False)  # noqa: E731
    return nn.Sequential(layer(c_in, c_out), nn.ReLU(), layer(c_out, c_out), nn.ReLU(),
                         layer(c_out, c_out))  # fmt: skip


def initial_log_scale(init_pred_var: float, eps: float) -> float:
    """softplus^-1(init_pred_var - eps): the variance starts at ``init_pred_var``."""
    return math.log(math.expm1(init_pred_var - eps))


@register_distiller("vid")
class VIDDistiller(FeatureDistiller):
    """Variational information distillation (Ahn et al. 2019): KD plus a Gaussian feature likelihood.

    A regressor predicts the teacher's features from the student's, with learned variances.
    """

    method = "vid"

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        input_shape: tuple[int, ...],
        teacher_layers: list[str] | None = None,
        student_layers: list[str] | None = None,
        weight: float = 1.0,
        init_pred_var: float = 5.0,
        eps: float = 1e-5,
        temperature: float = 4.0,
        alpha: float = 0.1,
        example_weighting: str = "none",
    ):
        if (
            student_layers is None
            and teacher_layers is None
            and not (conv_stages(student, input_shape) and conv_stages(teacher, input_shape))
        ):
            # No feature maps on one side (e.g. an MLP student): the embeddings entering the
            # classifiers, as the paper does for its MLPs.
            student_layers = embedding_layer("vid", "student", student, "student_layers")
            teacher_layers = embedding_layer("vid", "teacher", teacher, "teacher_layers")
        s_names, t_names = paired_layers(
            self.method, student, teacher, input_shape, student_layers, teacher_layers
        )
        super().__init__(student, teacher, t_names, s_names, temperature, alpha, example_weighting)
        s_shapes, t_shapes = self.probe_shapes(input_shape)
        regressors = []
        for s_name, s_shape, t_name, t_shape in zip(
            s_names, s_shapes, t_names, t_shapes, strict=True
        ):
            if len(s_shape) != len(t_shape) or len(s_shape) not in (1, 3):
                raise ConfigError(
                    f"distill.options.vid: student layer {s_name!r} {s_shape} and teacher layer "
                    f"{t_name!r} {t_shape} must both be feature maps (C, H, W) or both vectors"
                )
            regressors.append(make_vid_regressor(s_shape[0], t_shape[0], len(s_shape) == 3))
        device = next(student.parameters()).device
        self.regressors = nn.ModuleList(regressors).to(device)
        start = initial_log_scale(init_pred_var, eps)
        self.log_scales = nn.ParameterList(
            [nn.Parameter(torch.full((t[0],), start, device=device)) for t in t_shapes]
        )
        self.weight, self.eps = weight, eps

    def trainable_parameters(self) -> list[nn.Parameter]:
        return (
            super().trainable_parameters()
            + list(self.regressors.parameters())
            + list(self.log_scales.parameters())
        )

    def forward(self, batch: Batch):
        logits, teacher_logits, s_feats, t_feats = self.features(batch)
        parts = self.logit_loss_parts(logits, teacher_logits, batch)
        total = 0.0
        for s, t, regressor, log_scale in zip(
            s_feats, t_feats, self.regressors, self.log_scales, strict=True
        ):
            s, t = match_spatial(s, t)
            total = total + vid_loss(regressor(s), log_scale, t, self.eps)
        parts["vid"] = self.weight * total
        return loss_dict(parts, logits)
