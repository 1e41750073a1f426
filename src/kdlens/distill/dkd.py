"""Decoupled KD (Zhao et al. 2022) as a Distiller, with the paper's linear warm-up."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from kdlens.data.loader import Batch
from kdlens.distill.distiller import TeacherDistiller, loss_dict, register_distiller
from kdlens.distill.losses_dkd import dkd_loss_parts


@register_distiller("dkd")
class DKDDistiller(TeacherDistiller):
    """Decoupled KD (Zhao et al. 2022): CE plus weighted target and non-target KL terms.

    ``distill.alpha`` weighs the hard-label CE and ``1 - alpha`` the decoupled terms, as KD's
    soft term; DKD's own alpha/beta (options ``tckd``/``nckd``) weigh TCKD and NCKD. The decoupled
    terms ramp up linearly over ``warmup`` epochs (mdistiller: 20 of 240).
    """

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
        d = dkd_loss_parts(logits, teacher_logits, batch.y, self.temperature)
        # epoch counts from 0; mdistiller's min(epoch / warmup, 1) counts from 1
        warm = min((self.epoch + 1) / self.warmup, 1.0) if self.warmup > 0 else 1.0
        w = (1.0 - self.alpha) * warm
        parts = {
            "ce": self.alpha * F.cross_entropy(logits, batch.labels),
            "tckd": w * self.tckd * d["tckd"],
            "nckd": w * self.nckd * d["nckd"],
        }
        return loss_dict(parts, logits)
