"""Any classifier as a teacher: a torch model, or a scikit-learn estimator with ``predict_proba``."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from kdlens.data import Normalizer
from kdlens.errors import KdlensError


class SklearnTeacher(nn.Module):
    """A fitted scikit-learn classifier as a frozen torch teacher: logits = log predict_proba.

    kdlens feeds models standardised input; pass the run's ``normalizer`` and the estimator sees
    the raw features it was fitted on. Usable with any Distiller (e.g. a soft tree distilled from
    gradient boosting); it has no parameters and no gradient.
    """

    def __init__(self, estimator: Any, normalizer: Normalizer | None = None):
        super().__init__()
        if not callable(getattr(estimator, "predict_proba", None)):
            raise KdlensError(f"{type(estimator).__name__} has no predict_proba: it cannot teach")
        self.estimator = estimator
        self.normalizer = normalizer
        self.num_classes = len(estimator.classes_)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raw = x if self.normalizer is None else x * self.normalizer.std + self.normalizer.mean
        proba = self.estimator.predict_proba(raw.flatten(1).detach().cpu().numpy())
        return torch.as_tensor(np.log(np.maximum(proba, 1e-12)), dtype=torch.float32).to(x.device)


@torch.no_grad()
def teacher_probabilities(
    teacher: Any, x_norm: torch.Tensor, x_raw: np.ndarray | None = None, batch: int = 512
) -> np.ndarray:
    """(N, K) teacher probabilities at T = 1.

    ``teacher`` is a torch model (fed standardised ``x_norm``) or an estimator with
    ``predict_proba`` (fed ``x_raw``, the features it was fitted on).
    """
    if isinstance(teacher, nn.Module):
        was_training = teacher.training
        teacher.eval()
        device = next((p.device for p in teacher.parameters()), torch.device("cpu"))
        logits = torch.cat(
            [
                teacher(x_norm[i : i + batch].to(device)).float().cpu()
                for i in range(0, len(x_norm), batch)
            ]
        )
        teacher.train(was_training)
        return torch.softmax(logits, -1).numpy().astype(np.float64)
    if callable(getattr(teacher, "predict_proba", None)):
        data = x_raw if x_raw is not None else x_norm.flatten(1).numpy()
        return np.asarray(teacher.predict_proba(data), dtype=np.float64)
    raise KdlensError(
        f"a teacher must be a torch model or have predict_proba; got {type(teacher).__name__}"
    )
