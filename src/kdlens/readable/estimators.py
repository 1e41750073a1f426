"""Readable surrogate students as scikit-learn estimators, fitted to labels or to a teacher.

``fit(X, y)`` takes hard labels (``y`` of shape (N,)) or the teacher's class probabilities at
T = 1 (``y`` of shape (N, K)); soft targets at ``temperature`` T are fitted as weighted rows
(:mod:`kdlens.readable.soft_targets`). ``__init__`` only stores parameters, ``fit`` returns
``self`` and learned attributes end in ``_``, so ``clone``, ``get_params`` and pipelines work.

Temperature is undone when evaluated: if a model fits q = softmax(z / T), then T log q = z +
const, so :meth:`SoftTargetClassifier.logits` gives logits on the teacher's scale.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, has_fit_parameter

from kdlens.errors import KdlensError
from kdlens.readable.soft_targets import soft_label_indices, soft_targets_np
from kdlens.registry import Registry

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data
except ImportError:  # pragma: no cover - older scikit-learn

    def validate_data(estimator, X, y="no_validation", reset=True, **kw):
        return estimator._validate_data(X, y, reset=reset, **kw)


PROBABILITY_FLOOR = 1e-12  # log of a class the model never predicts: finite, far below the rest

_SURROGATES: Registry[type] = Registry("readable surrogate")


def register_surrogate(name: str):
    """Class decorator: ``create_surrogate(name)`` builds it; its ``kind`` becomes ``name``."""

    def decorator(cls: type) -> type:
        cls.kind = name
        _SURROGATES.register(name)(cls)
        return cls

    return decorator


def surrogate_class(kind: str) -> type[SoftTargetClassifier]:
    return _SURROGATES.get(kind)


def create_surrogate(kind: str, complexity: float | None = None, **params: Any):
    """An unfitted surrogate; ``complexity`` sets its complexity parameter (tree depth, logistic C,
    EBM rounds), the rest are its own parameters."""
    cls = surrogate_class(kind)
    if complexity is not None:
        params[cls.complexity_param] = cls.complexity_type(complexity)
    return cls(**params)


def list_surrogates() -> list[str]:
    return _SURROGATES.names()


class SoftTargetClassifier(ClassifierMixin, BaseEstimator):
    """Any scikit-learn classifier that takes ``sample_weight``, fitted to hard labels or to class
    probabilities. Subclasses build their own estimator and say how complex it is."""

    kind = "classifier"
    complexity_param = ""
    complexity_type: type = float
    complexity_label = ""  # the x axis of its complexity curve
    size_key = ""  # the entry of complexity() a complexity curve plots as size
    standardised_inputs = False  # in a run: fitted on standardised, not raw, features

    def __init__(self, estimator: Any = None, temperature: float = 1.0):
        self.estimator = estimator
        self.temperature = temperature

    def _new_estimator(self) -> Any:
        if self.estimator is None:
            raise ValueError("SoftTargetClassifier needs an estimator")
        return clone(self.estimator)

    def fit(self, X, y, sample_weight=None) -> SoftTargetClassifier:
        """Fit on labels (N,) or on teacher probabilities (N, K) at T = 1 (softened to
        ``temperature`` here); ``sample_weight`` (N,) weighs examples."""
        start = time.perf_counter()
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=False)
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:  # a column of labels, not one-class probabilities
            y = column_or_1d(y, warn=True)
        weights = None if sample_weight is None else np.asarray(sample_weight, dtype=float)
        estimator = self._new_estimator()
        if (y.ndim == 2 or weights is not None) and not has_fit_parameter(
            estimator, "sample_weight"
        ):
            raise ValueError(
                f"{type(estimator).__name__} takes no sample_weight, which soft targets need"
            )
        if y.ndim == 2:
            probs = np.asarray(y, dtype=float)
            if probs.shape[1] < 2 or probs.min() < 0 or not np.allclose(probs.sum(1), 1, atol=1e-3):
                raise ValueError(
                    "soft targets must be (N, K >= 2) class probabilities summing to 1"
                )
            rows, labels, row_weights = soft_label_indices(soft_targets_np(probs, self.temperature))
            if weights is not None:
                row_weights = row_weights * weights[rows]
            self.classes_ = np.arange(probs.shape[1])
            self.temperature_ = float(self.temperature)
            args: tuple = (X[rows], labels)
            weights = row_weights
        else:
            check_classification_targets(y)
            self.classes_, labels = np.unique(y, return_inverse=True)
            self.temperature_ = 1.0  # hard labels carry no temperature to undo
            args = (X, labels)
        self.soft_ = y.ndim == 2
        with warnings.catch_warnings():
            # A capped solver is a deliberate speed/accuracy trade; the curves show what it cost.
            from sklearn.exceptions import ConvergenceWarning

            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.filterwarnings("ignore", message=".*l1_ratio.*")
            warnings.filterwarnings("ignore", message=".*penalty.*deprecated.*")
            # Only when there are weights: a hard-label fit needs no sample_weight parameter.
            kwargs = {} if weights is None else {"sample_weight": weights}
            self.estimator_ = estimator.fit(*args, **kwargs)
        self.fit_seconds_ = time.perf_counter() - start
        return self

    def predict_proba(self, X) -> np.ndarray:
        """(N, len(classes_)); a class the fitted estimator never saw gets probability 0."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        proba = np.zeros((len(X), len(self.classes_)))
        proba[:, np.asarray(self.estimator_.classes_, dtype=int)] = self.estimator_.predict_proba(X)
        return proba

    def predict(self, X) -> np.ndarray:
        proba = self.predict_proba(X)  # first: it checks that the model is fitted
        return self.classes_[proba.argmax(1)]

    def logits(self, X, num_classes: int | None = None) -> np.ndarray:
        """(N, len(classes_)) logits on the teacher's scale: T log p, unseen classes at log 1e-12.

        With ``num_classes`` (integer classes only): (N, num_classes), column c for class c, so a
        class missing from the training labels still has its column.
        """
        proba = self.predict_proba(X)
        if num_classes is not None:
            full = np.zeros((len(proba), num_classes))
            full[:, self.classes_.astype(int)] = proba
            proba = full
        return self.temperature_ * np.log(np.maximum(proba, PROBABILITY_FLOOR))

    def complexity(self) -> dict[str, int]:
        """What a reader has to take in (depth and leaves, non-zero weights...)."""
        return {}

    def n_parameters(self) -> int:
        return 0

    def size(self) -> float:
        """The one number a complexity curve plots as size."""
        return float(self.complexity().get(self.size_key, 0))


