"""Adaptive weighting (pure functions): schedules over training, and per-example weights.

Schedules move a weight (alpha, T) from its configured value to ``end`` as training progresses.
The per-example weighting leans on the teacher where it is confident *and* right: the hard-label
share of an example is ``alpha + (1 - alpha) * (1 - q)``, with ``q`` the teacher's probability of
the true class; a teacher that is sure of the right answer gets the configured ``1 - alpha``, a
teacher that is wrong gets (almost) nothing and the example falls back to its label.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SCHEDULES = ("constant", "linear", "cosine")


def schedule_value(kind: str, start: float, end: float | None, progress: float) -> float:
    """The value at ``progress`` in [0, 1] (0: first epoch, 1: last) of a schedule start -> end."""
    if kind == "constant" or end is None:
        return start
    p = min(max(progress, 0.0), 1.0)
    if kind == "linear":
        return start + (end - start) * p
    if kind == "cosine":  # slow at both ends, like the cosine learning-rate schedule
        return end + (start - end) * 0.5 * (1 + math.cos(math.pi * p))
    raise ValueError(f"unknown schedule {kind!r} (known: {', '.join(SCHEDULES)})")


def confidence_alpha(
    teacher_logits: torch.Tensor, labels: torch.Tensor, alpha: float
) -> torch.Tensor:
    """Per-example hard-label weight (B,): ``alpha + (1 - alpha) * (1 - q)``.

    ``q`` is the teacher's probability (T = 1) of the label; ``labels`` are class indices (B,) or
    class distributions (B, K), e.g. from mixup, in which case ``q`` is their expected value.
    """
    probs = F.softmax(teacher_logits.float(), dim=-1)
    if labels.ndim == 1:
        q = probs.gather(1, labels[:, None]).squeeze(1)
    else:
        q = (probs * labels).sum(1)
    return alpha + (1.0 - alpha) * (1.0 - q)


def weighted_kd_loss_parts(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    alpha: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """KD with a per-example ``alpha`` (B,): mean of alpha_i CE_i and (1 - alpha_i) T^2 KL_i.

    With every alpha_i equal it is exactly :func:`kdlens.distill.losses.kd_loss_parts`.
    """
    ce = F.cross_entropy(student_logits, labels, reduction="none")  # (B,)
    log_s = F.log_softmax(student_logits / temperature, dim=-1)
    log_t = F.log_softmax(teacher_logits / temperature, dim=-1)
    kl = (log_t.exp() * (log_t - log_s)).sum(-1)  # (B,)
    return {
        "ce": (alpha * ce).mean(),
        "kd": temperature**2 * ((1.0 - alpha) * kl).mean(),
    }
