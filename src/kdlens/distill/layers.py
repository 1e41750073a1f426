"""Default feature layers, found by one probing forward with a hook on every module.

Feature methods need layer names. Where the user names none, kdlens takes each model's *conv
stages*: for every resolution the feature maps pass through, the last module that outputs a map at
that resolution, pooling layers excluded (``layer1``, ``layer2``, ``layer3`` of a CIFAR ResNet, the
ReLU of each block of the small ``cnn``, ``model.layer1`` ... of a torchvision ResNet). Per stage it
also finds the pre-activation, the input of the ReLU module that produced the stage's output (OFD,
ReviewKD), and the BatchNorm whose affine output feeds that ReLU (OFD's margin).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from kdlens.distill.hooks import INPUT_SUFFIX, last_linear_input
from kdlens.errors import ConfigError

_POOLS = (
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.LPPool2d,
)
# A block's projection shortcut also ends in a BatchNorm; its statistics are not the margin's.
_SHORTCUT_WORDS = ("shortcut", "downsample")


@dataclass(frozen=True)
class Stage:
    name: str  # module whose output ends the stage
    shape: tuple[int, ...]  # (C, H, W)
    pre_relu: str | None  # "<relu>:input": the same map before its ReLU, if a ReLU module made it
    bn: str | None  # the BatchNorm2d feeding that ReLU


@dataclass
class _Call:
    name: str
    module: nn.Module
    output: Any


def _device(model: nn.Module) -> torch.device:
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


@torch.no_grad()
def trace(model: nn.Module, input_shape: tuple[int, ...]) -> list[_Call]:
    """Every module call of one eval-mode forward of two zero inputs, in completion order."""
    calls: list[_Call] = []
    handles = [
        m.register_forward_hook(lambda mod, _i, out, n=name: calls.append(_Call(n, mod, out)))
        for name, m in model.named_modules()
        if name
    ]
    was = model.training
    model.eval()
    try:
        model(torch.zeros(2, *input_shape, device=_device(model)))
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    return calls


def _is_map(out: Any) -> bool:
    return isinstance(out, torch.Tensor) and out.ndim == 4


def _pre_relu(calls: list[_Call], end: int) -> tuple[str | None, str | None]:
    """The ReLU call (at or before ``end``) whose output *is* call ``end``'s, and its BatchNorm."""
    out = calls[end].output
    for i in range(end, -1, -1):
        c = calls[i]
        if isinstance(c.module, nn.ReLU) and c.output is out:
            channels = out.shape[1]
            for j in range(i - 1, -1, -1):
                b = calls[j]
                if (
                    isinstance(b.module, nn.BatchNorm2d)
                    and b.module.num_features == channels
                    and not any(w in b.name for w in _SHORTCUT_WORDS)
                ):
                    return c.name + INPUT_SUFFIX, b.name
            return c.name + INPUT_SUFFIX, None
    return None, None


def conv_stages(model: nn.Module, input_shape: tuple[int, ...]) -> list[Stage]:
    """The model's conv stages, shallow to deep (empty for a model without feature maps)."""
    calls = trace(model, input_shape)
    pooled: set[int] = set()  # outputs of pooling layers, and of containers that return them
    maps: list[int] = []
    for i, c in enumerate(calls):
        if not _is_map(c.output):
            continue
        if isinstance(c.module, _POOLS) or id(c.output) in pooled:
            pooled.add(id(c.output))
            continue
        maps.append(i)
    # Runs of consecutive maps at one resolution; each run's stage is its last outermost module
    # (a whole block, not the conv inside the next block that is about to downsample).
    runs: list[list[int]] = []
    for i in maps:
        if runs and calls[runs[-1][-1]].output.shape[-2:] == calls[i].output.shape[-2:]:
            runs[-1].append(i)
        else:
            runs.append([i])
    stages = []
    for run in runs:
        top = min(calls[i].name.count(".") for i in run)
        i = [i for i in run if calls[i].name.count(".") == top][-1]
        pre, bn = _pre_relu(calls, i)
        stages.append(Stage(calls[i].name, tuple(calls[i].output.shape[1:]), pre, bn))
    return stages


