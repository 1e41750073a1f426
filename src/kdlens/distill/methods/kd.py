"""Knowledge distillation: Hinton, Vinyals & Dean (2015), "Distilling the Knowledge in a Neural
Network", arXiv:1503.02531.

The loss is ``alpha * CE(y, s) + (1 - alpha) * T^2 * KL(p_teacher^T || p_student^T)``, computed in log
space with ``batchmean``. The optional per-example weighting leans on the teacher where it is
confident *and* right: the hard-label share of an example is ``alpha + (1 - alpha) * (1 - q)``,
with ``q`` the teacher's probability of the true class; a teacher that is sure of the right answer
gets the configured ``1 - alpha``, a teacher that is wrong gets (almost) nothing and the example
falls back to its label.

With ``distill.options.logit_standardization`` the soft term compares z-scored logits (Sun et
al. 2024, :func:`kdlens.distill.losses.standardize_logits`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdlens.data.loader import Batch
from kdlens.distill.distiller import (
    TeacherDistiller,
    has_own_loss,
    loss_dict,
    own_loss,
    register_distiller,
)
from kdlens.distill.losses import soft_kl, soft_targets, standardize_logits
from kdlens.errors import ConfigError


def kd_loss_parts(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    alpha: float,
    standardize: bool = False,
) -> dict[str, torch.Tensor]:
    """The two weighted terms of the KD loss, keyed ``ce`` and ``kd``; their sum is the loss.

    ``labels`` are class indices (B,) or class distributions (B, K), e.g. from mixup.
    The soft term is multiplied by T^2 because its gradient scales as 1/T^2 (Hinton et al., §2):
    without it, raising T would silently shrink the teacher's share of the gradient.
    ``standardize``: the soft term compares z-scored logits (Sun et al. 2024, T their base
    temperature); the hard-label term keeps the raw ones.
    """
    ce = F.cross_entropy(student_logits, labels)
    if standardize:
        student_logits = standardize_logits(student_logits)
        teacher_logits = standardize_logits(teacher_logits)
    kl = soft_kl(student_logits, teacher_logits, temperature)
    return {"ce": alpha * ce, "kd": (1.0 - alpha) * temperature**2 * kl}


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    alpha: float,
    standardize: bool = False,
) -> torch.Tensor:
    """alpha * CE(labels, s) + (1 - alpha) * T^2 * KL(p_teacher^T || p_student^T)."""
    parts = kd_loss_parts(student_logits, teacher_logits, labels, temperature, alpha, standardize)
    return parts["ce"] + parts["kd"]


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
    standardize: bool = False,
) -> dict[str, torch.Tensor]:
    """KD with a per-example ``alpha`` (B,): mean of alpha_i CE_i and (1 - alpha_i) T^2 KL_i.

    With every alpha_i equal it is exactly :func:`kd_loss_parts`.
    """
    ce = F.cross_entropy(student_logits, labels, reduction="none")  # (B,)
    if standardize:
        student_logits = standardize_logits(student_logits)
        teacher_logits = standardize_logits(teacher_logits)
    log_s = F.log_softmax(student_logits / temperature, dim=-1)
    log_t = F.log_softmax(teacher_logits / temperature, dim=-1)
    kl = (log_t.exp() * (log_t - log_s)).sum(-1)  # (B,)
    return {
        "ce": (alpha * ce).mean(),
        "kd": temperature**2 * ((1.0 - alpha) * kl).mean(),
    }


@register_distiller("kd")
class KDDistiller(TeacherDistiller):
    """Hinton et al. (2015): hard-label CE plus T^2-scaled KL to the teacher's soft targets."""

    honours_own_loss = True
    supports_logit_standardization = True

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        temperature: float = 4.0,
        alpha: float = 0.1,
        example_weighting: str = "none",
    ):
        super().__init__(student, teacher)
        if example_weighting not in ("none", "confidence"):
            raise ConfigError(
                f"distill.example_weighting: unknown {example_weighting!r} (known: none, confidence)"
            )
        self.temperature = temperature
        self.alpha = alpha
        self.example_weighting = example_weighting

    def logit_loss_parts(
        self, logits: torch.Tensor, teacher_logits: torch.Tensor, batch: Batch
    ) -> dict[str, torch.Tensor]:
        """The weighted ``ce`` and ``kd`` terms; methods built on KD add their own terms."""
        if self.example_weighting == "confidence":
            # The teacher's confidence is read from its raw logits, standardised or not.
            alpha = confidence_alpha(teacher_logits, batch.labels, self.alpha)
            return weighted_kd_loss_parts(
                logits, teacher_logits, batch.labels, self.temperature, alpha,
                self.logit_standardization,
            )  # fmt: skip
        return kd_loss_parts(
            logits, teacher_logits, batch.labels, self.temperature, self.alpha,
            self.logit_standardization,
        )  # fmt: skip

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        if has_own_loss(self.student):
            # Same weights as kd_loss_parts: alpha on hard labels, (1 - alpha) T^2 on soft targets.
            t = self.temperature
            teacher = self.teacher_logits(batch)
            targets = {
                "ce": (batch.labels, 1.0, self.alpha),
                "kd": (soft_targets(teacher, t), t, (1.0 - self.alpha) * t**2),
            }
            return own_loss(self.student, batch.x, targets)
        logits = self.student(batch.x)
        parts = self.logit_loss_parts(logits, self.teacher_logits(batch), batch)
        return loss_dict(parts, logits)
