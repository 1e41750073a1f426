import math

import pytest
import torch

from kdlens.evaluate import (
    accuracy,
    classification_metrics,
    expected_calibration_error,
    fidelity,
    kl_to_teacher,
    nll,
)


def test_accuracy_fidelity_kl():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 1, 1, 1])
    assert accuracy(logits, y) == 0.75
    teacher = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert fidelity(logits, teacher) == 0.75
    assert kl_to_teacher(teacher, teacher) == pytest.approx(0.0, abs=1e-7)
    assert kl_to_teacher(logits, teacher) > 0


def test_nll_of_uniform_prediction():
    assert nll(torch.zeros(5, 4), torch.arange(5) % 4) == pytest.approx(math.log(4))


def test_ece_analytic():
    # Every prediction 0.8 confident, 3 of 5 right: ECE = |0.6 - 0.8| = 0.2.
    p = 0.8
    logit = math.log(p / (1 - p))
    logits = torch.tensor([[logit, 0.0]] * 5)
    y = torch.tensor([0, 0, 0, 1, 1])
    assert expected_calibration_error(logits, y) == pytest.approx(0.2, abs=1e-5)
    # Two bins: (0.8, all right) and (0.6, half right): 0.5*0.2 + 0.5*0.1 = 0.15.
    l2 = math.log(0.6 / 0.4)
    logits = torch.tensor([[logit, 0.0]] * 2 + [[l2, 0.0]] * 2)
    y = torch.tensor([0, 0, 0, 1])
    assert expected_calibration_error(logits, y) == pytest.approx(0.15, abs=1e-5)


def test_perfectly_calibrated_is_zero():
    logits = torch.tensor([[10.0, -10.0]] * 4)
    assert expected_calibration_error(logits, torch.zeros(4, dtype=torch.long)) < 1e-4


def test_classification_metrics_keys():
    logits, y = torch.randn(20, 3), torch.arange(20) % 3
    assert set(classification_metrics(logits, y)) == {"accuracy", "nll", "ece"}
    assert set(classification_metrics(logits, y, logits)) == {
        "accuracy",
        "nll",
        "ece",
        "fidelity",
        "kl_to_teacher",
    }
