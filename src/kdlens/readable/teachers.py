"""Any classifier as a teacher: a torch model, or a scikit-learn estimator with ``predict_proba``."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from kdlens.errors import KdlensError
from kdlens.models.sklearn_models import SklearnTeacher

__all__ = ["SklearnTeacher", "teacher_probabilities"]  # SklearnTeacher lives in kdlens.models


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