@register_surrogate("tree")
class SoftTargetTree(SoftTargetClassifier):
    """A scikit-learn decision tree; fitted on soft targets each leaf predicts the teacher's mean
    distribution over the examples that reach it."""

    complexity_param = "max_depth"
    complexity_type = int
    complexity_label = "max_depth"
    size_key = "leaves"

    def __init__(
        self,
        max_depth: int | None = None,
        max_leaf_nodes: int | None = None,
        temperature: float = 1.0,
        random_state: int | None = None,
    ):
        self.max_depth = max_depth
        self.max_leaf_nodes = max_leaf_nodes
        self.temperature = temperature
        self.random_state = random_state

    def _new_estimator(self) -> Any:
        from sklearn.tree import DecisionTreeClassifier

        # With soft rows a node whose examples share one teacher distribution is still impure, and
        # sklearn would keep splitting it for no gain; a tiny minimum gain stops that.
        return DecisionTreeClassifier(
            max_depth=self.max_depth,
            max_leaf_nodes=self.max_leaf_nodes,
            min_impurity_decrease=1e-6,
            random_state=self.random_state,
        )

    def complexity(self) -> dict[str, int]:
        check_is_fitted(self)
        return {
            "depth": int(self.estimator_.get_depth()),
            "leaves": int(self.estimator_.get_n_leaves()),
        }

    def n_parameters(self) -> int:
        return int(self.estimator_.tree_.node_count)


@register_surrogate("logistic")
class SoftTargetLogistic(SoftTargetClassifier):
    """Multinomial L1 logistic regression (saga); its weighted log-loss on soft rows is exactly the
    cross-entropy to the teacher's distribution."""

    complexity_param = "C"
    complexity_label = "C (inverse L1 strength)"
    size_key = "nonzero_weights"
    standardised_inputs = True  # L1 needs the features on one scale

    def __init__(
        self,
        C: float = 0.1,
        temperature: float = 1.0,
        max_iter: int = 200,
        tol: float = 1e-3,
        random_state: int | None = None,
    ):
        self.C = C
        self.temperature = temperature
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    def _new_estimator(self) -> Any:
        from sklearn.linear_model import LogisticRegression

        # saga is sklearn's solver for a multinomial L1 model; tol keeps it to seconds.
        return LogisticRegression(
            l1_ratio=1.0,
            C=self.C,
            solver="saga",
            max_iter=self.max_iter,
            tol=self.tol,
            random_state=self.random_state,
        )

    def complexity(self) -> dict[str, int]:
        check_is_fitted(self)
        return {"nonzero_weights": int(np.count_nonzero(self.estimator_.coef_))}

    def n_parameters(self) -> int:
        est = self.estimator_
        return int(np.count_nonzero(est.coef_) + est.intercept_.size)


@register_surrogate("ebm")
class SoftTargetEBM(SoftTargetClassifier):
    """interpret's Explainable Boosting Machine, main effects only: one readable shape function
    per feature. Needs ``pip install 'kdlens[interpret]'``."""

    complexity_param = "max_rounds"
    complexity_type = int
    complexity_label = "boosting rounds"
    size_key = "terms"

    def __init__(
        self, max_rounds: int = 500, temperature: float = 1.0, random_state: int | None = None
    ):
        self.max_rounds = max_rounds
        self.temperature = temperature
        self.random_state = random_state

    def _new_estimator(self) -> Any:
        # One bag and no interactions keep it to seconds.
        return ebm_class()(
            interactions=0,
            outer_bags=1,
            max_rounds=self.max_rounds,
            random_state=self.random_state,
            n_jobs=1,
        )

    def complexity(self) -> dict[str, int]:
        check_is_fitted(self)
        return {"terms": len(self.estimator_.term_features_)}

    def n_parameters(self) -> int:
        return int(sum(np.size(s) for s in self.estimator_.term_scores_))


def ebm_class() -> type:
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
        ebm_class()
    except KdlensError:
        return False
    return True
