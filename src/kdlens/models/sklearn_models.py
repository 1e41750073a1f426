"""``sklearn:<file>``: a fitted scikit-learn classifier as a frozen teacher (log predict_proba).

Loading is safe by default. A ``.skops`` file is read with ``skops.io``, which builds only the
types it trusts; kdlens also trusts scikit-learn's own types (e.g. ``sklearn.tree._tree.Tree``,
which every tree ensemble holds) and refuses anything else unless named in ``trusted``. A
``.joblib`` / ``.pkl`` file is a pickle, which can run any code while it loads: it is read only
with ``trust_pickle=True`` (the CLI's ``--trust-pickle``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from kdlens.errors import CheckpointError, KdlensError, first_line
from kdlens.models.optional import import_optional

if TYPE_CHECKING:
    from kdlens.data.transforms import Normalizer

TRUSTED_PREFIXES = ("sklearn.",)  # scikit-learn's own types; skops trusts numpy and builtins
PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")


class SklearnTeacher(nn.Module):
    """A fitted scikit-learn classifier as a frozen torch teacher: logits = log predict_proba.

    kdlens feeds models standardised input; pass the run's ``normalizer`` and the estimator sees
    the raw features it was fitted on. Usable with any Distiller (e.g. a soft tree distilled from
    gradient boosting); it has no parameters and no gradient. With ``class_names`` (the data's),
    the estimator's columns are reordered to the data's classes by name.
    """

    def __init__(
        self,
        estimator: Any,
        normalizer: Normalizer | None = None,
        class_names: Sequence[str] | None = None,
    ):
        super().__init__()
        if not callable(getattr(estimator, "predict_proba", None)):
            raise KdlensError(f"{type(estimator).__name__} has no predict_proba: it cannot teach")
        self.estimator = estimator
        self.normalizer = normalizer
        self.num_classes = len(estimator.classes_)
        self.columns = class_columns(estimator.classes_, class_names)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raw = x if self.normalizer is None else x * self.normalizer.std + self.normalizer.mean
        with warnings.catch_warnings():
            # Fitted on a DataFrame, sklearn warns on every array; the columns are the same.
            warnings.filterwarnings("ignore", message="X does not have valid feature names")
            proba = self.estimator.predict_proba(raw.flatten(1).detach().cpu().numpy())
        proba = np.asarray(proba)[:, self.columns]
        return torch.as_tensor(np.log(np.maximum(proba, 1e-12)), dtype=torch.float32).to(x.device)


def class_columns(classes: Sequence[Any], class_names: Sequence[str] | None) -> list[int]:
    """Column of ``predict_proba`` for each of the data's classes.

    An estimator fitted on the data's class indices 0..K-1, or given no names, keeps its order;
    one fitted on labels (strings) is matched to the data's class names.
    """
    if class_names is None or list(classes) == list(range(len(classes))):
        return list(range(len(classes)))
    by_name = {str(c): j for j, c in enumerate(classes)}
    if sorted(by_name) != sorted(map(str, class_names)):
        raise KdlensError(
            f"the estimator's classes {list(by_name)[:6]} are not the data's "
            f"{list(class_names)[:6]}"
        )
    return [by_name[str(n)] for n in class_names]


def load_estimator(
    path: str | Path, trust_pickle: bool = False, trusted: Sequence[str] = ()
) -> Any:
    """A fitted classifier with ``predict_proba`` from ``path``; anything else is one line."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"estimator file {p} not found")
    if p.suffix == ".skops":
        estimator = _load_skops(p, trusted)
    elif p.suffix in PICKLE_SUFFIXES:
        if not trust_pickle:
            raise CheckpointError(
                f"{p} is a pickle, and loading one runs any code it holds: pass --trust-pickle "
                "(model_args.trust_pickle: true) if you made it, or save it with skops.io.dump"
            )
        import joblib

        try:
            estimator = joblib.load(p)  # reads plain pickles too
        except Exception as e:  # a corrupt pickle fails in many ways; all mean "not loadable"
            raise CheckpointError(f"{p} could not be unpickled ({first_line(e)})") from None
    else:
        raise CheckpointError(
            f"{p}: an estimator file must end in .skops, or .joblib / .pkl with --trust-pickle"
        )
    check_fitted_classifier(estimator, p)
    return estimator


def _load_skops(path: Path, trusted: Sequence[str]) -> Any:
    sio = import_optional("skops.io", "sklearn", f"loading {path}")
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as e:  # not a zip, no schema: skops raises several types
        raise CheckpointError(f"{path} is not a readable skops file ({first_line(e)})") from None
    refused = [t for t in untrusted if not t.startswith(TRUSTED_PREFIXES) and t not in trusted]
    if refused:
        raise CheckpointError(
            f"{path} was refused: it holds types outside scikit-learn ({', '.join(refused[:4])}); "
            "list them in model_args.trusted if you trust them"
        )
    try:
        return sio.load(path, trusted=untrusted)
    except Exception as e:
        raise CheckpointError(f"{path} could not be loaded ({first_line(e)})") from None


def check_fitted_classifier(estimator: Any, path: Path | str) -> None:
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    if not callable(getattr(estimator, "predict_proba", None)) or not hasattr(estimator, "fit"):
        raise CheckpointError(
            f"{path} does not hold a scikit-learn classifier with predict_proba "
            f"(it holds a {type(estimator).__name__})"
        )
    try:
        check_is_fitted(estimator)
    except NotFittedError:
        raise CheckpointError(
            f"{path} holds a {type(estimator).__name__} that was never fitted"
        ) from None
    except TypeError as e:  # check_is_fitted refuses objects that are not estimators
        raise CheckpointError(
            f"{path} does not hold a fitted estimator ({first_line(e)})"
        ) from None


def sklearn_model(
    target: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    trust_pickle: bool = False,
    trusted: Sequence[str] = (),
    normalizer: Normalizer | None = None,
    class_names: Sequence[str] | None = None,
) -> SklearnTeacher:
    """The estimator in file ``target`` as a teacher for data of ``input_shape``.

    ``normalizer`` (the run's) and ``class_names`` (the data's) are passed by the run, not the
    config: the teacher undoes standardisation and orders its columns as the data's classes.
    """
    estimator = load_estimator(target, trust_pickle, trusted)
    features = math.prod(input_shape)
    fitted_on = getattr(estimator, "n_features_in_", features)
    if fitted_on != features:
        raise CheckpointError(
            f"{target} was fitted on {fitted_on} features, the data has {features}"
        )
    if len(estimator.classes_) != num_classes:
        raise CheckpointError(
            f"{target} predicts {len(estimator.classes_)} classes but the data has {num_classes}"
        )
    try:
        return SklearnTeacher(estimator, normalizer, class_names)
    except KdlensError as e:
        raise CheckpointError(f"{target}: {e}") from None
