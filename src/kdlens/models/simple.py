"""Small models for small data: an MLP and a conv net."""

from __future__ import annotations

import math

from torch import nn

from kdlens.errors import ConfigError
from kdlens.models.checks import positive_widths, require_image
from kdlens.models.registry import register_model


@register_model("mlp")
def mlp(
    input_shape: tuple[int, ...],
    num_classes: int,
    hidden: list[int] = (800, 800),
    dropout: float = 0.0,
) -> nn.Sequential:
    """Multi-layer perceptron on flattened input; ReLU between layers."""
    hidden = positive_widths("mlp", "hidden", hidden)
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(input_shape)
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


class ConvNet(nn.Module):
    """conv3x3-BN-ReLU-maxpool blocks, then a hidden linear layer and the classifier."""

    def __init__(self, in_channels: int, num_classes: int, channels, hidden: int, dropout: float):
        super().__init__()
        blocks: list[nn.Module] = []
        c_in = in_channels
        for c in channels:
            blocks += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
            blocks.append(nn.MaxPool2d(2))
            c_in = c
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(4)  # any input size -> (B, C, 4, 4)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c_in * 16, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        return self.head(self.pool(self.features(x)))


@register_model("cnn")
def cnn(
    input_shape: tuple[int, ...],
    num_classes: int,
    channels: list[int] = (32, 64),
    hidden: int = 128,
    dropout: float = 0.0,
) -> ConvNet:
    """A small conv net: one conv block per entry of ``channels`` (each halving the
    resolution), then a hidden layer and the classifier."""
    require_image("cnn", input_shape)
    channels = positive_widths("cnn", "channels", channels)
    (hidden,) = positive_widths("cnn", "hidden", [hidden])
    if len(channels) > math.floor(math.log2(min(input_shape[1:]))):
        raise ConfigError(
            f"model 'cnn': {len(channels)} blocks are too many for {input_shape} input"
        )
    return ConvNet(input_shape[0], num_classes, list(channels), hidden, dropout)
