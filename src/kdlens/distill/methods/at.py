"""Attention transfer: Zagoruyko & Komodakis (2017), "Paying More Attention to Attention", ICLR.

The student matches the teacher's spatial attention maps at named conv layers (pairs in order);
channel counts may differ, since a map averages over channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdlens.data.loader import Batch
from kdlens.distill.distiller import loss_dict, register_distiller
from kdlens.distill.features import FeatureDistiller, match_spatial
from kdlens.errors import ConfigError


def attention_map(feature: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Spatial attention (Zagoruyko & Komodakis, eq. 2 and §3.1): mean over channels of
    |A|^p, flattened and L2-normalised per example. (B, C, H, W) -> (B, H*W)."""
    return F.normalize(feature.abs().pow(p).mean(1).flatten(1), dim=1)


def attention_transfer_loss(
    student_feature: torch.Tensor, teacher_feature: torch.Tensor, p: float = 2.0
) -> torch.Tensor:
    """Mean squared distance between normalised attention maps (the RepDistiller form of eq. 3).

    Maps of different resolution are compared after pooling the larger one to the smaller.
    """
    s, t = match_spatial(student_feature, teacher_feature)
    return (attention_map(s, p) - attention_map(t, p)).pow(2).mean()


@register_distiller("at")
class ATDistiller(FeatureDistiller):
    """Attention transfer (Zagoruyko & Komodakis 2017): KD plus matching of attention maps."""

    method = "at"

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        input_shape: tuple[int, ...],
        teacher_layers: list[str] | None = None,
        student_layers: list[str] | None = None,
        weight: float = 1000.0,
        p: float = 2.0,
        temperature: float = 4.0,
        alpha: float = 0.1,
        example_weighting: str = "none",
    ):
        # One layer may be given as a plain name rather than a list of one.
        teacher_layers = [teacher_layers] if isinstance(teacher_layers, str) else teacher_layers
        student_layers = [student_layers] if isinstance(student_layers, str) else student_layers
        if not teacher_layers or not student_layers or len(teacher_layers) != len(student_layers):
            raise ConfigError(
                "distill.options.at: give teacher_layers and student_layers, two lists of conv "
                "module names of the same length (paired in order)"
            )
        super().__init__(
            student, teacher, teacher_layers, student_layers, temperature, alpha,
            example_weighting,
        )  # fmt: skip
        s_shapes, t_shapes = self.probe_shapes(input_shape)
        for name, shape in [
            *zip(student_layers, s_shapes, strict=True),
            *zip(teacher_layers, t_shapes, strict=True),
        ]:
            if len(shape) != 3:
                raise ConfigError(
                    f"distill.options.at: layer {name!r} gives shape {shape}, not a feature map "
                    "(C, H, W)"
                )
        # The paper's beta = 1000 is spread over the layer pairs (Zagoruyko & Komodakis, §4).
        self.weight, self.p = weight, p

    def forward(self, batch: Batch):
        logits, teacher_logits, s_feats, t_feats = self.features(batch)
        parts = self.logit_loss_parts(logits, teacher_logits, batch)
        parts["at"] = (
            self.weight
            * sum(
                attention_transfer_loss(s, t, self.p) for s, t in zip(s_feats, t_feats, strict=True)
            )
            / len(s_feats)
        )
        return loss_dict(parts, logits)
