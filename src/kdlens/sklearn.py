"""A scikit-learn face for distillation: ``DistilledClassifier(teacher, student).fit(X, y)``.

The teacher is any classifier with ``predict_proba`` (fitted here if it is not yet). The student
is either a scikit-learn classifier, fitted to the teacher's soft targets as sample-weighted rows
(through ``kdlens.readable.SoftTargetClassifier``: one row per example and class, weighted by the
teacher's probability), or the name of a kdlens torch model (``"mlp"``, ``"soft_tree"``...),
trained with ``kdlens.train.fit`` and the KD distiller on standardised features.

Scores: ``teacher_score_``, ``scratch_score_`` (the same student fitted on the hard labels of the
same data) and ``student_score_`` (the distilled one) are accuracies on ``eval_set`` when ``fit``
gets one, else on the training data; ``fidelity_`` is agreement with the teacher on the training
data (the data the student imitated).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.exceptions import NotFittedError
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, has_fit_parameter

from kdlens.readable import SoftTargetClassifier, SoftTargetTree, augmented_copies

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data
except ImportError:  # pragma: no cover - older scikit-learn

    def validate_data(estimator, X, y="no_validation", reset=True, **kw):
        return estimator._validate_data(X, y, reset=reset, **kw)


class DistilledClassifier(ClassifierMixin, BaseEstimator):
    """A student classifier distilled from a teacher classifier.

    Parameters
    ----------
    teacher : classifier with predict_proba, default GradientBoostingClassifier()
        Used as is when already fitted, else a clone is fitted on ``(X, y)``.
    student : scikit-learn classifier or kdlens model name, default ``SoftTargetTree()``
        A scikit-learn student must accept ``sample_weight`` in ``fit``.
    temperature : the student imitates softmax(log p_teacher / T); its probabilities are put
        back on the teacher's scale (T log q) when predicted.
    transfer : "train" (the training data) or "augmented" (plus ``n_copies`` copies with
        Gaussian jitter of 0.3 standard deviations per feature, labelled only by the teacher).
    student_args : keyword arguments of a kdlens torch student (e.g. ``{"hidden": [64]}``).
    alpha : weight of the hard-label loss for a torch student (copies get the teacher's argmax).
    epochs, batch_size, lr : training of a torch student (Adam, cosine schedule).
    random_state : seeds the transfer copies, the torch student, and the teacher and student
        clones whose own ``random_state`` is None.
    """

    def __init__(
        self,
        teacher: Any = None,
        student: Any = None,
        temperature: float = 1.0,
        transfer: Literal["train", "augmented"] = "train",
        n_copies: int = 4,
        student_args: dict | None = None,
        alpha: float = 0.0,
        epochs: int = 100,
        batch_size: int = 64,
        lr: float = 1e-3,
        random_state: int | None = None,
    ):
        self.teacher = teacher
        self.student = student
        self.temperature = temperature
        self.transfer = transfer
        self.n_copies = n_copies
        self.student_args = student_args
        self.alpha = alpha
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.random_state = random_state

    def fit(self, X, y, eval_set: tuple[Any, Any] | None = None) -> DistilledClassifier:
        """Fit the teacher (if needed), then the student on its soft targets, and the scratch
        twin on ``y``; score all three on ``eval_set`` (default: the training data)."""
        X, y = validate_data(self, X, y)
        check_classification_targets(y)
        self.classes_, y_index = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(
                f"DistilledClassifier needs at least 2 classes; y has 1 class ({self.classes_[0]!r})"
            )
        if self.transfer not in ("train", "augmented"):
            raise ValueError(f"transfer must be 'train' or 'augmented', not {self.transfer!r}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, not {self.temperature!r}")
        rng = check_random_state(self.random_state)
        self.teacher_ = self._fitted_teacher(X, y, rng)
        x_transfer = self._transfer_set(X, rng)
        if self._is_torch():
            import torch

            from kdlens.data.transforms import Normalizer

            # Fitted on the training data, as in a kdlens run; copies and scratch share it.
            self.normalizer_ = Normalizer.fit(torch.tensor(X, dtype=torch.float32))
        probs = self._teacher_proba(x_transfer)  # (N_t, K), the data's class order
        self.student_ = self._fit_student(x_transfer, y_index, probs, rng, soft=True)
        scratch = self._fit_student(X, y_index, None, rng, soft=False)
        agree = self._logits(self.student_, X).argmax(1) == probs[: len(X)].argmax(1)
        self.fidelity_ = float(np.mean(agree))
        if eval_set is not None:
            X_eval, y_eval = validate_data(self, *eval_set, reset=False)
        else:
            X_eval, y_eval = X, y
        teacher_pred = self.classes_[self._teacher_proba(X_eval).argmax(1)]
        self.teacher_score_ = float(np.mean(teacher_pred == y_eval))
        scratch_pred = self.classes_[self._logits(scratch, X_eval, 1.0).argmax(1)]
        self.scratch_score_ = float(np.mean(scratch_pred == y_eval))
        self.student_score_ = float(np.mean(self.predict(X_eval) == y_eval))
        return self

    def predict_proba(self, X) -> np.ndarray:
        """(N, K) probabilities of the distilled student, columns in ``classes_`` order."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        return _softmax(self._logits(self.student_, X))

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self)
        return self.classes_[self.predict_proba(X).argmax(1)]

    # -- teacher ---------------------------------------------------------------------------

    def _fitted_teacher(self, X, y, rng) -> Any:
        teacher = self.teacher
        if teacher is None:
            from sklearn.ensemble import GradientBoostingClassifier

            teacher = GradientBoostingClassifier()
        if not callable(getattr(teacher, "predict_proba", None)):
            raise ValueError(f"the teacher {type(teacher).__name__} has no predict_proba")
        try:
            check_is_fitted(teacher)
            return teacher
        except NotFittedError:
            return _seeded(clone(teacher), rng).fit(X, y)

    def _teacher_proba(self, X) -> np.ndarray:
        """Teacher probabilities with columns in ``classes_`` order (a pre-fitted teacher may
        know more classes: those columns are dropped and the rows renormalised)."""
        known = list(self.teacher_.classes_)
        missing = [c for c in self.classes_ if c not in known]
        if missing:
            raise ValueError(f"the teacher was fitted without the classes {missing[:5]}")
        proba = np.asarray(self.teacher_.predict_proba(X), dtype=np.float64)
        proba = proba[:, [known.index(c) for c in self.classes_]]
        return proba / np.maximum(proba.sum(1, keepdims=True), 1e-12)

    def _transfer_set(self, X, rng) -> np.ndarray:
        if self.transfer == "train":
            return X
        import torch

        from kdlens.data.transforms import Normalizer

        x = torch.tensor(X, dtype=torch.float32)
        copies = augmented_copies(x, self.n_copies, 1, Normalizer.fit(x), int(rng.randint(2**31)))
        return np.concatenate([X, copies.numpy().astype(X.dtype)])

    # -- student ---------------------------------------------------------------------------

    def _is_torch(self) -> bool:
        return isinstance(self.student, str)

    def _fit_student(self, X, y_index, probs, rng, soft: bool) -> Any:
        if self._is_torch():
            return self._fit_torch(X, y_index, probs, rng, soft)
        student = self.student if self.student is not None else SoftTargetTree()
        if not hasattr(student, "fit") or not callable(getattr(student, "predict_proba", None)):
            raise ValueError(
                f"the student must be a classifier with predict_proba or a kdlens model name, "
                f"not {type(student).__name__}"
            )
        student = _seeded(clone(student), rng)
        if not soft:
            return student.fit(X, y_index)
        if not has_fit_parameter(student, "sample_weight"):
            raise ValueError(
                f"the student {type(student).__name__} takes no sample_weight, which soft targets need"
            )
        # As much total weight as the labelled data: copies must not weaken regularisation.
        weight = np.full(len(X), len(y_index) / len(X))
        soft = SoftTargetClassifier(student, self.temperature).fit(X, probs, sample_weight=weight)
        return soft.estimator_  # the student itself, fitted on the teacher's weighted rows

    def _fit_torch(self, X, y_index, probs, rng, soft: bool) -> Any:
        import torch

        from kdlens.config import TrainConfig
        from kdlens.data.loader import BatchLoader
        from kdlens.distill import Distiller, create_distiller
        from kdlens.models import create_model
        from kdlens.models.logits_teacher import LogitsTeacher
        from kdlens.train import fit

        x = torch.tensor(X, dtype=torch.float32)
        n = len(y_index)
        labels = np.asarray(y_index) if not soft else np.concatenate([y_index, probs[n:].argmax(1)])
        y = torch.as_tensor(labels, dtype=torch.long)
        seed = int(rng.randint(2**31))
        cfg = TrainConfig(
            epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, checkpoint_every=0
        )
        K = len(self.classes_)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = create_model(self.student, (x.shape[1],), K, **(self.student_args or {}))
            if soft:
                teacher_logits = torch.as_tensor(
                    np.log(np.maximum(probs, 1e-12)), dtype=torch.float32
                )
                distiller = create_distiller(
                    "kd",
                    model,
                    LogitsTeacher(teacher_logits, "the teacher's probabilities"),
                    temperature=self.temperature,
                    alpha=self.alpha,
                )
                # The loader yields positions in x, which index the cached rows directly.
                distiller.set_teacher_cache(teacher_logits)
            else:
                distiller = Distiller(model)
            train = BatchLoader(x, y, self.normalizer_, self.batch_size, shuffle=True, seed=seed)
            val = BatchLoader(x[:n], y[:n], self.normalizer_, 1024)
            fit(distiller, train, val, cfg)
        return model.eval()

    # -- shared ----------------------------------------------------------------------------

    def _logits(self, model, X, temperature: float | None = None) -> np.ndarray:
        """(N, K) logits of a student; a scikit-learn student fitted to softmax(z / T) gives
        T log q = z + const, the teacher's scale (``temperature``: T, default ours)."""
        if self._is_torch():
            import torch

            with torch.no_grad():
                x = self.normalizer_(torch.tensor(X, dtype=torch.float32))
                return model(x).double().numpy()
        proba = np.full((len(X), len(self.classes_)), 1e-12)
        proba[:, np.asarray(model.classes_, dtype=int)] = np.maximum(model.predict_proba(X), 1e-12)
        return (self.temperature if temperature is None else temperature) * np.log(proba)


def _seeded(estimator: Any, rng: np.random.RandomState) -> Any:
    """Give a clone whose ``random_state`` is None a seed drawn from ours (as sklearn's
    ensembles do), so ``random_state`` makes the whole fit reproducible."""
    params = estimator.get_params(deep=False)
    if "random_state" in params and params["random_state"] is None:
        estimator.set_params(random_state=int(rng.randint(2**31)))
    return estimator


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)
