"""Knowledge review: Chen, Liu, Zhao & Jia (2021), "Distilling Knowledge via Knowledge Review", CVPR.

A shallow student level learns from the teacher's level *and* the deeper ones: going from the
deepest level to the shallowest, an attention-based fusion (ABF) merges the student's map with the
fused result of the level below (two per-pixel attention weights from a 1x1 conv); each fused map
goes through a 3x3 conv to the teacher's channels and is compared with the teacher's map by the
hierarchical context loss (HCL: MSE on the maps and on their 4x4, 2x2 and 1x1 average-pooled
versions, weights halving). The levels are the conv stages (the student after its ReLU, the teacher
before it, as mdistiller) plus the embeddings entering each model's classifier, as 1x1 maps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdlens.data.loader import Batch
from kdlens.distill.distiller import loss_dict, register_distiller
from kdlens.distill.features import FeatureDistiller
from kdlens.distill.layers import embedding_layer, paired_layers, require_maps


class ABF(nn.Module):
    """Attention-based fusion of one student level with the fused result of the level below."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, fuse: bool):
        super().__init__()
        self.conv1 = nn.Sequential(
            nn.Conv2d(in_channels, mid_channels, 1, bias=False), nn.BatchNorm2d(mid_channels)
        )
        self.conv2 = nn.Sequential(
            nn.Conv2d(mid_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.att_conv = (
            nn.Sequential(nn.Conv2d(2 * mid_channels, 2, 1), nn.Sigmoid()) if fuse else None
        )
        nn.init.kaiming_uniform_(self.conv1[0].weight, a=1)
        nn.init.kaiming_uniform_(self.conv2[0].weight, a=1)

    def forward(
        self,
        x: torch.Tensor,
        residual: torch.Tensor | None = None,
        out_size: tuple[int, int] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(output at the teacher's channels and ``out_size``, the fused map for the next level)."""
        x = self.conv1(x)  # (B, mid, h, w)
        if self.att_conv is not None:
            residual = F.interpolate(residual, x.shape[-2:], mode="nearest")
            z = self.att_conv(torch.cat([x, residual], dim=1))  # (B, 2, h, w)
            x = x * z[:, :1] + residual * z[:, 1:]
        if out_size is not None and tuple(x.shape[-2:]) != tuple(out_size):
            x = F.interpolate(x, out_size, mode="nearest")
        return self.conv2(x), x


def review(
    abfs: list[ABF], student_features: list[torch.Tensor], out_sizes: list[tuple[int, int]]
) -> list[torch.Tensor]:
    """The fused student maps, shallow to deep; fusion runs from the deepest level up."""
    out, residual = abfs[-1](student_features[-1], out_size=out_sizes[-1])
    results = [out]
    for x, abf, size in zip(student_features[-2::-1], abfs[-2::-1], out_sizes[-2::-1], strict=True):
        out, residual = abf(x, residual, size)
        results.insert(0, out)
    return results


def hcl_loss(student_features: list[torch.Tensor], teacher_features: list[torch.Tensor]):
    """Hierarchical context loss (Chen et al., §3.3): per level, MSE of the maps plus MSE of their
    4x4, 2x2, 1x1 average pools (only those smaller than the map), weights 1, 1/2, 1/4, 1/8,
    normalised by their sum; summed over levels."""
    total = 0.0
    for s, t in zip(student_features, teacher_features, strict=True):
        h = s.shape[2]
        loss = F.mse_loss(s, t)
        weight, weights = 1.0, 1.0
        for size in (4, 2, 1):
            if size >= h:
                continue
            weight /= 2.0
            loss = loss + weight * F.mse_loss(
                F.adaptive_avg_pool2d(s, size), F.adaptive_avg_pool2d(t, size)
            )
            weights += weight
        total = total + loss / weights
    return total


def _as_map(f: torch.Tensor) -> torch.Tensor:
    return f if f.ndim == 4 else f.flatten(1)[:, :, None, None]


@register_distiller("reviewkd")
class ReviewKDDistiller(FeatureDistiller):
    """Knowledge review (Chen et al. 2021): KD plus fused multi-level features and a pooled MSE.

    Attention-based fusion (ABF) of the student's levels, hierarchical context loss (HCL).
    """

    method = "reviewkd"

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        input_shape: tuple[int, ...],
        teacher_layers: list[str] | None = None,
        student_layers: list[str] | None = None,
        weight: float = 1.0,
        warmup: int = 20,
        max_mid_channels: int = 512,
        temperature: float = 4.0,
        alpha: float = 0.1,
        example_weighting: str = "none",
    ):
        s_names, t_names = paired_layers(
            self.method, student, teacher, input_shape, student_layers, teacher_layers,
            pre_relu=(False, True),
        )  # fmt: skip
        super().__init__(
            student,
            teacher,
            [*t_names, embedding_layer("reviewkd", "teacher", teacher, "teacher_layers")],
            [*s_names, embedding_layer("reviewkd", "student", student, "student_layers")],
            temperature,
            alpha,
            example_weighting,
        )
        s_shapes, t_shapes = self.probe_shapes(input_shape)
        require_maps(self.method, s_names + t_names, s_shapes[:-1] + t_shapes[:-1])
        s_channels = [s[0] for s in s_shapes]
        t_channels = [t[0] for t in t_shapes]
        # mdistiller: min(512, channels of the pooled last stage). The embedding kdlens takes may
        # be wider than that stage (a hidden layer before the classifier): the stage decides.
        mid = min(max_mid_channels, s_channels[-2])
        n = len(s_channels)
        device = next(student.parameters()).device
        self.abfs = nn.ModuleList(
            [
                ABF(c_s, mid, c_t, i < n - 1)
                for i, (c_s, c_t) in enumerate(zip(s_channels, t_channels, strict=True))
            ]
        ).to(device)
        self.out_sizes = [tuple(t[1:]) for t in t_shapes[:-1]] + [(1, 1)]
        self.weight, self.warmup = weight, warmup

    def trainable_parameters(self) -> list[nn.Parameter]:
        return super().trainable_parameters() + list(self.abfs.parameters())

    def forward(self, batch: Batch):
        logits, teacher_logits, s_feats, t_feats = self.features(batch)
        fused = review(list(self.abfs), [_as_map(f) for f in s_feats], self.out_sizes)
        # epoch counts from 0; mdistiller's min(epoch / warmup, 1) counts from 1
        warm = min((self.epoch + 1) / self.warmup, 1.0) if self.warmup > 0 else 1.0
        parts = self.logit_loss_parts(logits, teacher_logits, batch)
        parts["reviewkd"] = self.weight * warm * hcl_loss(fused, [_as_map(t) for t in t_feats])
        return loss_dict(parts, logits)
