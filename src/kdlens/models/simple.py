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
    """Blocks of ``convs_per_block`` conv3x3-BN-ReLU and a maxpool, then a hidden linear layer and
    the classifier."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        channels,
        hidden: int,
        dropout: float,
        convs_per_block: int = 1,
    ):
        super().__init__()
        blocks: list[nn.Module] = []
        c_in = in_channels
        for c in channels:
            for _ in range(convs_per_block):
                blocks += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)]
                blocks.append(nn.ReLU())
                c_in = c
            blocks.append(nn.MaxPool2d(2))
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
    convs_per_block: int = 1,
) -> ConvNet:
    """A small conv net: one block per entry of ``channels``, each halving the resolution, then a
    hidden layer and the classifier.

    ``convs_per_block=2`` stacks two 3x3 convs before each pooling (VGG-style): a deeper teacher
    at the same resolution schedule.
    """
    require_image("cnn", input_shape)
    channels = positive_widths("cnn", "channels", channels)
    (hidden,) = positive_widths("cnn", "hidden", [hidden])
    if convs_per_block < 1:
        raise ConfigError(f"model 'cnn': convs_per_block must be at least 1, got {convs_per_block}")
    if len(channels) > math.floor(math.log2(min(input_shape[1:]))):
        raise ConfigError(
            f"model 'cnn': {len(channels)} blocks are too many for {input_shape} input"
        )
    return ConvNet(input_shape[0], num_classes, list(channels), hidden, dropout, convs_per_block)
