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
