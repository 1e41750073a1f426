"""Teachers that come complete (loaded, not trained): what they cannot do, and a check that they
get the input they expect before any student learns from them.

A teacher known only by its saved outputs (``logits:``) answers for the un-augmented examples of
the run's own dataset, looked up by dataset index: augmented or mixed inputs and transfer sets
from other data are refused, and so are methods that need the teacher's features.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from kdlens.config import RunConfig
from kdlens.data import is_augmenting
from kdlens.distill import DISTILLERS, compute_logits
from kdlens.errors import ConfigError, KdlensError
from kdlens.models.logits_teacher import LogitsTeacher
from kdlens.models.preprocess import Preprocess, unwrap
from kdlens.models.sklearn_models import SklearnTeacher
from kdlens.run.build import is_differentiable, source_of
from kdlens.run.inputs import describe_augment

WEAK = 1.5  # a loaded teacher below WEAK x chance on the validation split is refused


class WeakTeacherError(KdlensError):
    """A loaded teacher scores near chance: most likely it is fed inputs it does not expect."""


def check_teacher_use(config: RunConfig, teacher: nn.Module) -> None:
    """Refuse, in one line, what a teacher without inputs or without layers cannot do."""
    name = f"{source_of(config.teacher.model)}:"
    method = config.distill.method
    if not is_differentiable(teacher) and not getattr(
        DISTILLERS.get(method), "accepts_cache", True
    ):
        raise ConfigError(
            f"distill.method {method!r} needs the teacher's features; a {name} teacher has only "
            "its outputs (use kd, dkd or another logit method)"
        )
    if not isinstance(unwrap(teacher), LogitsTeacher):
        return
    readable = config.readable
    sections = [("student.train", config.student.train)]
    if "soft_tree" in [*readable.students, *readable.sweeps]:
        sections.append(("readable.soft_tree.train", readable.soft_tree.train))
    for path, train in sections:
        if is_augmenting(train.augment):
            raise ConfigError(
                f"{path}.augment ({describe_augment(train.augment)}): a logits: teacher has "
                "answers only for the un-augmented examples of its dataset; set shift 0, flip "
                "false and mixup 0"
            )
    surrogates = [k for k in [*readable.students, *readable.sweeps] if k != "soft_tree"]
    if readable.transfer == "augmented" and surrogates:
        raise ConfigError(
            "readable.transfer: a logits: teacher cannot label augmented copies; use 'train'"
        )
    if config.distill.transfer.dataset:
        raise ConfigError(
            f"distill.transfer.dataset {config.distill.transfer.dataset!r}: a logits: teacher has "
            "answers only for the examples of its own dataset"
        )


def preprocessing_of(teacher: nn.Module) -> dict[str, Any] | None:
    """What the teacher is fed, as saved in metrics.json (None: saved outputs, no input)."""
    if isinstance(teacher, Preprocess):
        return teacher.resolved
    if isinstance(teacher, LogitsTeacher):
        return None
    if isinstance(teacher, SklearnTeacher):
        return {"normalize": "none", "mean": None, "std": None, "resize": None}
    return {"normalize": "fit", "resize": None}


def check_loaded_teacher(ctx, teacher: nn.Module) -> dict[str, Any]:
    """The loaded teacher's validation accuracy and preprocessing, before any student learns
    from it; below WEAK x chance a :class:`WeakTeacherError` (unless ``teacher.accept_weak``)."""
    spec = ctx.config.teacher
    loader = ctx.eval_loader("val")
    logits = compute_logits(teacher, loader)  # (N, K): evaluate/ sits above run/, so by hand
    acc = float((logits.argmax(1) == loader.y).float().mean())
    k = ctx.dataset.num_classes
    preprocess = preprocessing_of(teacher)
    if ctx.dataset.kind == "text":  # token ids of its own tokenizer, never standardised
        preprocess = {"normalize": "none", "resize": None, "tokenizer": spec.model}
    found = {"loaded_val_accuracy": acc, "chance": 1.0 / k, "preprocess": preprocess}
    if acc >= WEAK / k or spec.accept_weak:
        return found
    inner = unwrap(teacher)
    if isinstance(inner, LogitsTeacher):
        hint = "check that its rows follow the dataset's order, one per example"
    elif isinstance(inner, SklearnTeacher):
        hint = "check that it was fitted on these features, encoded as kdlens encodes them"
    else:
        normalize = (preprocessing_of(teacher) or {}).get("normalize", "fit")
        hint = (
            f"it may expect other inputs than it gets (normalize: {normalize}); set "
            "teacher.preprocess (normalize: none | imagenet | {mean, std}, resize, from_model)"
        )
    raise WeakTeacherError(
        f"the loaded teacher {spec.model} scores {100 * acc:.1f}% on the validation split, below "
        f"{WEAK:g}x chance ({100 * WEAK / k:.1f}% for {k} classes): {hint}; "
        "--set teacher.accept_weak=true goes on anyway"
    )
