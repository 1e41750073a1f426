"""``torchvision:<name>``: torchvision classifiers, adapted to the data's channels and classes.

``model_args.weights`` is either a local file (a state dict, read without running code) or the
name of a torchvision weights enum (``DEFAULT``, ``IMAGENET1K_V1``, ``ResNet18_Weights.IMAGENET1K_V1``)
found in torchvision's cache (``$TORCH_HOME/hub/checkpoints``); kdlens never downloads them.
Pretrained weights keep their features; the classifier is replaced when the class count differs.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from urllib.parse import urlparse

from torch import nn

from kdlens.errors import CheckpointError, ConfigError, first_line
from kdlens.models.checks import require_image
from kdlens.weights import load_weights, read_state_dict

WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


class RepeatChannels(nn.Module):
    """Feed grey images to a model that expects colour ones by repeating the channel."""

    def __init__(self, model: nn.Module, times: int):
        super().__init__()
        self.model = model
        self.times = times

    def forward(self, x):
        return self.model(x.repeat(1, self.times, 1, 1))


def torchvision_model(
    name: str, input_shape: tuple[int, ...], num_classes: int, weights: str | None = None, **kwargs
) -> nn.Module:
    """``torchvision.models.get_model(name)`` with ``num_classes`` outputs, optionally pretrained."""
    import torchvision.models as tvm

    where = f"model 'torchvision:{name}'"
    require_image(f"torchvision:{name}", input_shape)
    known = tvm.list_models(module=tvm)
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{where}: torchvision has no classifier {name!r}{hint}")
    try:
        if weights is None:
            model = tvm.get_model(name, weights=None, num_classes=num_classes, **kwargs)
        elif is_file_name(weights):
            model = _from_file(tvm, name, Path(weights), num_classes, kwargs)
        else:
            enum = _weights_enum(tvm, name, weights)
            _require_cached(where, enum)
            model = tvm.get_model(name, weights=enum, progress=False, **kwargs)
            _resize_classifier(model, num_classes)
    except (OSError, RuntimeError) as e:  # a corrupt cached file, a bad hash
        raise CheckpointError(
            f"{where}: weights {weights!r} could not be loaded ({first_line(e)})"
        ) from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {first_line(e)}") from None
    if input_shape[0] == 1:
        model = RepeatChannels(model, 3)
    return model


def is_file_name(weights: str) -> bool:
    """A path, not an enum name: it has a folder part or a weights file's suffix, or exists."""
    return (os.sep in weights or "/" in weights or weights.endswith(WEIGHT_SUFFIXES)) or Path(
        weights
    ).is_file()


def _from_file(tvm, name: str, path: Path, num_classes: int, kwargs: dict) -> nn.Module:
    """Build with the file's class count, load it (tensors only), then resize the classifier."""
    model = tvm.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    try:
        _, _, key, _ = _classifier(model)
    except ConfigError:  # a convolutional head (squeezenet): the file must fit as it is
        return load_weights(model, path, num_classes)
    state = read_state_dict(path)
    saved = state.get(f"{key}.weight")
    if saved is not None and saved.shape[0] != num_classes:
        model = tvm.get_model(name, weights=None, num_classes=saved.shape[0], **kwargs)
    load_weights(model, path)
    _resize_classifier(model, num_classes)
    return model


def _weights_enum(tvm, name: str, weights: str):
    enum_class = tvm.get_model_weights(name)
    members = list(enum_class.__members__)
    short = weights.rsplit(".", 1)[-1]
    if short not in members or ("." in weights and weights.split(".")[0] != enum_class.__name__):
        raise ConfigError(
            f"model 'torchvision:{name}': model_args.weights {weights!r} is neither a file nor "
            f"one of {enum_class.__name__}: {', '.join(members)}"
        )
    return enum_class[short]


def weights_cache_folder() -> Path:
    """Where torchvision keeps downloaded weights: ``$TORCH_HOME/hub/checkpoints``."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def _require_cached(where: str, enum) -> None:
    folder = weights_cache_folder()
    file = folder / os.path.basename(urlparse(enum.url).path)
    if not file.is_file():
        raise CheckpointError(
            f"{where}: weights {enum} are not in torchvision's cache {folder} (kdlens does not "
            f"download; fetch {file.name} there once, or give model_args.weights a local file)"
        )


def _classifier(model: nn.Module) -> tuple[nn.Module, str, str, nn.Linear]:
    """(parent, attribute, state-dict key, layer) of the last linear layer of the head."""
    for attr in ("fc", "classifier", "head", "heads"):
        head = getattr(model, attr, None)
        if isinstance(head, nn.Linear):
            return model, attr, attr, head
        if isinstance(head, nn.Sequential):
            for child, layer in reversed(list(head.named_children())):
                if isinstance(layer, nn.Linear):
                    return head, child, f"{attr}.{child}", layer
    raise ConfigError(f"cannot find the classifier layer of {type(model).__name__} to resize")


def _resize_classifier(model: nn.Module, num_classes: int) -> None:
    parent, attr, _, layer = _classifier(model)
    if layer.out_features != num_classes:
        setattr(parent, attr, nn.Linear(layer.in_features, num_classes))
