"""The data surrogates are fitted on, and the distilled / hard-label pair fitted on it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from kdlens.data.transforms import Normalizer, random_shift
from kdlens.readable.estimators import SoftTargetClassifier, create_surrogate

TABULAR_NOISE = 0.3  # std of the augmented copies' jitter, in standardised units


def features_for(estimator: SoftTargetClassifier, raw: np.ndarray, norm: np.ndarray) -> np.ndarray:
    """What ``estimator`` reads: raw features (rules in the data's units) or standardised ones."""
    return norm if estimator.standardised_inputs else raw


@dataclass
class TransferSet:
    """Inputs the surrogates are fitted on: features for sklearn and the teacher's probabilities.

    ``raw`` is what trees split on (pixels in [0, 1], tabular data in its own units) so rules read
    in the data's units; ``norm`` (standardised) is what logistic regression and the teacher see.
    """

    raw: np.ndarray  # (N, D)
    norm: np.ndarray  # (N, D)
    labels: np.ndarray  # (N,) true labels; -1 for augmented copies, which have none
    teacher_probs: np.ndarray  # (N, K) at T = 1

    def hard_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """Rows with a true label, for the hard-label twin."""
        keep = self.labels >= 0
        return keep, self.labels[keep]

    def inputs(self, estimator: SoftTargetClassifier) -> np.ndarray:
        return features_for(estimator, self.raw, self.norm)


def fit_pair(
    kind: str,
    transfer: TransferSet,
    complexity: float | None,
    temperature: float,
    seed: int = 0,
    max_leaves: int | None = None,
) -> tuple[SoftTargetClassifier, SoftTargetClassifier]:
    """The distilled surrogate (teacher soft targets at T) and its hard-label twin, fitted."""
    params: dict = {"random_state": seed}
    if max_leaves is not None:
        params["max_leaf_nodes"] = max_leaves
    kd = create_surrogate(kind, complexity, temperature=temperature, **params)
    scratch = create_surrogate(kind, complexity, **params)
    x = transfer.inputs(kd)
    keep, labels = transfer.hard_rows()
    scratch.fit(x[keep], labels)
    # As much total weight as the hard-label twin's data, so both face the same L1 strength:
    # a transfer set with extra copies must not weaken the penalty just by adding rows.
    weight = np.full(len(x), keep.sum() / len(x))
    kd.fit(x, transfer.teacher_probs, sample_weight=weight)
    return kd, scratch


def augmented_copies(
    x: torch.Tensor, copies: int, shift: int, normalizer: Normalizer, seed: int
) -> torch.Tensor:
    """``copies`` perturbed copies of ``x`` (raw units): image shifts of up to ``shift`` pixels,
    or tabular jitter of TABULAR_NOISE standard deviations per feature."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(copies):
        if x.ndim == 4:
            out.append(random_shift(x, shift, g))
        else:
            out.append(x + torch.randn(x.shape, generator=g) * TABULAR_NOISE * normalizer.std)
    return torch.cat(out)
