"""Optional libraries, imported when a model name needs them, with the extra that installs them."""

from __future__ import annotations

import importlib
from types import ModuleType

from kdlens.errors import ConfigError


def import_optional(module: str, extra: str, needed_by: str) -> ModuleType:
    """``import module``, or one line saying which kdlens extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"{needed_by} needs {module.split('.')[0]}: pip install 'kdlens[{extra}]'"
        ) from None
