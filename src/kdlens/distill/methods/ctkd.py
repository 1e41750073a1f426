"""CTKD: Li, Li, Yang, Zhou, Ren, Cheng & Yang (2023), "Curriculum Temperature for Knowledge
Distillation", AAAI, arXiv:2211.16231.

The temperature of KD's soft term is learned, adversarially: one parameter theta gives
``T = t_min + t_range * sigmoid(theta)``, and theta climbs the distillation loss the student
descends, through a gradient-reversal layer (Ganin & Lempitsky 2015). The reversal's strength
``lambda`` follows a curriculum, from 0 (easy: the temperature barely moves) to ``max_reversal``
over the first ``curriculum_epochs`` epochs along a half cosine, so the task grows harder as the
student grows able. As the authors' code (the "global" temperature): theta starts at 1 (T about
15.6 with the defaults) and trains with the student's optimizer.

The distiller: ``distill.alpha`` on hard-label CE, ``1 - alpha`` on ``T^2 KL`` at the learned T;
``distill.temperature`` is not used.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kdlens.data.loader import Batch
from kdlens.distill.distiller import TeacherDistiller, loss_dict, register_distiller
from kdlens.distill.losses import standardize_logits


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, strength: float) -> torch.Tensor:
        ctx.strength = strength
        return x.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.strength * grad, None


def reverse_gradient(x: torch.Tensor, strength: float) -> torch.Tensor:
    """Identity forward; the gradient flowing back is multiplied by ``-strength``."""
    return _ReverseGradient.apply(x, strength)


def curriculum_strength(epoch: int, epochs: int = 10, max_strength: float = 1.0) -> float:
    """Reversal strength at ``epoch`` (counted from 1, as CTKD): 0 -> max along a half cosine.

    CTKD's CosineDecay(max_value=0, min_value=-max_strength, num_loops=epochs), sign flipped.
    """
    if epochs <= 0:
        return max_strength
    i = min(max(epoch, 0), epochs)
    return max_strength * (1.0 - math.cos(i * math.pi / epochs)) / 2.0


def learned_temperature(
    theta: torch.Tensor, strength: float, t_min: float = 1.0, t_range: float = 20.0
) -> torch.Tensor:
    """``t_min + t_range * sigmoid(theta)``, theta's gradient reversed (CTKD's Global_T)."""
    return t_min + t_range * torch.sigmoid(reverse_gradient(theta, strength))


def ctkd_soft_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: torch.Tensor,
    standardize: bool = False,
) -> torch.Tensor:
    """T^2 KL(p_teacher^T || p_student^T), batch mean, at a tensor temperature (gradient flows
    to it). ``standardize``: on z-scored logits (Sun et al. 2024)."""
    if standardize:
        student_logits = standardize_logits(student_logits)
        teacher_logits = standardize_logits(teacher_logits)
    log_s = F.log_softmax(student_logits / temperature, dim=1)
    log_t = F.log_softmax(teacher_logits / temperature, dim=1)
    kl = F.kl_div(log_s, log_t, reduction="batchmean", log_target=True)
    return temperature.squeeze() ** 2 * kl


@register_distiller("ctkd")
class CTKDDistiller(TeacherDistiller):
    """CTKD (Li et al. 2023) is KD whose temperature is learned adversarially along a curriculum."""

    supports_logit_standardization = True

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        t_min: float = 1.0,
        t_range: float = 20.0,
        curriculum_epochs: int = 10,
        max_reversal: float = 1.0,
        alpha: float = 0.1,
    ):
        super().__init__(student, teacher)
        self.t_min, self.t_range = t_min, t_range
        self.curriculum_epochs, self.max_reversal = curriculum_epochs, max_reversal
        self.alpha = alpha
        device = next(student.parameters()).device
        self.theta = nn.Parameter(torch.ones(1, device=device))  # CTKD: Global_T starts at 1

    def trainable_parameters(self) -> list[nn.Parameter]:
        return super().trainable_parameters() + [self.theta]

    def reversal_strength(self) -> float:
        # epoch counts from 0 here, from 1 in CTKD's loop
        return curriculum_strength(self.epoch + 1, self.curriculum_epochs, self.max_reversal)

    def current_temperature(self) -> float:
        """The current learned temperature."""
        return float(self.t_min + self.t_range * torch.sigmoid(self.theta.detach()))

    def forward(self, batch: Batch):
        logits = self.student(batch.x)
        t = learned_temperature(self.theta, self.reversal_strength(), self.t_min, self.t_range)
        soft = ctkd_soft_loss(logits, self.teacher_logits(batch), t, self.logit_standardization)
        parts = {
            "ce": self.alpha * F.cross_entropy(logits, batch.labels),
            "kd": (1.0 - self.alpha) * soft,
        }
        return loss_dict(parts, logits)
