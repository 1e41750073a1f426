"""Distillation losses as pure functions of tensors.

Hinton, Vinyals & Dean (2015), "Distilling the Knowledge in a Neural Network", arXiv:1503.02531.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_targets(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(z / T): T > 1 softens the distribution and shows the small probabilities."""
    return F.softmax(logits / temperature, dim=-1)


def soft_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """KL(p_teacher^T || p_student^T), averaged over the batch, computed in log space.

    ``F.kl_div`` takes the student's log-probabilities first and the teacher's second; with
    ``reduction="batchmean"`` it is the true per-example KL (``"mean"`` would also divide by K).
    """
    log_p_student = F.log_softmax(student_logits / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=-1)
    return F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)


def kd_loss_parts(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    alpha: float,
) -> dict[str, torch.Tensor]:
    """The two weighted terms of the KD loss, keyed ``ce`` and ``kd``; their sum is the loss.

    ``labels`` are class indices (B,) or class distributions (B, K), e.g. from mixup.
    The soft term is multiplied by T^2 because its gradient scales as 1/T^2 (Hinton et al., §2):
    without it, raising T would silently shrink the teacher's share of the gradient.
    """
    ce = F.cross_entropy(student_logits, labels)
    kl = soft_kl(student_logits, teacher_logits, temperature)
    return {"ce": alpha * ce, "kd": (1.0 - alpha) * temperature**2 * kl}


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """alpha * CE(labels, s) + (1 - alpha) * T^2 * KL(p_teacher^T || p_student^T)."""
    parts = kd_loss_parts(student_logits, teacher_logits, labels, temperature, alpha)
    return parts["ce"] + parts["kd"]
