"""The omitted-class experiment (Hinton et al. 2015, §3).

A student that never saw a class in its transfer set can still recognise it from the teacher's
soft targets on the other classes ("dark knowledge"); its bias for that class stays too low,
so the paper raises that bias by a constant. We choose the constant on the validation split
(maximum accuracy over a grid) and report recall of the omitted classes on the test split before
and after.
"""

from __future__ import annotations

from typing import Any

import torch

from kdlens.evaluate.metrics import accuracy

SHIFTS = torch.arange(0.0, 20.01, 0.25)


def class_recall(logits: torch.Tensor, labels: torch.Tensor, classes: list[int]) -> float | None:
    """Share of the examples of ``classes`` predicted as their own class (None if there are none)."""
    mask = torch.isin(labels, torch.as_tensor(classes))
    if not mask.any():
        return None
    return float((logits[mask].argmax(-1) == labels[mask]).float().mean())


def shift_bias(logits: torch.Tensor, classes: list[int], shift: float) -> torch.Tensor:
    """Logits after adding ``shift`` to the bias of ``classes`` (the same as editing the last layer)."""
    out = logits.clone()
    out[:, classes] += shift
    return out


def best_bias_shift(
    logits: torch.Tensor, labels: torch.Tensor, classes: list[int], shifts=SHIFTS
) -> float:
    """The smallest shift in ``shifts`` with the highest accuracy on (logits, labels)."""
    scores = [accuracy(shift_bias(logits, classes, float(s)), labels) for s in shifts]
    return float(shifts[max(range(len(scores)), key=lambda i: (scores[i], -i))])


def omitted_class_report(
    test_logits: torch.Tensor,
    test_labels: torch.Tensor,
    val_logits: torch.Tensor,
    val_labels: torch.Tensor,
    classes: list[int],
) -> dict[str, Any]:
    shift = best_bias_shift(val_logits, val_labels, classes)
    corrected = shift_bias(test_logits, classes, shift)
    return {
        "omitted_recall": class_recall(test_logits, test_labels, classes),
        "accuracy": accuracy(test_logits, test_labels),
        "bias_shift": shift,
        "omitted_recall_corrected": class_recall(corrected, test_labels, classes),
        "accuracy_corrected": accuracy(corrected, test_labels),
    }