def bn_feeding(
    model: nn.Module, input_shape: tuple[int, ...], layers: list[str]
) -> list[str | None]:
    """Per layer, the BatchNorm2d whose output it is: the layer itself, or, for ``"<relu>:input"``,
    the last one run before that ReLU (projection shortcuts skipped); None if there is none."""
    modules = dict(model.named_modules())
    calls = None
    found: list[str | None] = []
    for layer in layers:
        name = layer.removesuffix(INPUT_SUFFIX)
        if not layer.endswith(INPUT_SUFFIX):
            found.append(layer if isinstance(modules.get(name), nn.BatchNorm2d) else None)
            continue
        if not isinstance(modules.get(name), nn.ReLU):
            found.append(None)
            continue
        calls = calls if calls is not None else trace(model, input_shape)
        last = max((i for i, c in enumerate(calls) if c.name == name), default=None)
        found.append(None if last is None else _pre_relu(calls, last)[1])
    return found


def _as_list(names: str | list[str] | None) -> list[str] | None:
    return [names] if isinstance(names, str) else (list(names) if names is not None else None)


def paired_layers(
    method: str,
    student: nn.Module,
    teacher: nn.Module,
    input_shape: tuple[int, ...],
    student_layers: str | list[str] | None,
    teacher_layers: str | list[str] | None,
    pre_relu: tuple[bool, bool] = (False, False),
) -> tuple[list[str], list[str]]:
    """The (student, teacher) layer names, paired in order: the user's, or the conv stages.

    Default pairs are the deepest ``min(n_student, n_teacher)`` stages of each model; with
    ``pre_relu`` (per model) a stage is taken before its ReLU.
    """
    s, t = _as_list(student_layers), _as_list(teacher_layers)
    where = f"distill.options.{method}"
    if s is not None or t is not None:
        if not s or not t or len(s) != len(t):
            raise ConfigError(
                f"{where}: give teacher_layers and student_layers, two lists of module names of "
                "the same length (paired in order), or neither for the conv stages"
            )
        return s, t
    found = []
    for role, model in (("student", student), ("teacher", teacher)):
        stages = conv_stages(model, input_shape)
        if not stages:
            raise ConfigError(
                f"distill.method {method!r} needs feature maps (C, H, W) and the {role} "
                f"({type(model).__name__}) has none to find; use a conv {role} or name "
                f"{where}.{role}_layers"
            )
        found.append(stages)
    n = min(len(found[0]), len(found[1]))
    names = []
    for role, stages, want_pre in zip(("student", "teacher"), found, pre_relu, strict=True):
        chosen = stages[-n:]
        if want_pre:
            missing = [st.name for st in chosen if st.pre_relu is None]
            if missing:
                raise ConfigError(
                    f"{where}: cannot find the pre-ReLU map of {role} stage {missing[0]!r} (no "
                    f"ReLU module makes its output); name {role}_layers"
                )
            names.append([st.pre_relu for st in chosen])
        else:
            names.append([st.name for st in chosen])
    return names[0], names[1]


def require_maps(method: str, names: list[str], shapes: list[tuple[int, ...]]) -> None:
    """One line for a named layer whose output is not a (C, H, W) feature map."""
    for name, shape in zip(names, shapes, strict=True):
        if len(shape) != 3:
            raise ConfigError(
                f"distill.options.{method}: layer {name!r} gives shape {shape}, not a feature "
                "map (C, H, W)"
            )


def embedding_layer(method: str, role: str, model: nn.Module, option: str) -> str:
    """``"<classifier>:input"``, the embedding entering the model's last ``nn.Linear``; one line
    naming the method and the option to set when the model has none."""
    try:
        return last_linear_input(model)
    except ConfigError:
        raise ConfigError(
            f"distill.method {method!r} takes the {role}'s embedding from the input of its last "
            f"nn.Linear, and {type(model).__name__} has none; name distill.options.{method}.{option}"
        ) from None
