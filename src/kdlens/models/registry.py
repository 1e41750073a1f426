"""Models by name: ``create_model(name, input_shape, num_classes, **kw)``, ``list_models()``.

Besides registered names, ``torchvision:<name>`` builds any torchvision classifier and
``import:package.module:function`` calls a user's factory with the same arguments.
"""

from __future__ import annotations

import importlib
import inspect

from torch import nn

from kdlens.errors import ConfigError
from kdlens.registry import Registry

MODELS: Registry[nn.Module] = Registry("model")
register_model = MODELS.register

PREFIXES = {
    "torchvision:<name>": "any torchvision classifier, e.g. torchvision:resnet18",
    "import:<module>:<function>": "your factory f(input_shape, num_classes, **kw) -> nn.Module",
}


def list_models(pattern: str = "*") -> list[str]:
    return MODELS.names(pattern)


def create_model(name: str, input_shape: tuple[int, ...], num_classes: int, **kwargs) -> nn.Module:
    """Build a model for inputs of ``input_shape`` (without batch) and ``num_classes`` outputs."""
    if name.startswith("torchvision:"):
        from kdlens.models.external import torchvision_model

        return torchvision_model(name.split(":", 1)[1], input_shape, num_classes, **kwargs)
    if name.startswith("import:"):
        factory = _import_factory(name)
    else:
        factory = MODELS.get(name)
    _check_kwargs(name, factory, kwargs)
    return factory(input_shape=tuple(input_shape), num_classes=num_classes, **kwargs)


def _import_factory(name: str):
    spec = name.split(":", 1)[1]
    module_name, _, func_name = spec.partition(":")
    if not module_name or not func_name:
        raise ConfigError(f"model {name!r}: expected import:package.module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"model {name!r}: cannot import {module_name!r} ({e})") from None
    factory = getattr(module, func_name, None)
    if not callable(factory):
        raise ConfigError(f"model {name!r}: {module_name} has no function {func_name!r}")
    return factory


def _check_kwargs(name: str, factory, kwargs: dict) -> None:
    params = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    allowed = [p for p in params if p not in ("input_shape", "num_classes")]
    for key in kwargs:
        if key not in params:
            raise ConfigError(
                f"model {name!r} has no argument {key!r} (it takes: {', '.join(allowed)})"
            )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
