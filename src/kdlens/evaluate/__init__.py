"""Evaluation: accuracy, calibration, fidelity to the teacher."""

from kdlens.evaluate.metrics import (
    accuracy,
    classification_metrics,
    expected_calibration_error,
    fidelity,
    kl_to_teacher,
    nll,
)

__all__ = [
    "accuracy",
    "classification_metrics",
    "expected_calibration_error",
    "fidelity",
    "kl_to_teacher",
    "nll",
]
