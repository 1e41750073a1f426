"""Models by name: ``create_model(name, input_shape, num_classes, **kw)``, ``list_models()``.

Besides registered names, a ``prefix:target`` name is built by the source that owns the prefix
(``SOURCES``): ``torchvision:resnet18``, ``timm:NAME``, ``hf:FOLDER``, ``sklearn:FILE``,
``logits:FILE``, ``import:module:function``. Each source lives in its own module, imported only
when a name uses it, so optional libraries (timm, transformers, skops) load lazily.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass

from torch import nn

from kdlens.errors import ConfigError
from kdlens.registry import Registry

MODELS: Registry[nn.Module] = Registry("model")
register_model = MODELS.register


@dataclass(frozen=True)
class ModelSource:
    """Builds ``prefix:<target>`` names with ``module.function(target, input_shape, num_classes, **kw)``."""

    usage: str
    help: str
    module: str
    function: str

    def factory(self):
        return getattr(importlib.import_module(self.module), self.function)


SOURCES: dict[str, ModelSource] = {
    "torchvision": ModelSource(
        "torchvision:<name>",
        "Any torchvision classifier, e.g. torchvision:resnet18; model_args.weights names a file or enum.",
        "kdlens.models.torchvision_models",
        "torchvision_model",
    ),
    "timm": ModelSource(
        "timm:<name>",
        "Any timm model, e.g. timm:resnet18; model_args.pretrained: true reads the local cache.",
        "kdlens.models.timm_models",
        "timm_model",
    ),
    "hf": ModelSource(
        "hf:<folder>",
        "A transformers image or text classifier saved with save_pretrained.",
        "kdlens.models.hf_models",
        "hf_model",
    ),
    "sklearn": ModelSource(
        "sklearn:<file>",
        "A fitted scikit-learn classifier as a teacher (.skops; .joblib/.pkl with trust_pickle).",
        "kdlens.models.sklearn_models",
        "sklearn_model",
    ),
    "logits": ModelSource(
        "logits:<file>",
        "A teacher known only by its outputs: (N, K) logits or probabilities in .npy/.safetensors.",
        "kdlens.models.logits_teacher",
        "logits_model",
    ),
    "import": ModelSource(
        "import:<module>:<function>",
        "Your factory f(input_shape, num_classes, **kw) -> nn.Module, found from the current folder.",
        "kdlens.models.imported",
        "imported_model",
    ),
}

# What `kdlens list` shows beside the registered names.
PREFIXES = {s.usage: s.help for s in SOURCES.values()}


def list_models(pattern: str = "*") -> list[str]:
    return MODELS.names(pattern)


def create_model(name: str, input_shape: tuple[int, ...], num_classes: int, **kwargs) -> nn.Module:
    """Build a model for inputs of ``input_shape`` (without batch) and ``num_classes`` outputs."""
    prefix, sep, target = name.partition(":")
    if sep:
        if prefix not in SOURCES:
            raise ConfigError(
                f"model {name!r}: unknown source {prefix + ':'!r} "
                f"(known: {', '.join(s + ':' for s in SOURCES)})"
            )
        if not target:
            raise ConfigError(f"model {name!r}: expected {SOURCES[prefix].usage}")
        factory = SOURCES[prefix].factory()
        check_kwargs(name, factory, kwargs)
        return factory(target, tuple(input_shape), num_classes, **kwargs)
    factory = MODELS.get(name)
    check_kwargs(name, factory, kwargs)
    return factory(input_shape=tuple(input_shape), num_classes=num_classes, **kwargs)


def check_kwargs(name: str, factory, kwargs: dict) -> None:
    """Every key of ``kwargs`` (``model_args``) is an argument ``factory`` takes."""
    params = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    allowed = [p for p in params if p not in ("target", "input_shape", "num_classes")]
    for key in kwargs:
        if key not in allowed:
            raise ConfigError(
                f"model {name!r} has no argument {key!r} (it takes: {', '.join(allowed)})"
            )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
