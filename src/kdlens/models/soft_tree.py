"""Soft decision tree: Frosst & Hinton (2017), "Distilling a Neural Network Into a Soft
Decision Tree", arXiv:1711.09784.

A complete binary tree of ``depth`` levels of inner nodes. Inner node i sends an input to its right
child with probability p_i(x) = sigmoid(beta_i * (w_i . x + b_i)), with a learned inverse
temperature beta_i > 0; each of the 2^depth leaves holds a class distribution softmax(phi_l).
Nodes are stored in heap order (root 0, children of i at 2i+1 and 2i+2) as stacked tensors, so a
forward pass is one matrix product plus one small loop over levels, never over nodes.

``forward`` returns the log of the mixture of leaf distributions weighted by path probability:
log sum_l P_l(x) softmax(phi_l). These are valid logits (softmax of them is the mixture), so the
tree is evaluated like any other classifier. Training uses the paper's loss instead, through
:meth:`SoftDecisionTree.loss_parts`, which :class:`kdlens.distill.Distiller` calls when a student
defines it (see ``docs/readable.md``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from kdlens.errors import ConfigError
from kdlens.models.registry import register_model


def path_log_probs(node_logits: torch.Tensor, depth: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Log path probabilities of every inner node and every leaf, from the nodes' pre-sigmoids.

    node_logits: (B, 2^depth - 1), beta_i (w_i . x + b_i) in heap order.
    Returns (inner (B, 2^depth - 1), leaves (B, 2^depth)): log P(reach node) for each.
    """
    b = node_logits.shape[0]
    log_mu = node_logits.new_zeros(b, 1)  # the root is reached with probability 1
    reach = []
    for level in range(depth):
        start = 2**level - 1
        a = node_logits[:, start : start + 2**level]  # (B, 2^level)
        reach.append(log_mu)
        # Children of node j on this level sit at 2j (left, 1 - p) and 2j + 1 (right, p).
        log_mu = torch.stack([log_mu + F.logsigmoid(-a), log_mu + F.logsigmoid(a)], dim=2)
        log_mu = log_mu.reshape(b, 2 ** (level + 1))
    return torch.cat(reach, dim=1), log_mu


