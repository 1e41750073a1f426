"""Correlation congruence: Peng, Jin, Liu, Zhou, Wu, Liu, Li & Zhang (2019), "Correlation
Congruence for Knowledge Distillation", ICCV, arXiv:1904.01802.

Besides each example's output (KD's term), the student matches the *correlation between
examples*: the B x B matrix of a kernel between the embeddings of every pair in the batch. Both
models' features pass through a learned linear embedding (``embed_dim`` wide, teacher's side
included, as RepDistiller and torchdistill train both), so their widths may differ.

``correlation`` chooses the matrix:
* ``gaussian`` (the paper's): exp(-gamma ||a - b||^2) by its order-``order`` Taylor expansion,
  exp(-2 gamma) sum_p (2 gamma)^p / p! (a . b)^p, exact for unit-length embeddings; the loss is
  ||C_s - C_t||_F / B^2 (torchdistill's CCKDLoss, ``reduction="batchmean"``).
* ``bilinear``: C = E E^T, same loss.
* ``consecutive``: the code the authors gave RepDistiller, behind its published CIFAR-100 numbers:
  mean over consecutive examples i of sum_k |e_s - e_t|_ik |e_s - e_t|_(i+1)k.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from kdlens.data.loader import Batch
from kdlens.distill.distiller import loss_dict, register_distiller
from kdlens.distill.features import EmbeddingDistiller
from kdlens.errors import ConfigError

CORRELATIONS = ("gaussian", "bilinear", "consecutive")


def correlation_matrix(
    embedding: torch.Tensor, kernel: str = "gaussian", gamma: float = 0.4, order: int = 2
) -> torch.Tensor:
    """Kernel between every pair of rows: (B, D) -> (B, B)."""
    g = embedding @ embedding.t()
    if kernel == "bilinear":
        return g
    terms = sum((2 * gamma) ** p / math.factorial(p) * g**p for p in range(order + 1))
    return math.exp(-2 * gamma) * terms


def cc_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    kernel: str = "gaussian",
    gamma: float = 0.4,
    order: int = 2,
) -> torch.Tensor:
    """||C(student) - C(teacher)||_F / B^2 for embeddings (B, D) (Peng et al., eq. 6-9)."""
    diff = correlation_matrix(student, kernel, gamma, order) - correlation_matrix(
        teacher, kernel, gamma, order
    )
    return torch.linalg.norm(diff) / student.shape[0] ** 2


def cc_consecutive_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """RepDistiller's CC (from the authors): mean_i sum_k |d_ik| |d_(i+1)k|, d = student - teacher.

    Needs two examples or more; a batch of one gives 0.
    """
    delta = (student - teacher).abs()
    if len(delta) < 2:
        return delta.sum() * 0.0
    return (delta[:-1] * delta[1:]).sum(1).mean()


@register_distiller("cc")
class CCDistiller(EmbeddingDistiller):
    """CC (Peng et al. 2019) matches the correlations between examples of student and teacher."""

    method = "cc"

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        input_shape: tuple[int, ...],
        teacher_layer: str | None = None,
        student_layer: str | None = None,
        embed_dim: int = 128,
        correlation: str = "gaussian",
        gamma: float = 0.4,
        order: int = 2,
        weight: float = 0.003,
        temperature: float = 4.0,
        alpha: float = 0.1,
        example_weighting: str = "none",
    ):
        if correlation not in CORRELATIONS:
            raise ConfigError(
                f"distill.options.cc: unknown correlation {correlation!r} "
                f"(known: {', '.join(CORRELATIONS)})"
            )
        super().__init__(
            student, teacher, teacher_layer, student_layer, temperature, alpha, example_weighting
        )
        self.correlation, self.gamma, self.order, self.weight = correlation, gamma, order, weight
        (s_shape,), (t_shape,) = self.probe_shapes(input_shape)
        device = next(student.parameters()).device
        # RepDistiller's LinearEmbed: flatten, then one linear map, on either side.
        self.embed_s = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(s_shape), embed_dim))
        self.embed_t = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(t_shape), embed_dim))
        self.embed_s.to(device)
        self.embed_t.to(device)

    def trainable_parameters(self) -> list[nn.Parameter]:
        embeds = [*self.embed_s.parameters(), *self.embed_t.parameters()]
        return super().trainable_parameters() + embeds

    def forward(self, batch: Batch):
        logits, teacher_logits, (s,), (t,) = self.features(batch)
        e_s, e_t = self.embed_s(s), self.embed_t(t)
        parts = self.logit_loss_parts(logits, teacher_logits, batch)
        if self.correlation == "consecutive":
            parts["cc"] = self.weight * cc_consecutive_loss(e_s, e_t)
        else:
            parts["cc"] = self.weight * cc_loss(e_s, e_t, self.correlation, self.gamma, self.order)
        return loss_dict(parts, logits)
