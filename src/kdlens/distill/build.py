"""Build the configured Distiller: method options, schedules and per-example weighting."""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from kdlens.config import GLOBAL_DISTILL_OPTIONS, DistillConfig
from kdlens.distill.distiller import DISTILLERS, Distiller, has_own_loss
from kdlens.errors import ConfigError

# Filled by the pipeline, never by a user's options.
_RESERVED = ("self", "student", "teacher", "input_shape", "num_examples")


def method_options(method: str) -> dict[str, Any]:
    """The options a method accepts, with their defaults (``inspect.Parameter.empty`` if none)."""
    params = inspect.signature(DISTILLERS.get(method)).parameters
    return {n: p.default for n, p in params.items() if n not in _RESERVED}


def _check_value(where: str, name: str, value: Any, default: Any) -> None:
    numeric = isinstance(default, (int, float)) and not isinstance(default, bool)
    if numeric and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ConfigError(f"{where}.{name}: expected a number (got {value!r})")
    if isinstance(default, int) and not isinstance(default, bool) and not isinstance(value, int):
        raise ConfigError(f"{where}.{name}: expected an integer (got {value!r})")


def check_options(config: DistillConfig) -> None:
    """Every ``distill.options`` key is a method and every option one that method takes."""
    for method, options in config.options.items():
        if method in GLOBAL_DISTILL_OPTIONS:
            continue  # validated by DistillConfig: a boolean that applies to every method
        if method not in DISTILLERS:
            raise ConfigError(f"distill.options: {DISTILLERS.unknown_message(method)}")
        known = method_options(method)
        for name, value in options.items():
            where = f"distill.options.{method}"
            if name in GLOBAL_DISTILL_OPTIONS:
                raise ConfigError(
                    f"{where}.{name}: applies to every method; set distill.options.{name}"
                )
            if name not in known or name in ("temperature", "alpha", "example_weighting"):
                choices = [
                    k for k in known if k not in ("temperature", "alpha", "example_weighting")
                ]
                raise ConfigError(
                    f"{where}: unknown option {name!r} (known: {', '.join(choices) or 'none'})"
                )
            _check_value(where, name, value, known[name])


def check_logit_standardization(config: DistillConfig, factory, student: nn.Module) -> None:
    """Logit standardisation needs a soft term on the logits of a student kdlens can see."""
    where, method = "distill.options.logit_standardization", config.method
    if not getattr(factory, "supports_logit_standardization", False):
        raise ConfigError(f"{where}: method {method!r} has no soft term on logits to standardise")
    if has_own_loss(student):
        raise ConfigError(
            f"{where}: method {method!r} cannot standardise the logits of "
            f"{type(student).__name__}, which brings its own loss (loss_parts)"
        )
    alpha_end = (
        config.alpha if config.alpha_schedule.kind == "constant" else config.alpha_schedule.end
    )
    if config.alpha == 1 and alpha_end == 1 and "alpha" in method_options(method):
        raise ConfigError(
            f"{where}: method {method!r} has no soft term on logits when distill.alpha is 1"
        )


def build_distiller(
    config: DistillConfig,
    student: nn.Module,
    teacher: nn.Module,
    input_shape: tuple[int, ...],
    num_examples: int | None = None,
) -> Distiller:
    """The Distiller for ``config.method``, with its options, weighting and schedules applied.

    ``num_examples`` is the size of the training tensors ``batch.index`` points into (CRD's
    memory bank).
    """
    check_options(config)
    method = config.method
    known = method_options(method)
    kwargs: dict[str, Any] = {"temperature": config.temperature, "alpha": config.alpha}
    kwargs.update(config.options_of(method))
    if config.example_weighting != "none":
        if "example_weighting" not in known:
            raise ConfigError(f"distill.example_weighting: method {method!r} does not support it")
        kwargs["example_weighting"] = config.example_weighting
    kwargs = {k: v for k, v in kwargs.items() if k in known}
    factory = DISTILLERS.get(method)
    if has_own_loss(student) and not getattr(factory, "honours_own_loss", False):
        raise ConfigError(
            f"distill.method {method!r} cannot train {type(student).__name__}, which brings its own "
            "loss (loss_parts); use method 'kd'"
        )
    if config.logit_standardization:
        check_logit_standardization(config, factory, student)
    if "input_shape" in inspect.signature(factory).parameters:
        kwargs["input_shape"] = tuple(input_shape)
    if "num_examples" in inspect.signature(factory).parameters:
        kwargs["num_examples"] = num_examples
    distiller = factory(student=student, teacher=teacher, **kwargs)
    if config.logit_standardization:
        distiller.logit_standardization = True
    for attribute, schedule in (
        ("alpha", config.alpha_schedule),
        ("temperature", config.temperature_schedule),
    ):
        if schedule.kind == "constant":
            continue
        if schedule.end is None:
            raise ConfigError(f"distill.{attribute}_schedule: a {schedule.kind} schedule needs end")
        if attribute not in known:
            raise ConfigError(f"distill.{attribute}_schedule: method {method!r} has no {attribute}")
        distiller.set_schedule(attribute, schedule.kind, schedule.end)
    return distiller
