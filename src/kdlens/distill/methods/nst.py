"""Neuron selectivity transfer: Huang & Wang (2017), "Like What You Like: Knowledge Distill via
Neuron Selectivity Transfer", arXiv:1707.01219.

Each channel of a feature map is one sample of a distribution over spatial positions (its
"selectivity"); the student matches the teacher's distribution by the squared maximum mean
discrepancy with a second-order polynomial kernel, k(a, b) = (a . b)^2 (the paper's eq. 10 with
d = 2, c = 0). Channel counts may differ: only the spatial positions must agree.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdlens.data.loader import Batch
from kdlens.distill.distiller import loss_dict, register_distiller
from kdlens.distill.features import FeatureDistiller, match_spatial
from kdlens.distill.layers import paired_layers, require_maps


def _poly_kernel_mean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean over examples and channel pairs of (a_i . b_j)^2: (B, Ca, P), (B, Cb, P) -> scalar."""
    return torch.bmm(b, a.transpose(1, 2)).pow(2).mean()  # (B, Cb, Ca)


def nst_loss(student_feature: torch.Tensor, teacher_feature: torch.Tensor) -> torch.Tensor:
    """Squared MMD between the channels' L2-normalised spatial maps (Huang & Wang, eq. 7).

    (B, Cs, H, W) and (B, Ct, H', W'); the larger map is average-pooled to the smaller first.
    The teacher-teacher term carries no gradient and only offsets the value (so it is 0 when the
    maps agree).
    """
    s, t = match_spatial(student_feature, teacher_feature)
    s = F.normalize(s.flatten(2), dim=2)  # (B, Cs, H*W)
    t = F.normalize(t.flatten(2), dim=2)  # (B, Ct, H*W)
    return _poly_kernel_mean(t, t).detach() + _poly_kernel_mean(s, s) - 2 * _poly_kernel_mean(s, t)


@register_distiller("nst")
class NSTDistiller(FeatureDistiller):
    """Neuron selectivity transfer (Huang & Wang 2017): KD plus an MMD between feature maps."""

    method = "nst"

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        input_shape: tuple[int, ...],
        teacher_layers: list[str] | None = None,
        student_layers: list[str] | None = None,
        weight: float = 50.0,
        temperature: float = 4.0,
        alpha: float = 0.1,
        example_weighting: str = "none",
    ):
        s_names, t_names = paired_layers(
            self.method, student, teacher, input_shape, student_layers, teacher_layers
        )
        super().__init__(student, teacher, t_names, s_names, temperature, alpha, example_weighting)
        s_shapes, t_shapes = self.probe_shapes(input_shape)
        require_maps(self.method, s_names + t_names, s_shapes + t_shapes)
        # mdistiller's weight 50 multiplies the *sum* over layer pairs.
        self.weight = weight

    def forward(self, batch: Batch):
        logits, teacher_logits, s_feats, t_feats = self.features(batch)
        parts = self.logit_loss_parts(logits, teacher_logits, batch)
        parts["nst"] = self.weight * sum(
            nst_loss(s, t) for s, t in zip(s_feats, t_feats, strict=True)
        )
        return loss_dict(parts, logits)
