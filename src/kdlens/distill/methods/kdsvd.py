"""KD-SVD: Lee, Kim & Song (2018), "Self-supervised Knowledge Distillation Using Singular Value
Decomposition", ECCV; as implemented in mdistiller.

Each feature map is compressed to its leading right singular vectors (scaled by the teacher's
normalised singular values); the knowledge is how those vectors relate between *consecutive* layers,
measured by a Gaussian RBF of their element-wise differences, and the student matches the
teacher's RBF maps. So at least two layer pairs are needed.

Like mdistiller (and unlike the authors' TensorFlow code, which decomposes the (H*W, C) matrix of
an NHWC map), a (C, H, W) map is decomposed as the (C*H, W) matrix that ``view`` gives in NCHW:
student and teacher must share the width of each paired map, not its channel count.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdlens.data.loader import Batch
from kdlens.distill.distiller import loss_dict, register_distiller
from kdlens.distill.features import FeatureDistiller, match_spatial
from kdlens.distill.layers import paired_layers, require_maps
from kdlens.errors import ConfigError


def _finite(x: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isfinite(x), x, torch.zeros_like(x))


def leading_svd(feature: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised leading singular values (B, n) and right singular vectors (B, W, n).

    The SVD's backward divides by differences of singular values, so a map of low rank (a small
    student's ReLU maps often have repeated zero singular values) gets inf/NaN gradients while its
    loss is finite; the hook makes them 0, as the forward treats a degenerate decomposition.
    """
    b, c, h, w = feature.shape
    if feature.requires_grad:
        feature.register_hook(_finite)
    _, s, vh = torch.linalg.svd(feature.reshape(b, c * h, w), full_matrices=False)
    s, v = _finite(s), _finite(vh.mH)  # a degenerate map must not poison the batch
    return F.normalize(s[:, :n], dim=1), F.normalize(v[:, :, :n], dim=1)


def align_singular_vectors(v_s: torch.Tensor, v_t: torch.Tensor) -> torch.Tensor:
    """For each teacher vector, the student vector most parallel to it, with the sign that aligns
    them: (B, W, n_s), (B, W, n_t) -> (B, W, n_t)."""
    cosine = v_s.mT @ v_t  # (B, n_s, n_t)
    best = cosine.abs().amax(1, keepdim=True)
    mask = torch.where(best == cosine.abs(), cosine.sign(), torch.zeros_like(cosine))
    return v_s @ mask


def kdsvd_loss(
    student_features: list[torch.Tensor], teacher_features: list[torch.Tensor], k: int = 1
) -> torch.Tensor:
    """Sum over consecutive layer pairs of the squared difference of RBF maps, per example.

    The student keeps ``k + 3`` singular vectors so that alignment can pick the best match for
    each of the teacher's ``k``. Non-finite terms (a degenerate decomposition) count as 0.
    """
    losses = []
    previous = None
    for f_s, f_t in zip(student_features, teacher_features, strict=True):
        s_t, v_t = leading_svd(f_t, k)
        _, v_s = leading_svd(f_s, k + 3)
        v_s = align_singular_vectors(v_s, v_t)
        scale = s_t.unsqueeze(1)  # (B, 1, k)
        v_t, v_s = v_t * scale, v_s * scale
        if previous is not None:
            v_sb, v_tb = previous
            s_rbf = torch.exp(-(v_s.unsqueeze(2) - v_sb.unsqueeze(1)).pow(2) / 8)
            t_rbf = torch.exp(-(v_t.unsqueeze(2) - v_tb.unsqueeze(1)).pow(2) / 8)
            term = (s_rbf - t_rbf.detach()).pow(2)
            losses.append(_finite(term).sum())
        previous = (v_s, v_t)
    return sum(losses) / student_features[0].shape[0]


@register_distiller("kdsvd")
class KDSVDDistiller(FeatureDistiller):
    """KD-SVD (Lee et al. 2018): KD plus matching how leading singular vectors relate across layers."""

    method = "kdsvd"

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        input_shape: tuple[int, ...],
        teacher_layers: list[str] | None = None,
        student_layers: list[str] | None = None,
        weight: float = 1.0,
        k: int = 1,
        temperature: float = 4.0,
        alpha: float = 0.1,
        example_weighting: str = "none",
    ):
        s_names, t_names = paired_layers(
            self.method, student, teacher, input_shape, student_layers, teacher_layers
        )
        if len(s_names) < 2:
            raise ConfigError(
                f"distill.method 'kdsvd' relates consecutive layers and needs 2 or more layer "
                f"pairs (found {len(s_names)}); name teacher_layers and student_layers"
            )
        super().__init__(student, teacher, t_names, s_names, temperature, alpha, example_weighting)
        s_shapes, t_shapes = self.probe_shapes(input_shape)
        require_maps(self.method, s_names + t_names, s_shapes + t_shapes)
        if k < 1:
            raise ConfigError(f"distill.options.kdsvd.k: needs 1 or more (got {k})")
        self.weight, self.k = weight, k

    def forward(self, batch: Batch):
        logits, teacher_logits, s_feats, t_feats = self.features(batch)
        # float32 at least: an SVD in bf16 is not available, and its gradient is ill-conditioned.
        pairs = [match_spatial(s.float(), t.float()) for s, t in zip(s_feats, t_feats, strict=True)]
        parts = self.logit_loss_parts(logits, teacher_logits, batch)
        parts["kdsvd"] = self.weight * kdsvd_loss(
            [s for s, _ in pairs], [t for _, t in pairs], self.k
        )
        return loss_dict(parts, logits)
