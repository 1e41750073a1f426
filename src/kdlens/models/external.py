"""Models from torchvision, adapted to the data's channels and classes."""

from __future__ import annotations

from torch import nn

from kdlens.errors import CheckpointError, ConfigError
from kdlens.models.checks import require_image


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
    """``torchvision.models.get_model(name)``; with ``weights`` (e.g. "DEFAULT") the classifier is
    pretrained and its last layer is replaced to give ``num_classes`` outputs."""
    import torchvision.models as tvm

    require_image(f"torchvision:{name}", input_shape)
    if name not in tvm.list_models(module=tvm):
        raise ConfigError(f"model 'torchvision:{name}': torchvision has no classifier {name!r}")
    try:
        if weights is None:
            model = tvm.get_model(name, weights=None, num_classes=num_classes, **kwargs)
        else:
            model = tvm.get_model(name, weights=weights, **kwargs)
            _replace_classifier(model, num_classes)
    except (OSError, RuntimeError) as e:  # offline download, bad hash
        raise CheckpointError(
            f"model 'torchvision:{name}': weights {weights!r} could not be loaded ({str(e).splitlines()[0]})"
        ) from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model 'torchvision:{name}': {e}") from None
    if input_shape[0] != 3:
        model = RepeatChannels(model, 3 // input_shape[0]) if input_shape[0] == 1 else model
    return model


def _replace_classifier(model: nn.Module, num_classes: int) -> None:
    for attr in ("fc", "classifier", "head", "heads"):
        head = getattr(model, attr, None)
        if isinstance(head, nn.Linear):
            setattr(model, attr, nn.Linear(head.in_features, num_classes))
            return
        if isinstance(head, nn.Sequential):
            for i in range(len(head) - 1, -1, -1):
                if isinstance(head[i], nn.Linear):
                    head[i] = nn.Linear(head[i].in_features, num_classes)
                    return
    raise ConfigError(f"cannot find the classifier layer of {type(model).__name__} to resize")
