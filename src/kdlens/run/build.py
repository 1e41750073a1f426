"""Models of a run: built for its data, fed what they expect, and said in a record's ``spec``.

A config names a model (``model``, ``model_args``, ``preprocess``); what only the run knows is
added here (a scikit-learn teacher's class order and the run's normaliser, a logits teacher's row
count) and the model is wrapped in its preprocessing (:mod:`kdlens.models.preprocess`). The
record's ``spec`` keeps the resolved preprocessing, so :func:`build_from_spec` rebuilds the same
module from a run folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from kdlens.config import ModelSpec
from kdlens.data import Dataset, Normalizer
from kdlens.errors import ConfigError
from kdlens.models import create_model
from kdlens.models.logits_teacher import LogitsTeacher
from kdlens.models.preprocess import Preprocess, resolve_preprocess, wrap
from kdlens.models.sklearn_models import SklearnTeacher

# Sources whose models are complete as they are loaded (the teacher stage trains nothing) and
# which take no preprocessing: they answer for the data's own rows or raw features.
FIXED_SOURCES = ("sklearn", "logits")


def source_of(model_name: str) -> str:
    """``timm`` for ``timm:resnet18``; the registered name (``cnn``) otherwise."""
    return model_name.split(":", 1)[0] if ":" in model_name else model_name


def run_arguments(model_name: str, dataset: Dataset, normalizer: Normalizer) -> dict[str, Any]:
    """Arguments the run passes to some sources beside the config's ``model_args``."""
    source = source_of(model_name)
    if source == "sklearn":  # raw features, columns in the data's class order
        return {"normalizer": normalizer, "class_names": list(dataset.class_names)}
    if source == "logits":  # one row per example of the dataset
        return {"num_examples": len(dataset)}
    return {}


def create_bare(
    model_name: str,
    model_args: dict[str, Any],
    dataset: Dataset,
    normalizer: Normalizer,
    resize: Sequence[int] | None = None,
) -> nn.Module:
    """The model without its preprocessing (a checkpoint is loaded into this one), built for
    the data's input shape, or for images resized to ``resize`` on the way in."""
    extra = run_arguments(model_name, dataset, normalizer)
    shape = dataset.input_shape
    if resize is not None and len(shape) == 3:
        shape = (shape[0], *resize)
    return create_model(model_name, shape, dataset.num_classes, **model_args, **extra)


def with_preprocess(
    model: nn.Module, spec: ModelSpec, role: str, dataset: Dataset, normalizer: Normalizer
) -> nn.Module:
    """``model`` wrapped in ``spec.preprocess`` (itself when the model takes the run's input)."""
    where = f"{role}.preprocess"
    if not spec.preprocess.is_identity:
        source = source_of(spec.model)
        if source in FIXED_SOURCES:
            why = (
                "it gets the raw features it was fitted on"
                if source == "sklearn"
                else "it answers by dataset row"
            )
            raise ConfigError(f"{where} does not apply to a {source}: model ({why})")
        if dataset.kind == "text":
            raise ConfigError(f"{where} does not apply to text: models get token ids")
    resolved = resolve_preprocess(
        spec.preprocess, model, dataset.input_shape, normalizer.mean, normalizer.std, where
    )
    return wrap(model, resolved, normalizer.mean, normalizer.std)


def architecture(spec: ModelSpec, model: nn.Module) -> dict[str, Any]:
    """A record's ``spec``: what rebuilds ``model`` (built from ``spec``) in a reopened run."""
    out: dict[str, Any] = {"model": spec.model, "model_args": dict(spec.model_args)}
    if isinstance(model, Preprocess):
        out["preprocess"] = model.resolved
    return out


def build_from_spec(spec: dict[str, Any], dataset: Dataset, normalizer: Normalizer) -> nn.Module:
    """A fresh model of a record's ``spec`` (see :func:`architecture`)."""
    resolved = spec.get("preprocess")
    resize = resolved.get("resize") if resolved else None
    model = create_bare(spec["model"], spec.get("model_args", {}), dataset, normalizer, resize)
    return wrap(model, resolved, normalizer.mean, normalizer.std)


def is_loaded(spec: ModelSpec) -> bool:
    """Whether the teacher of ``spec`` comes complete (the teacher stage loads it, trains nothing).

    A checkpoint, a scikit-learn estimator, saved logits, or a transformers folder used with its
    own classifier. A timm:/torchvision: network with pretrained weights gets a new classifier
    for the data's classes, so it is trained (fine-tuned) like any other teacher.
    """
    source = source_of(spec.model)
    if spec.checkpoint or source in FIXED_SOURCES:
        return True
    args = spec.model_args
    return source == "hf" and bool(args.get("pretrained", True)) and not args.get("reset_head")


def is_differentiable(model: nn.Module) -> bool:
    """Gradient explanations need a torch graph: not saved logits, not a scikit-learn model."""
    inner = model.model if isinstance(model, Preprocess) else model
    return not isinstance(inner, (LogitsTeacher, SklearnTeacher))


def runs_on_inputs(model: nn.Module) -> bool:
    """Saved logits answer only by row: they cannot be timed or exported."""
    inner = model.model if isinstance(model, Preprocess) else model
    return not isinstance(inner, LogitsTeacher)
