"""Contrastive representation distillation: Tian, Krishnan & Isola (2020), "Contrastive
Representation Distillation", ICLR.

Student and teacher embeddings (a linear map of each model's feature, L2-normalised) of the same
example are a positive pair; the embeddings of ``nce_k`` examples of other classes, kept in two
memory banks (one per model, one row per training example, updated with momentum), are the
negatives. The loss is NCE's binary classification of the positive against the negatives (eq. 19
with the noise distribution uniform over the N training examples), in both directions: the
student's embedding against the teacher's bank and the teacher's against the student's.

The memory banks are indexed by ``batch.index``, each example's position in the training tensors,
so the distiller needs their number, ``num_examples``, which the pipeline fills in.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kdlens.data.loader import Batch
from kdlens.distill.distiller import loss_dict, register_distiller
from kdlens.distill.features import FeatureDistiller
from kdlens.distill.hooks import last_linear_input
from kdlens.errors import ConfigError


def contrast_scores(
    anchor: torch.Tensor, memory: torch.Tensor, index: torch.Tensor, temperature: float
) -> torch.Tensor:
    """exp(<memory[index[b, j]], anchor[b]> / T): (B, D), (N, D), (B, K+1) -> (B, K+1).

    The bank rows carry no gradient. When the bank is smaller than the rows drawn, one product
    with the whole bank is cheaper than gathering (B, K+1, D) rows; both give the same scores.
    Either way the product keeps a copy of the rows, so the bank may be updated in place before
    the backward pass.
    """
    if index.numel() > memory.shape[0]:
        dots = (anchor @ memory.detach().clone().t()).gather(1, index)  # (B, N) -> (B, K+1)
    else:
        rows = memory.detach()[index]  # (B, K+1, D), a copy
        dots = torch.bmm(rows, anchor.unsqueeze(2)).squeeze(2)
    return torch.exp(dots / temperature)


def nce_loss(probs: torch.Tensor, num_examples: int, eps: float = 1e-7) -> torch.Tensor:
    """NCE with column 0 the positive and the rest ``m`` noise samples (Tian et al., eq. 19):
    -(log h(pos) + sum log(1 - h(neg))) averaged over the batch, h(x) = x / (x + m / N)."""
    m = probs.shape[1] - 1
    noise = m / num_examples
    log_pos = torch.log(probs[:, 0] / (probs[:, 0] + noise + eps))
    log_neg = torch.log(noise / (probs[:, 1:] + noise + eps))
    return -(log_pos.sum() + log_neg.sum()) / probs.shape[0]


def crd_loss(
    student_embedding: torch.Tensor,
    teacher_embedding: torch.Tensor,
    student_memory: torch.Tensor,
    teacher_memory: torch.Tensor,
    index: torch.Tensor,
    temperature: float,
    normalisers: tuple[float, float],
    num_examples: int,
) -> torch.Tensor:
    """CRD's two NCE terms: the student's embedding against the teacher's bank, and the teacher's
    against the student's. ``index`` (B, K+1) holds each example's own row first, then its
    negatives; ``normalisers`` = (Z_student, Z_teacher) turn the scores into probabilities."""
    p_s = contrast_scores(student_embedding, teacher_memory, index, temperature) / normalisers[0]
    p_t = contrast_scores(teacher_embedding, student_memory, index, temperature) / normalisers[1]
    return nce_loss(p_s, num_examples) + nce_loss(p_t, num_examples)


@torch.no_grad()
def update_memory(
    memory: torch.Tensor, index: torch.Tensor, embedding: torch.Tensor, momentum: float
) -> None:
    """memory[index] <- normalise(momentum * memory[index] + (1 - momentum) * embedding), in place."""
    rows = memory[index] * momentum + embedding.detach().to(memory.dtype) * (1 - momentum)
    memory[index] = F.normalize(rows, dim=1)


def sample_negatives(
    index: torch.Tensor, labels: torch.Tensor, known_labels: torch.Tensor, k: int
) -> torch.Tensor:
    """(B, K+1): each example's own index, then ``k`` indices of examples of *other* classes
    (uniform, with replacement). ``known_labels`` (N,) is -1 where an example's label is not
    yet seen; those count as other classes. Same-class draws are redrawn (bounded rounds)."""
    n = known_labels.shape[0]
    negatives = torch.randint(n, (len(index), k), device=index.device)
    for _ in range(64):  # each round keeps ~(1 - 1/classes) of the clashes away
        clash = known_labels[negatives] == labels[:, None]
        if not clash.any():
            break
        negatives[clash] = torch.randint(n, (int(clash.sum()),), device=index.device)
    return torch.cat([index[:, None], negatives], dim=1)


class Embed(nn.Module):
    """Linear map to ``dim`` then L2 normalisation (CRD's embedding head)."""

    def __init__(self, dim_in: int, dim: int):
        super().__init__()
        self.linear = nn.Linear(dim_in, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.linear(x.flatten(1)), dim=1)


@register_distiller("crd")
class CRDDistiller(FeatureDistiller):
    """Contrastive representation distillation (Tian et al. 2020): KD plus NCE over a memory bank.

    The negatives are ``nce_k`` examples of other classes, drawn from the banks each step.
    """

    method = "crd"

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        input_shape: tuple[int, ...],
        num_examples: int | None = None,
        teacher_layer: str | None = None,
        student_layer: str | None = None,
        weight: float = 0.8,
        feat_dim: int = 128,
        nce_k: int = 16384,
        nce_t: float = 0.07,
        momentum: float = 0.5,
        temperature: float = 4.0,
        alpha: float = 0.1,
        example_weighting: str = "none",
    ):
        if not num_examples:
            raise ConfigError(
                "distill.method 'crd' needs the number of training examples for its memory bank "
                "(build_distiller(..., num_examples=N))"
            )
        if nce_k < 1 or feat_dim < 1:
            raise ConfigError("distill.options.crd: nce_k and feat_dim must be 1 or more")
        # Default: the embeddings entering each model's classifier (the paper's penultimate layer).
        teacher_layer = teacher_layer or last_linear_input(teacher)
        student_layer = student_layer or last_linear_input(student)
        super().__init__(
            student, teacher, [teacher_layer], [student_layer], temperature, alpha,
            example_weighting,
        )  # fmt: skip
        (s_shape,), (t_shape,) = self.probe_shapes(input_shape)
        device = next(student.parameters()).device
        self.embed_s = Embed(math.prod(s_shape), feat_dim).to(device)
        self.embed_t = Embed(math.prod(t_shape), feat_dim).to(device)
        # The banks start uniform in [-stdv, stdv] (the authors'); labels fill in as batches pass.
        stdv = 1.0 / math.sqrt(feat_dim / 3)
        for name in ("memory_s", "memory_t"):
            bank = torch.rand(num_examples, feat_dim, device=device) * (2 * stdv) - stdv
            self.register_buffer(name, bank)
        self.register_buffer("known_labels", torch.full((num_examples,), -1, device=device))
        # Z, set from the first batch (the authors' estimate N * mean score); -1 until then.
        self.register_buffer("normalisers", torch.full((2,), -1.0, device=device))
        self.num_examples, self.weight, self.nce_k = num_examples, weight, nce_k
        self.nce_t, self.momentum = nce_t, momentum

    def trainable_parameters(self) -> list[nn.Parameter]:
        return (
            super().trainable_parameters()
            + list(self.embed_s.parameters())
            + list(self.embed_t.parameters())
        )

    def forward(self, batch: Batch):
        if int(batch.index.max()) >= self.num_examples:
            raise ConfigError(
                f"distill.method 'crd': example index {int(batch.index.max())} is beyond the "
                f"memory bank of {self.num_examples} training examples"
            )
        logits, teacher_logits, (s,), (t,) = self.features(batch)
        v_s, v_t = self.embed_s(s), self.embed_t(t)
        index = self._contrast_index(batch)
        if bool((self.normalisers < 0).any()):
            with torch.no_grad():
                for i, (v, bank) in enumerate(((v_s, self.memory_t), (v_t, self.memory_s))):
                    scores = contrast_scores(v, bank, index, self.nce_t)
                    self.normalisers[i] = scores.mean() * self.num_examples
        z = (float(self.normalisers[0]), float(self.normalisers[1]))
        loss = crd_loss(
            v_s, v_t, self.memory_s, self.memory_t, index, self.nce_t, z, self.num_examples
        )
        if self.training:
            update_memory(self.memory_s, batch.index, v_s, self.momentum)
            update_memory(self.memory_t, batch.index, v_t, self.momentum)
        parts = self.logit_loss_parts(logits, teacher_logits, batch)
        parts["crd"] = self.weight * loss
        return loss_dict(parts, logits)

    @torch.no_grad()
    def _contrast_index(self, batch: Batch) -> torch.Tensor:
        self.known_labels[batch.index] = batch.y
        return sample_negatives(batch.index, batch.y, self.known_labels, self.nce_k)
