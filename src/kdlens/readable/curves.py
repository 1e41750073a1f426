"""Complexity curves: fidelity and accuracy of distilled and hard-label students against size.

A curve is JSON-ready: ``{"parameter", "values", "kd": {"accuracy", "fidelity", "size"},
"scratch": {...}}``, one point per complexity value. What is fitted at each value is the caller's
(``fit_at``): scikit-learn surrogates here (:func:`surrogate_fits`), soft trees in the stage.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch

from kdlens.evaluate.metrics import accuracy, fidelity
from kdlens.readable.estimators import surrogate_class
from kdlens.readable.transfer import TransferSet, features_for, fit_pair

ARMS = ("kd", "scratch")
# value -> {"kd": (test logits (N, K), size), "scratch": (...)}
FitAt = Callable[[float], dict[str, tuple[torch.Tensor, float]]]


def add_point(
    arm: dict[str, list[float]], logits: torch.Tensor, y: torch.Tensor, t: torch.Tensor, size
) -> None:
    arm["accuracy"].append(accuracy(logits, y))
    arm["fidelity"].append(fidelity(logits, t))
    arm["size"].append(float(size))


def complexity_curve(
    parameter: str,
    values: Iterable[float],
    fit_at: FitAt,
    y: torch.Tensor,
    teacher_logits: torch.Tensor,
) -> dict:
    """One curve: ``fit_at(value)`` for every value, scored against labels and the teacher."""
    values = list(values)
    arms: dict[str, dict[str, list[float]]] = {
        arm: {"accuracy": [], "fidelity": [], "size": []} for arm in ARMS
    }
    for value in values:
        for arm, (logits, size) in fit_at(value).items():
            add_point(arms[arm], logits, y, teacher_logits, size)
    return {"parameter": parameter, "values": values, **arms}


def surrogate_fits(
    kind: str,
    transfer: TransferSet,
    test_raw: np.ndarray,
    test_norm: np.ndarray,
    num_classes: int,
    temperature: float,
    seed: int = 0,
) -> FitAt:
    """``fit_at`` for a scikit-learn surrogate: the distilled / hard-label pair at each value."""

    def fit_at(value: float) -> dict[str, tuple[torch.Tensor, float]]:
        kd, scratch = fit_pair(kind, transfer, value, temperature, seed)
        return {
            arm: (
                torch.as_tensor(
                    est.logits(features_for(est, test_raw, test_norm), num_classes),
                    dtype=torch.float32,
                ),
                est.size(),
            )
            for arm, est in (("kd", kd), ("scratch", scratch))
        }

    return fit_at


def parameter_label(kind: str) -> str:
    """The x axis of a surrogate family's curve (``max_depth``, ``C (inverse L1 strength)``)."""
    return surrogate_class(kind).complexity_label
