"""``import:module:function``: a user's own factory ``f(input_shape, num_classes, **kw)``."""

from __future__ import annotations

import importlib
import os
import sys

from torch import nn

from kdlens.errors import ConfigError, KdlensError, first_line


def imported_model(
    target: str, input_shape: tuple[int, ...], num_classes: int, **kwargs
) -> nn.Module:
    """Import ``module`` (the current folder first, as ``python -m`` does) and call ``function``.

    Whatever the factory raises, or a return value that is not an ``nn.Module``, becomes one line
    naming the factory.
    """
    from kdlens.models.registry import check_kwargs

    name = f"import:{target}"
    factory = import_factory(name, target)
    check_kwargs(name, factory, kwargs)
    where = f"model {name!r}: the factory {target.replace(':', '.')}"
    try:
        model = factory(input_shape=tuple(input_shape), num_classes=num_classes, **kwargs)
    except KdlensError:
        raise
    except Exception as e:  # a user's code can fail in any way; the user needs one line
        raise ConfigError(f"{where} raised {type(e).__name__}: {first_line(e)}") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"{where} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def import_factory(name: str, target: str):
    module_name, _, func_name = target.partition(":")
    if not module_name or not func_name:
        raise ConfigError(f"model {name!r}: expected import:package.module:function")
    cwd = os.getcwd()
    if cwd not in sys.path:
        # `python -m` and `python script.py` find modules beside the user; `kdlens` (a console
        # script) would not, and `import:my_models:f` with my_models.py right here must work.
        sys.path.insert(0, cwd)
    importlib.invalidate_caches()  # a module written after the last import in this process
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"model {name!r}: cannot import {module_name!r} ({e})") from None
    except Exception as e:  # a module that fails while it runs (SyntaxError, its own raise)
        raise ConfigError(
            f"model {name!r}: importing {module_name!r} raised {type(e).__name__}: {first_line(e)}"
        ) from None
    factory = getattr(module, func_name, None)
    if not callable(factory):
        raise ConfigError(f"model {name!r}: {module_name} has no function {func_name!r}")
    return factory
