"""PKT: Passalis & Tefas (2018), "Learning Deep Representations with Probabilistic Knowledge
Transfer", ECCV, arXiv:1803.10837.

Each model's embedding defines, for every example of the batch, a probability distribution over
the others (cosine similarities mapped to [0, 1] and normalised per row). The student matches the
teacher's distributions by KL divergence; the two embeddings may have different widths.

The distiller adds ``weight`` times that term to KD's, on the embeddings entering each model's
classifier by default (as RepDistiller and mdistiller).
"""

from __future__ import annotations

import torch
from torch import nn

from kdlens.data.loader import Batch
from kdlens.distill.distiller import loss_dict, register_distiller
from kdlens.distill.features import EmbeddingDistiller


def _conditional_probabilities(e: torch.Tensor, eps: float) -> torch.Tensor:
    """Row-normalised (cos + 1) / 2 between all pairs of examples: (B, D) -> (B, B)."""
    e = e / (e.norm(dim=1, keepdim=True) + eps)
    similarity = (e @ e.t() + 1.0) / 2.0
    return similarity / similarity.sum(dim=1, keepdim=True)


def pkt_loss(student: torch.Tensor, teacher: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """KL between the teacher's and the student's conditional distributions (Passalis & Tefas,
    eq. 3-8, cosine kernel), averaged over all B x B entries as the authors' code does.

    Features are flattened per example. The authors' code also zeroes NaN entries of the
    normalised features; with ``eps`` in the norm only NaN inputs give them, so it is left out.
    """
    p_s = _conditional_probabilities(student.flatten(1), eps)
    p_t = _conditional_probabilities(teacher.flatten(1), eps)
    return (p_t * torch.log((p_t + eps) / (p_s + eps))).mean()


@register_distiller("pkt")
class PKTDistiller(EmbeddingDistiller):
    """PKT (Passalis & Tefas 2018) matches the distributions of pairwise similarities in a batch."""

    method = "pkt"

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        teacher_layer: str | None = None,
        student_layer: str | None = None,
        weight: float = 30000.0,
        temperature: float = 4.0,
        alpha: float = 0.1,
        example_weighting: str = "none",
    ):
        super().__init__(
            student, teacher, teacher_layer, student_layer, temperature, alpha, example_weighting
        )
        self.weight = weight

    def forward(self, batch: Batch):
        logits, teacher_logits, (s,), (t,) = self.features(batch)
        parts = self.logit_loss_parts(logits, teacher_logits, batch)
        parts["pkt"] = self.weight * pkt_loss(s, t)
        return loss_dict(parts, logits)
