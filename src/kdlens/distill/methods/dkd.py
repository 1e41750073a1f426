"""Decoupled KD: Zhao, Cui, Song, Qiu & Liang (2022), "Decoupled Knowledge Distillation", CVPR.

KD's KL splits exactly into a target-class term (TCKD: the binary distribution [p_gt, 1 - p_gt])
and a non-target term (NCKD: the distribution among the other classes):
KL(p_t || p_s) = TCKD + (1 - p_t,gt) * NCKD. DKD drops the (1 - p_t,gt) factor, which suppresses
NCKD exactly where the teacher is confident, and weighs the two terms freely.

The distiller: ``distill.alpha`` on hard-label CE, ``1 - alpha`` on the decoupled terms, with the
paper's linear warm-up.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdlens.data.loader import Batch
from kdlens.distill.distiller import TeacherDistiller, loss_dict, register_distiller
from kdlens.distill.losses import standardize_logits


def _binary_log_probs(logits: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """log [p_gt, 1 - p_gt], computed in log space: (B, K) -> (B, 2)."""
    log_p = F.log_softmax(logits, dim=1)
    log_gt = log_p.gather(1, gt[:, None])  # (B, 1)
    others = log_p.masked_fill(F.one_hot(gt, logits.shape[1]).bool(), float("-inf"))
    return torch.cat([log_gt, torch.logsumexp(others, dim=1, keepdim=True)], dim=1)


def _non_target_log_probs(logits: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """log-softmax over the non-target classes; the target's entry is -inf: (B, K)."""
    mask = F.one_hot(gt, logits.shape[1]).bool()
    return F.log_softmax(logits.masked_fill(mask, float("-inf")), dim=1)


def _kl_rows(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """sum_k p (log p - log q) per row, treating 0 * log 0 as 0: (B, K) -> (B,)."""
    p = log_p.exp()
    absent = p == 0  # masked first, so no -inf - -inf reaches the sum or its gradient
    return (p * (log_p.masked_fill(absent, 0.0) - log_q.masked_fill(absent, 0.0))).sum(1)


def dkd_loss_parts(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    standardize: bool = False,
) -> dict[str, torch.Tensor]:
    """Unweighted ``tckd`` and ``nckd``, each batch-mean KL times T^2 (as KD's soft term).

    ``standardize``: on z-scored logits (Sun et al. 2024; T is then their base temperature).
    """
    if standardize:
        student_logits = standardize_logits(student_logits)
        teacher_logits = standardize_logits(teacher_logits)
    s, t = student_logits / temperature, teacher_logits / temperature
    tckd = _kl_rows(_binary_log_probs(t, labels), _binary_log_probs(s, labels))
    nckd = _kl_rows(_non_target_log_probs(t, labels), _non_target_log_probs(s, labels))
    scale = temperature**2
    return {"tckd": scale * tckd.mean(), "nckd": scale * nckd.mean()}


def dkd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    alpha: float = 1.0,
    beta: float = 8.0,
    standardize: bool = False,
) -> torch.Tensor:
    """alpha * TCKD + beta * NCKD (Zhao et al., eq. 7); labels are class indices (B,)."""
    parts = dkd_loss_parts(student_logits, teacher_logits, labels, temperature, standardize)
    return alpha * parts["tckd"] + beta * parts["nckd"]


@register_distiller("dkd")
class DKDDistiller(TeacherDistiller):
    """Decoupled KD (Zhao et al. 2022): CE plus weighted target and non-target KL terms.

    ``distill.alpha`` weighs the hard-label CE and ``1 - alpha`` the decoupled terms, as KD's
    soft term; DKD's own alpha/beta (options ``tckd``/``nckd``) weigh TCKD and NCKD. The decoupled
    terms ramp up linearly over ``warmup`` epochs (mdistiller: 20 of 240).
    """

    supports_logit_standardization = True

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        tckd: float = 1.0,
        nckd: float = 8.0,
        warmup: int = 20,
        temperature: float = 4.0,
        alpha: float = 0.5,
    ):
        super().__init__(student, teacher)
        self.tckd, self.nckd, self.warmup = tckd, nckd, warmup
        self.temperature, self.alpha = temperature, alpha

    def forward(self, batch: Batch):
        logits = self.student(batch.x)
        teacher_logits = self.teacher_logits(batch)
        d = dkd_loss_parts(
            logits, teacher_logits, batch.y, self.temperature, self.logit_standardization
        )
        # epoch counts from 0; mdistiller's min(epoch / warmup, 1) counts from 1
        warm = min((self.epoch + 1) / self.warmup, 1.0) if self.warmup > 0 else 1.0
        w = (1.0 - self.alpha) * warm
        parts = {
            "ce": self.alpha * F.cross_entropy(logits, batch.labels),
            "tckd": w * self.tckd * d["tckd"],
            "nckd": w * self.nckd * d["nckd"],
        }
        return loss_dict(parts, logits)
