"""Features by module name, from forward hooks: no model changes what its ``forward`` returns.

A name is a key of ``model.named_modules()`` (``"features.4"``, ``"layer3"``); ``"name:input"``
captures what flows *into* that module instead (e.g. the penultimate embedding entering the
classifier).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from kdlens.errors import ConfigError

INPUT_SUFFIX = ":input"


def _split(name: str) -> tuple[str, bool]:
    if name.endswith(INPUT_SUFFIX):
        return name[: -len(INPUT_SUFFIX)], True
    return name, False


def check_module_names(model: nn.Module, names: list[str], where: str) -> None:
    """Raise a one-line ConfigError for a name that is not a module of ``model``."""
    modules = dict(model.named_modules())
    for full in names:
        name, _ = _split(full)
        if name not in modules or name == "":
            close = difflib.get_close_matches(name, [n for n in modules if n], n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise ConfigError(f"{where}: the model has no module {name!r}{hint}")


@contextmanager
def capture(model: nn.Module, names: list[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Within the block, each forward of ``model`` stores the named modules' outputs (or inputs).

    The hooks are removed on exit, so a model handed on (saved, exported, explained) carries none.
    """
    modules = dict(model.named_modules())
    store: dict[str, torch.Tensor] = {}
    handles = []
    for full in names:
        name, want_input = _split(full)
        module = modules[name]
        if want_input:
            # Before the module runs: an in-place module (ReLU(inplace=True)) overwrites its input,
            # so that input is cloned while it still holds the pre-activation.
            inplace = getattr(module, "inplace", False)

            def pre_hook(_module, inputs, key=full, inplace=inplace):
                store[key] = inputs[0].clone() if inplace else inputs[0]

            handles.append(module.register_forward_pre_hook(pre_hook))
        else:

            def hook(_module, _inputs, output, key=full):
                store[key] = output

            handles.append(module.register_forward_hook(hook))
    try:
        yield store
    finally:
        for h in handles:
            h.remove()


def last_linear_input(model: nn.Module) -> str:
    """``"<classifier>:input"``: the embedding entering the model's last ``nn.Linear``."""
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError("the model has no nn.Linear layer; name the feature layer explicitly")
    return linears[-1] + INPUT_SUFFIX
