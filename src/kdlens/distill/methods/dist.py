"""DIST: Huang, You, Wang, Qian & Xu (2022), "Knowledge Distillation from A Stronger Teacher",
NeurIPS, arXiv:2205.10536.

KL asks the student to reproduce the teacher's probabilities exactly, which a much stronger
teacher makes hard. DIST asks only for the same *relations*: the Pearson correlation between the
student's and the teacher's class probabilities, per example (inter-class relation) and per class
across the batch (intra-class relation). Correlation ignores shift and scale of the predictions.

The distiller: ``distill.alpha`` on hard-label CE, ``1 - alpha`` on ``beta * inter + gamma *
intra``; ``distill.temperature`` is DIST's tau (paper: 1 on ImageNet, 4 on CIFAR-100).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdlens.data.loader import Batch
from kdlens.distill.distiller import TeacherDistiller, loss_dict, register_distiller
from kdlens.distill.losses import standardize_logits


def pearson_correlation(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Correlation of each row of ``a`` with the same row of ``b``: (N, D), (N, D) -> (N,).

    As the authors' code: the cosine of the centred rows, with ``eps`` added to the norms'
    product (so two constant rows give 0, not NaN).
    """
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def dist_loss_parts(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 1.0,
    standardize: bool = False,
) -> dict[str, torch.Tensor]:
    """Unweighted ``inter`` and ``intra`` relation losses (Huang et al., eq. 5-7), each T^2-scaled.

    inter = 1 - mean over examples of corr(p_s, p_t) across classes; intra = 1 - mean over
    classes of corr across the batch; p = softmax(z / T). ``standardize``: on z-scored logits
    (Sun et al. 2024).
    """
    if standardize:
        student_logits = standardize_logits(student_logits)
        teacher_logits = standardize_logits(teacher_logits)
    p_s = F.softmax(student_logits / temperature, dim=1)  # (B, K)
    p_t = F.softmax(teacher_logits / temperature, dim=1)
    scale = temperature**2
    return {
        "inter": scale * (1 - pearson_correlation(p_s, p_t).mean()),
        "intra": scale * (1 - pearson_correlation(p_s.t(), p_t.t()).mean()),
    }


def dist_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 1.0,
    beta: float = 1.0,
    gamma: float = 1.0,
    standardize: bool = False,
) -> torch.Tensor:
    """beta * inter + gamma * intra: DIST's distillation term (without the CE)."""
    parts = dist_loss_parts(student_logits, teacher_logits, temperature, standardize)
    return beta * parts["inter"] + gamma * parts["intra"]


@register_distiller("dist")
class DISTDistiller(TeacherDistiller):
    """DIST (Huang et al. 2022) matches the correlation of student and teacher predictions."""

    supports_logit_standardization = True

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        beta: float = 1.0,
        gamma: float = 1.0,
        temperature: float = 1.0,
        alpha: float = 0.5,
    ):
        super().__init__(student, teacher)
        self.beta, self.gamma = beta, gamma
        self.temperature, self.alpha = temperature, alpha

    def forward(self, batch: Batch):
        logits = self.student(batch.x)
        d = dist_loss_parts(
            logits, self.teacher_logits(batch), self.temperature, self.logit_standardization
        )
        w = 1.0 - self.alpha
        parts = {
            "ce": self.alpha * F.cross_entropy(logits, batch.labels),
            "inter": w * self.beta * d["inter"],
            "intra": w * self.gamma * d["intra"],
        }
        return loss_dict(parts, logits)
