"""Students a person can read: scikit-learn surrogates as estimators fitted to a teacher's soft
targets, the transfer set they learn from, complexity curves, and their figures
(``kdlens.readable.figures``, matplotlib: drawn from the JSON the readable stage saves). The soft
decision tree itself is a model: ``kdlens.models.soft_tree``.
"""

from kdlens.readable.curves import complexity_curve, parameter_label, surrogate_fits
from kdlens.readable.describe import (
    dataset_header,
    describe_logistic,
    describe_soft_tree,
    describe_tree,
)
from kdlens.readable.estimators import (
    SoftTargetClassifier,
    SoftTargetEBM,
    SoftTargetLogistic,
    SoftTargetTree,
    create_surrogate,
    ebm_available,
    list_surrogates,
    register_surrogate,
)
from kdlens.readable.soft_targets import soft_label_rows, soft_targets_np
from kdlens.readable.teachers import SklearnTeacher, teacher_probabilities
from kdlens.readable.transfer import TransferSet, augmented_copies, features_for, fit_pair

__all__ = [
    "SklearnTeacher",
    "SoftTargetClassifier",
    "SoftTargetEBM",
    "SoftTargetLogistic",
    "SoftTargetTree",
    "TransferSet",
    "augmented_copies",
    "complexity_curve",
    "create_surrogate",
    "dataset_header",
    "describe_logistic",
    "describe_soft_tree",
    "describe_tree",
    "ebm_available",
    "features_for",
    "fit_pair",
    "list_surrogates",
    "parameter_label",
    "register_surrogate",
    "soft_label_rows",
    "soft_targets_np",
    "surrogate_fits",
    "teacher_probabilities",
]
