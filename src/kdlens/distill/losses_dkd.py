"""Decoupled KD: Zhao, Cui, Song, Qiu & Liang (2022), "Decoupled Knowledge Distillation", CVPR.

KD's KL splits exactly into a target-class term (TCKD: the binary distribution [p_gt, 1 - p_gt])
and a non-target term (NCKD: the distribution among the other classes):
KL(p_t || p_s) = TCKD + (1 - p_t,gt) * NCKD. DKD drops the (1 - p_t,gt) factor, which suppresses
NCKD exactly where the teacher is confident, and weighs the two terms freely.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
) -> dict[str, torch.Tensor]:
    """Unweighted ``tckd`` and ``nckd``, each batch-mean KL times T^2 (as KD's soft term)."""
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
) -> torch.Tensor:
    """alpha * TCKD + beta * NCKD (Zhao et al., eq. 7); labels are class indices (B,)."""
    parts = dkd_loss_parts(student_logits, teacher_logits, labels, temperature)
    return alpha * parts["tckd"] + beta * parts["nckd"]
