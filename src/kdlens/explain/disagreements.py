"""Where models disagree: confusion matrices and the examples a student gets differently."""

from __future__ import annotations

import torch
from sklearn.metrics import confusion_matrix as sk_confusion_matrix


def confusion_matrix(
    logits: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> list[list[int]]:
    """C[i, j] = number of test examples of true class i predicted as j."""
    c = sk_confusion_matrix(labels.numpy(), logits.argmax(-1).numpy(), labels=range(num_classes))
    return c.tolist()


def disagreement_indices(
    a_logits: torch.Tensor, b_logits: torch.Tensor, limit: int
) -> tuple[int, list[int]]:
    """How many examples the two models predict differently, and up to ``limit`` of them.

    The shown ones are those where the teacher (``a``) was most confident: the clearest cases.
    """
    differ = (a_logits.argmax(-1) != b_logits.argmax(-1)).nonzero().flatten()
    confidence = a_logits[differ].softmax(-1).max(-1).values
    order = confidence.argsort(descending=True, stable=True)
    return len(differ), differ[order][:limit].tolist()
