"""Transparent surrogate students from scikit-learn (and interpret's EBM), fitted to a teacher.

Soft targets are fitted as *sample-weighted rows*: each example appears once per class k with
weight p_teacher(k | x) (rows below ``min_weight`` dropped). Why this and not regression on the
probabilities: for multinomial logistic regression and EBMs the weighted log-loss is exactly the
cross-entropy to the teacher's distribution, and for a classification tree the weighted
impurity of a node is the impurity of the mean teacher distribution in it, so each leaf predicts
the teacher's average distribution there. The student stays a classifier with ``predict_proba``
(probabilities that sum to one, the same rules and plots as a hard-label twin), which a
multi-output regressor would not give.

Targets at temperature T are undone when evaluated: if a model fits q = softmax(z / T), then
T log q = z + const, so ``T * log(predict_proba)`` are logits on the teacher's scale.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from kdlens.errors import KdlensError

Kind = Literal["tree", "logistic", "ebm"]
KINDS: tuple[Kind, ...] = ("tree", "logistic", "ebm")


def soft_label_rows(
    x: np.ndarray, probs: np.ndarray, min_weight: float = 1e-3
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, D), (N, K) -> rows (M, D), labels (M,), weights (M,): one row per (example, class)."""
    rows, classes = np.nonzero(probs >= min_weight)
    weights = probs[rows, classes]
    # Renormalise per example so dropped crumbs do not change an example's total weight of 1.
    totals = np.bincount(rows, weights=weights, minlength=len(x))
    return x[rows], classes, weights / totals[rows]


def make_surrogate(
    kind: Kind, complexity: float | None = None, seed: int = 0, max_leaves: int | None = None
) -> Any:
    """An unfitted estimator. complexity: tree depth, logistic C (inverse L1 strength), EBM
    rounds; ``max_leaves`` also caps a tree's number of leaves."""
    if kind == "tree":
        from sklearn.tree import DecisionTreeClassifier

        depth = None if complexity is None else int(complexity)
        # With soft rows a node whose examples share one teacher distribution is still impure, and
        # sklearn would keep splitting it for no gain; a tiny minimum gain stops that.
        return DecisionTreeClassifier(
            max_depth=depth,
            max_leaf_nodes=max_leaves,
            min_impurity_decrease=1e-6,
            random_state=seed,
        )
    if kind == "logistic":
        from sklearn.linear_model import LogisticRegression

        # saga is sklearn's solver for a multinomial L1 model; tol keeps it to seconds.
        return LogisticRegression(
            l1_ratio=1.0,
            C=0.1 if complexity is None else float(complexity),
            solver="saga",
            max_iter=200,
            tol=1e-3,
            random_state=seed,
        )
    if kind == "ebm":
        ebm_class = _ebm_class()
        # Main effects only (a readable shape function per feature); one bag keeps it to seconds.
        rounds = 500 if complexity is None else int(complexity)
        return ebm_class(
            interactions=0, outer_bags=1, max_rounds=rounds, random_state=seed, n_jobs=1
        )
    raise KdlensError(f"unknown surrogate {kind!r} (known: {', '.join(KINDS)})")


def _ebm_class():
    try:
        import logging

        from interpret.glassbox import ExplainableBoostingClassifier

        # interpret logs every boosting round at INFO, which the CLI's log level would show.
        logging.getLogger("interpret").setLevel(logging.WARNING)
    except ImportError:
        raise KdlensError(
            "the 'ebm' surrogate needs interpret: pip install 'kdlens[interpret]'"
        ) from None
    return ExplainableBoostingClassifier


def ebm_available() -> bool:
    try:
        _ebm_class()
    except KdlensError:
        return False
    return True


def fit_surrogate(
    estimator: Any, x: np.ndarray, target: np.ndarray, total_weight: float | None = None
) -> Any:
    """Fit on hard labels (target (N,) ints) or on class distributions (target (N, K)).

    ``total_weight`` rescales the soft rows' weights to that sum (default N): a transfer set with
    extra copies must not weaken the L1 penalty just by adding rows.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    if target.ndim == 1:
        args: tuple = (x, target)
        kwargs: dict = {}
    else:
        xr, yr, wr = soft_label_rows(x, target)
        if total_weight is not None:
            wr = wr * (total_weight / len(x))
        args, kwargs = (xr, yr), {"sample_weight": wr}
    with warnings.catch_warnings():
        # A capped solver is a deliberate speed/accuracy trade; the curves show what it cost.
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", message=".*l1_ratio.*")
        warnings.filterwarnings("ignore", message=".*penalty.*deprecated.*")
        return estimator.fit(*args, **kwargs)


def surrogate_logits(
    estimator: Any, x: np.ndarray, num_classes: int, temperature: float = 1.0
) -> torch.Tensor:
    """(N, K) logits on the teacher's scale: T * log p, with classes never seen at log(1e-12)."""
    proba = np.full((len(x), num_classes), 1e-12)
    proba[:, np.asarray(estimator.classes_, dtype=int)] = np.maximum(
        estimator.predict_proba(x), 1e-12
    )
    return torch.as_tensor(temperature * np.log(proba), dtype=torch.float32)


def complexity_of(estimator: Any, kind: Kind) -> dict[str, float]:
    """What a reader has to take in: tree depth and leaves, or non-zero weights."""
    if kind == "tree":
        return {"depth": int(estimator.get_depth()), "leaves": int(estimator.get_n_leaves())}
    if kind == "logistic":
        return {"nonzero_weights": int(np.count_nonzero(estimator.coef_))}
    if kind == "ebm":
        return {"terms": len(estimator.term_features_)}
    return {}


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


@dataclass
class FittedSurrogate:
    name: str
    kind: Kind
    estimator: Any
    uses_raw: bool  # trees and EBMs read raw features; logistic regression standardised ones
    temperature: float
    fit_seconds: float = 0.0
    distilled: bool = False  # fitted on the teacher's soft targets (else on hard labels)

    def logits(self, raw: np.ndarray, norm: np.ndarray, num_classes: int) -> torch.Tensor:
        x = raw if self.uses_raw else norm
        return surrogate_logits(self.estimator, x, num_classes, self.temperature)


def fit_pair(
    kind: Kind,
    transfer: TransferSet,
    complexity: float | None,
    temperature: float,
    seed: int = 0,
    max_leaves: int | None = None,
) -> tuple[FittedSurrogate, FittedSurrogate]:
    """The distilled surrogate (teacher soft targets at T) and its hard-label twin."""
    uses_raw = kind != "logistic"
    x = transfer.raw if uses_raw else transfer.norm
    keep, labels = transfer.hard_rows()
    start = time.perf_counter()
    scratch = fit_surrogate(make_surrogate(kind, complexity, seed, max_leaves), x[keep], labels)
    mid = time.perf_counter()
    soft = soft_targets_np(transfer.teacher_probs, temperature)
    # As much total weight as the hard-label twin's data, so both face the same L1 strength.
    kd = fit_surrogate(make_surrogate(kind, complexity, seed, max_leaves), x, soft, int(keep.sum()))
    end = time.perf_counter()
    return (
        FittedSurrogate(f"{kind}_kd", kind, kd, uses_raw, temperature, end - mid, distilled=True),
        FittedSurrogate(f"{kind}_scratch", kind, scratch, uses_raw, 1.0, mid - start),
    )


def soft_targets_np(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): the teacher's distribution at temperature T from its T = 1 one."""
    if temperature == 1.0:
        return probs
    z = np.log(np.maximum(probs, 1e-12)) / temperature
    z -= z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)
