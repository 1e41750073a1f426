"""Overhaul of feature distillation: Heo, Kim, Yun, Park, Kwak & Choi (2019), "A Comprehensive
Overhaul of Feature Distillation", ICCV.

The student matches the teacher's features *before* the ReLU, through a 1x1 conv + BN connector,
with a partial L2 distance: where the teacher is negative (the ReLU would zero it) the student is
only pushed below a per-channel margin m, the expected value of the teacher's negative responses.
The margin comes from the teacher's BatchNorm before that ReLU: a response is Gaussian with mean
beta and standard deviation |gamma|, so m = E[x | x < 0] = beta - |gamma| phi(beta/|gamma|) / Phi(-beta/|gamma|)
(the paper's eq. 3), or -3 |gamma| when almost no response is negative.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kdlens.data.loader import Batch
from kdlens.distill.distiller import loss_dict, register_distiller
from kdlens.distill.features import FeatureDistiller
from kdlens.distill.layers import bn_feeding, paired_layers, require_maps
from kdlens.errors import ConfigError


def ofd_margin(bn_weight: torch.Tensor, bn_bias: torch.Tensor) -> torch.Tensor:
    """Per-channel margin E[x | x < 0] for x ~ N(bias, |weight|^2) (Heo et al., eq. 3): (C,)."""
    s = bn_weight.detach().abs().double().clamp(min=1e-12)  # a dead channel: no division by 0
    m = bn_bias.detach().double()
    below = torch.special.ndtr(-m / s)  # P(x < 0)
    pdf = torch.exp(-((m / s) ** 2) / 2) / math.sqrt(2 * math.pi)
    margin = torch.where(below > 0.001, m - s * pdf / below.clamp(min=0.001), -3 * s)
    return margin.to(bn_weight.dtype)


class _ClampedSquare(torch.autograd.Function):
    """sum((max(x, lower) - target)^2), whose gradient is 2 (max(x, lower) - target) everywhere:
    where x is clamped, lower == target and the residual is already 0. One saved tensor and one
    multiplication backwards, instead of autograd's comparisons and masks."""

    @staticmethod
    def forward(ctx, x, lower, target):
        residual = torch.maximum(x, lower).sub_(target)
        ctx.save_for_backward(residual)
        return residual.pow(2).sum()

    @staticmethod
    def backward(ctx, grad):
        (residual,) = ctx.saved_tensors
        return residual * (2 * grad), None, None


def ofd_partial_l2(
    student: torch.Tensor, teacher: torch.Tensor, margin: torch.Tensor
) -> torch.Tensor:
    """Partial L2 (Heo et al., eq. 4), summed over channels and positions, averaged over examples.

    Where the teacher is negative the target is max(teacher, margin) and only a student *above*
    it is penalised; where the teacher is positive, any difference is. ``margin`` is (C,).
    """
    m = margin.view(1, -1, *[1] * (student.ndim - 2)).to(student)
    with torch.no_grad():  # the teacher's side is constant
        target = torch.maximum(teacher, m)
        # Below the target nothing counts where the teacher is negative: clamp the student there.
        lower = torch.where(teacher > 0, float("-inf"), target)
    return _ClampedSquare.apply(student, lower, target) / student.shape[0]


def ofd_loss(
    connected_students: list[torch.Tensor],
    teacher_features: list[torch.Tensor],
    margins: list[torch.Tensor],
) -> torch.Tensor:
    """Sum over layers of the partial L2, halved for each layer further from the deepest.

    Each teacher map is average-pooled to its (connected) student map's size (mdistiller).
    """
    n = len(connected_students)
    total = 0.0
    for i, (s, t, m) in enumerate(zip(connected_students, teacher_features, margins, strict=True)):
        if t.shape[-2:] != s.shape[-2:]:
            t = F.adaptive_avg_pool2d(t, s.shape[-2:])
        t = t.detach()
        total = total + ofd_partial_l2(s, t, m) / 2 ** (n - i - 1)
    return total


def make_connector(c_student: int, c_teacher: int) -> nn.Sequential:
    """1x1 conv + BN from the student's channels to the teacher's (He-normal init, as OFD's)."""
    conv = nn.Conv2d(c_student, c_teacher, 1, bias=False)
    nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / c_teacher))
    return nn.Sequential(conv, nn.BatchNorm2d(c_teacher))


@register_distiller("ofd")
class OFDDistiller(FeatureDistiller):
    """Feature distillation overhaul (Heo et al. 2019): KD plus a margin-aware L2 on pre-ReLU maps.

    The margins come from the teacher's batch-norm statistics before each ReLU.
    """

    method = "ofd"

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        input_shape: tuple[int, ...],
        teacher_layers: list[str] | None = None,
        student_layers: list[str] | None = None,
        weight: float = 1e-3,
        temperature: float = 4.0,
        alpha: float = 0.1,
        example_weighting: str = "none",
    ):
        s_names, t_names = paired_layers(
            self.method, student, teacher, input_shape, student_layers, teacher_layers,
            pre_relu=(True, True),
        )  # fmt: skip
        super().__init__(student, teacher, t_names, s_names, temperature, alpha, example_weighting)
        s_shapes, t_shapes = self.probe_shapes(input_shape)
        require_maps(self.method, s_names + t_names, s_shapes + t_shapes)
        modules = dict(teacher.named_modules())
        margins = []
        for name, bn in zip(t_names, bn_feeding(teacher, input_shape, t_names), strict=True):
            if bn is None:
                raise ConfigError(
                    f"distill.options.ofd: teacher layer {name!r} is neither a BatchNorm2d nor the "
                    "input of a ReLU after one; the margin needs the BN before the ReLU"
                )
            margins.append(ofd_margin(modules[bn].weight, modules[bn].bias))
        device = next(student.parameters()).device
        # Buffers: fixed at construction (the teacher is frozen), moved and saved with the rest.
        for i, m in enumerate(margins):
            self.register_buffer(f"margin{i}", m.to(device))
        self.connectors = nn.ModuleList(
            [make_connector(s[0], t[0]) for s, t in zip(s_shapes, t_shapes, strict=True)]
        ).to(device)
        self.weight = weight

    def trainable_parameters(self) -> list[nn.Parameter]:
        return super().trainable_parameters() + list(self.connectors.parameters())

    def forward(self, batch: Batch):
        logits, teacher_logits, s_feats, t_feats = self.features(batch)
        connected = [c(s) for c, s in zip(self.connectors, s_feats, strict=True)]
        margins = [getattr(self, f"margin{i}") for i in range(len(connected))]
        parts = self.logit_loss_parts(logits, teacher_logits, batch)
        parts["ofd"] = self.weight * ofd_loss(connected, t_feats, margins)
        return loss_dict(parts, logits)
