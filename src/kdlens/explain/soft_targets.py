"""Dark knowledge: what the teacher's soft targets say about which classes look alike.

Hinton, Vinyals & Dean (2015), "Distilling the Knowledge in a Neural Network": the relative
probabilities of the wrong classes carry the information a student learns from soft targets.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy.cluster.hierarchy import leaves_list, linkage
from scipy.spatial.distance import jensenshannon, squareform


def similarity_matrix(
    logits: torch.Tensor, labels: torch.Tensor, num_classes: int, temperature: float = 1.0
) -> np.ndarray:
    """M[j, k] = mean probability of class k at ``temperature`` over examples of true class j.

    Rows of classes without examples are NaN.
    """
    probs = F.softmax(logits.float() / temperature, dim=-1)  # (N, K)
    m = np.full((num_classes, num_classes), np.nan)
    for j in range(num_classes):
        rows = labels == j
        if rows.any():
            m[j] = probs[rows].mean(0).numpy()
    return m


def off_diagonal_rows(m: np.ndarray) -> np.ndarray:
    """Each row's wrong-class probabilities, renormalised to sum to 1: (K, K-1).

    This is the dark knowledge proper: how the probability that is *not* on the true class is
    shared among the other classes, independent of how confident the model is.
    """
    k = m.shape[0]
    off = m[~np.eye(k, dtype=bool)].reshape(k, k - 1)
    return off / off.sum(1, keepdims=True)


def dark_knowledge_distance(teacher_m: np.ndarray, student_m: np.ndarray) -> float:
    """Mean Jensen-Shannon distance (base 2, in [0, 1]) between the renormalised wrong-class rows.

    Jensen-Shannon rather than KL: symmetric, finite when a student puts ~0 on a class, bounded
    so numbers compare across datasets; renormalised rows so a student that is merely more or less
    confident than the teacher, but ranks the wrong classes alike, is close. 0 means identical.
    """
    a, b = off_diagonal_rows(teacher_m), off_diagonal_rows(student_m)
    keep = ~(np.isnan(a).any(1) | np.isnan(b).any(1))
    if not keep.any():
        return float("nan")
    d = [jensenshannon(p, q, base=2) for p, q in zip(a[keep], b[keep], strict=True)]
    return float(np.mean(np.nan_to_num(d)))


def cluster_classes(m: np.ndarray) -> tuple[list[int], list[list[float]]]:
    """Order classes by average-linkage clustering of the symmetrised off-diagonal similarity.

    Returns the leaf order and the scipy linkage matrix (for the dendrogram).
    """
    k = m.shape[0]
    if k < 3:
        return list(range(k)), []
    s = np.nan_to_num(m, nan=0.0)
    s = (s + s.T) / 2
    np.fill_diagonal(s, 0.0)
    d = s.max() - s
    np.fill_diagonal(d, 0.0)
    z = linkage(squareform(d, checks=False), method="average", optimal_ordering=True)
    return [int(i) for i in leaves_list(z)], z.tolist()


def entropy_vs_temperature(logits: torch.Tensor, temperatures: list[float]) -> list[float]:
    """Mean entropy (nats) of softmax(logits / T) for each T; the maximum is log(K)."""
    out = []
    for t in temperatures:
        logp = F.log_softmax(logits.float() / t, dim=-1)
        out.append(float(-(logp.exp() * logp).sum(-1).mean()))
    return out


def max_entropy(num_classes: int) -> float:
    return math.log(num_classes)
