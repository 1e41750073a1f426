"""Soft targets for estimators that only take hard labels: one weighted row per (example, class).

Each example appears once per class k with weight p_teacher(k | x) (rows below ``min_weight``
dropped). Why this and not regression on the probabilities: for multinomial logistic regression
and EBMs the weighted log-loss is exactly the cross-entropy to the teacher's distribution, and for
a classification tree the weighted impurity of a node is the impurity of the mean teacher
distribution in it, so each leaf predicts the teacher's average distribution there. The student
stays a classifier with ``predict_proba`` (probabilities that sum to one, the same rules and plots
as a hard-label twin), which a multi-output regressor would not give.
"""

from __future__ import annotations

import numpy as np


def soft_label_indices(
    probs: np.ndarray, min_weight: float = 1e-3
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, K) -> example index (M,), class (M,), weight (M,): one row per (example, class)."""
    rows, classes = np.nonzero(probs >= min_weight)
    weights = probs[rows, classes]
    # Renormalise per example so dropped crumbs do not change an example's total weight of 1.
    totals = np.bincount(rows, weights=weights, minlength=len(probs))
    return rows, classes, weights / totals[rows]


def soft_label_rows(
    x: np.ndarray, probs: np.ndarray, min_weight: float = 1e-3
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, D), (N, K) -> rows (M, D), labels (M,), weights (M,): one row per (example, class)."""
    rows, classes, weights = soft_label_indices(probs, min_weight)
    return x[rows], classes, weights


def soft_targets_np(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): the teacher's distribution at temperature T from its T = 1 one."""
    if temperature == 1.0:
        return probs
    z = np.log(np.maximum(probs, 1e-12)) / temperature
    z -= z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)
