"""Soft targets and the KL between them: the primitives of every logit-based method.

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


def standardize_logits(logits: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Z-score each example's logits: (z - mean(z)) / (std(z) + eps), over the classes.

    Sun, Ren, Li, Wang & Cao (2024), "Logit Standardization in Knowledge Distillation", CVPR.
    A soft term on standardised logits asks the student to match the teacher's logit *relations*,
    not their range: each model gets its own temperature, proportional to its logits' std, and
    the configured temperature becomes the paper's "base temperature" dividing the z-scores.
    As the authors' code (and torchdistill's LogitStdKDLoss): the unbiased std (K - 1), eps added.
    """
    mean = logits.mean(dim=-1, keepdim=True)
    std = logits.std(dim=-1, keepdim=True)
    return (logits - mean) / (std + eps)
