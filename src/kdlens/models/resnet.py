"""CIFAR-style ResNets (He et al. 2016, §4.2): depth 6n+2, three stages, for small images."""

from __future__ import annotations

from torch import nn

from kdlens.errors import ConfigError
from kdlens.models.checks import require_image
from kdlens.models.registry import register_model


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )
        # A module (not F.relu), so hooks reach the block's pre-activation: "layer1.0.relu:input"
        # holds it after a forward (the last call wins), as in torchvision's BasicBlock.
        self.relu = nn.ReLU()

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, blocks_per_stage: int, channels):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, channels[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(channels[0]),
            nn.ReLU(),
        )
        stages = []
        c_in = channels[0]
        for i, c in enumerate(channels[1:] if len(channels) > 3 else channels):
            stride = 1 if i == 0 else 2
            layers = []
            for b in range(blocks_per_stage):
                layers.append(BasicBlock(c_in, c, stride if b == 0 else 1))
                c_in = c
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(self.pool(x).flatten(1))


@register_model("resnet")
def resnet(
    input_shape: tuple[int, ...],
    num_classes: int,
    depth: int = 20,
    channels: list[int] = (16, 32, 64),
) -> CifarResNet:
    """A CIFAR-style ResNet (He et al. 2016) with ``depth`` layers and stage widths ``channels``.

    RepDistiller's resnet8x4 is ``depth=8, channels=[32, 64, 128, 256]`` (a wider stem first,
    then three stages)."""
    require_image("resnet", input_shape)
    if depth < 8 or (depth - 2) % 6:
        raise ConfigError(
            f"model 'resnet': depth must be 6n+2 with n >= 1 (8, 14, 20, 32, ...), got {depth}"
        )
    if len(channels) not in (3, 4):
        raise ConfigError("model 'resnet': channels needs 3 stage widths (or a stem width and 3)")
    return CifarResNet(input_shape[0], num_classes, (depth - 2) // 6, list(channels))