def soft_tree_leaf_loss(
    log_leaf_reach: torch.Tensor,
    leaf_logits: torch.Tensor,
    target: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """Frosst & Hinton eq. 2: sum_l P_l(x) KL(target || softmax(phi_l / T)), batch mean.

    The paper writes cross-entropy; KL differs by the target's entropy, a constant, and reads as
    "zero when every reached leaf matches the target". log_leaf_reach (B, L); leaf_logits (L, K);
    target (B, K) class distributions
    or (B,) class indices.
    """
    if target.ndim == 1:  # class indices
        target = F.one_hot(target, leaf_logits.shape[-1]).to(leaf_logits.dtype)
    log_q = F.log_softmax(leaf_logits / temperature, dim=-1)  # (L, K)
    cross = -(target @ log_q.T)  # (B, L): cross-entropy of each leaf against the target
    entropy = -(target * target.clamp_min(1e-12).log()).sum(-1, keepdim=True)  # (B, 1)
    return (log_leaf_reach.exp() * (cross - entropy)).sum(-1).mean()


def balance_penalty(
    node_logits: torch.Tensor, log_inner_reach: torch.Tensor, lambdas: torch.Tensor
) -> torch.Tensor:
    """Frosst & Hinton eq. 3-4, shifted to be zero for a perfectly balanced split.

    alpha_i = sum_x P_i(x) p_i(x) / sum_x P_i(x) is the share of the batch that node i sends
    right. The paper's term -lambda_i (0.5 log alpha_i + 0.5 log(1 - alpha_i)) is log 2 at its
    minimum; we subtract that constant, giving lambda_i KL(uniform || Bernoulli(alpha_i)), which
    has the same gradient and is 0 exactly when alpha_i = 1/2.
    """
    reach = log_inner_reach.exp()  # (B, N)
    alpha = (reach * torch.sigmoid(node_logits)).sum(0) / reach.sum(0).clamp_min(1e-12)
    alpha = alpha.clamp(1e-6, 1 - 1e-6)
    kl = -0.5 * (alpha.log() + (1 - alpha).log()) - math.log(2.0)
    return (lambdas * kl).sum()


class SoftDecisionTree(nn.Module):
    """All inner nodes' filters in one (N, D) matrix; all leaves' logits in one (L, K) matrix."""

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        depth: int = 4,
        penalty: float = 0.1,
        learn_beta: bool = True,
    ):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.depth = depth
        self.num_inner = 2**depth - 1
        self.num_leaves = 2**depth
        d = math.prod(input_shape)
        self.inner = nn.Linear(d, self.num_inner)  # row i is node i's filter w_i, bias b_i
        self.log_beta = nn.Parameter(torch.zeros(self.num_inner), requires_grad=learn_beta)
        self.leaf_logits = nn.Parameter(torch.randn(self.num_leaves, num_classes) * 0.01)
        # lambda decays as 2^-depth of the node (the paper's schedule): deep nodes see few
        # examples, so forcing them to split evenly would fight the data.
        levels = torch.floor(torch.log2(torch.arange(1, self.num_inner + 1).float()))
        self.register_buffer("lambdas", penalty * 2.0**-levels, persistent=False)

    @property
    def beta(self) -> torch.Tensor:
        return self.log_beta.exp()

    def node_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, ...) -> (B, N): beta_i (w_i . x + b_i); sigmoid of it is P(go right at node i)."""
        return self.beta * self.inner(x.flatten(1))

    def routing(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(node_logits (B, N), log inner reach (B, N), log leaf reach (B, L))."""
        a = self.node_logits(x)
        inner, leaves = path_log_probs(a, self.depth)
        return a, inner, leaves

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log-mixture of the leaves' distributions (B, K): the prediction by the mixture."""
        _, _, leaves = self.routing(x)
        return mixture_log_probs(leaves, self.leaf_logits)

    @torch.no_grad()
    def path_predict(self, x: torch.Tensor) -> torch.Tensor:
        """Log-distribution of the leaf with the greatest path probability (B, K).

        The paper's "most probable path" prediction: that one path is the explanation.
        """
        return F.log_softmax(self.leaf_logits, dim=-1)[self.most_probable_leaf(x)]

    @torch.no_grad()
    def most_probable_leaf(self, x: torch.Tensor) -> torch.Tensor:
        """(B,) index of the leaf with the greatest path probability."""
        return self.routing(x)[2].argmax(-1)

    @staticmethod
    def path_nodes(leaf: int, depth: int) -> list[tuple[int, bool]]:
        """Inner nodes (heap index, went right?) from the root to ``leaf``."""
        node, steps = leaf + 2**depth - 1, []
        while node > 0:
            parent = (node - 1) // 2
            steps.append((parent, node == 2 * parent + 2))
            node = parent
        return steps[::-1]

    def loss_parts(
        self, x: torch.Tensor, targets: Mapping[str, tuple[torch.Tensor, float, float]]
    ) -> dict[str, torch.Tensor]:
        """The paper's loss for each (target, temperature, weight), plus the balance penalty.

        Temperature divides the leaf logits phi_l, the tree's counterpart of a network's logits,
        never the log-mixture (see ``docs/readable.md``). Returns weighted scalars keyed like
        ``targets`` plus ``penalty``, and ``logits`` (the T = 1 log-mixture, for accuracy).
        """
        a, inner, leaves = self.routing(x)
        out = {
            name: weight * soft_tree_leaf_loss(leaves, self.leaf_logits, target, temperature)
            for name, (target, temperature, weight) in targets.items()
            if weight > 0
        }
        out["penalty"] = balance_penalty(a, inner, self.lambdas)
        out["logits"] = mixture_log_probs(leaves, self.leaf_logits)
        return out


def mixture_log_probs(log_leaf_reach: torch.Tensor, leaf_logits: torch.Tensor) -> torch.Tensor:
    """log sum_l P_l(x) softmax(phi_l), computed in log space: (B, L), (L, K) -> (B, K)."""
    log_q = F.log_softmax(leaf_logits, dim=-1)  # (L, K)
    return torch.logsumexp(log_leaf_reach[:, :, None] + log_q[None], dim=1)


@register_model("soft_tree")
def soft_tree(
    input_shape: tuple[int, ...],
    num_classes: int,
    depth: int = 4,
    penalty: float = 0.1,
    learn_beta: bool = True,
) -> SoftDecisionTree:
    """A soft decision tree (Frosst & Hinton 2017) with ``depth`` levels of inner nodes and
    2^depth leaves."""
    if not 1 <= depth <= 12:
        raise ConfigError(f"model 'soft_tree': depth must be between 1 and 12, got {depth}")
    if penalty < 0:
        raise ConfigError(f"model 'soft_tree': penalty must be >= 0, got {penalty}")
    return SoftDecisionTree(input_shape, num_classes, depth, penalty, learn_beta)
