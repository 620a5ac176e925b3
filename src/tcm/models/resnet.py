"""ResNet backbones: the 2D trunk that TSN, TSM and TCM models are built on.

Parameter names follow the common ImageNet ResNet layout (``conv1``, ``bn1``,
``layer1.0.conv1``, ...), so ImageNet weights load directly; the classifier lives in the
recognizer, not here. The temporal shift and TCM are plugged in by
:func:`~tcm.models.plugin.add_temporal_shift` and :func:`~tcm.models.plugin.add_tcm`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

STAGE_NAMES = ("layer1", "layer2", "layer3", "layer4")


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def _conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs on the residual branch; ``conv1`` is where TSM shifts."""

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        width: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1, 3x3 (strided), 1x1 convs on the residual branch; ``conv1`` is where TSM shifts."""

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        width: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = _conv1x1(in_channels, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv1x1(width, width * self.expansion)
        self.bn3 = nn.BatchNorm2d(width * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """A ResNet trunk applied to every frame, ``(N*T, 3, H, W)`` -> ``(N*T, C_out, H/32, W/32)``.

    Frames are independent (TSN) until :func:`~tcm.models.plugin.add_temporal_shift` or
    :func:`~tcm.models.plugin.add_tcm` plug temporal modelling in.

    Args:
        block: ``BasicBlock`` or ``Bottleneck``.
        layers: number of blocks per stage.
        widths: base width of each stage (64, 128, 256, 512 for the standard ResNets).
        stem_width: channels of the stem conv.
        init_weights: initialise now (Kaiming normal convs, unit BatchNorms); builders that
            plug layers in first call :meth:`init_weights` afterwards, so that those layers
            are initialised the same way.

    ``C_out = widths[-1] * block.expansion`` (``num_features``).
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: Sequence[int],
        widths: Sequence[int] = (64, 128, 256, 512),
        stem_width: int = 64,
        init_weights: bool = True,
    ) -> None:
        super().__init__()
        if len(layers) != len(STAGE_NAMES) or len(widths) != len(STAGE_NAMES):
            raise ValueError(f"expected {len(STAGE_NAMES)} stages, got layers={layers}")
        self.conv1 = nn.Conv2d(3, stem_width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_channels = stem_width
        for index, (name, depth, width) in enumerate(zip(STAGE_NAMES, layers, widths)):
            stride = 1 if index == 0 else 2
            out_channels = width * block.expansion
            downsample = None
            if stride != 1 or in_channels != out_channels:
                downsample = nn.Sequential(
                    _conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels)
                )
            blocks = [block(in_channels, width, stride, downsample)]
            blocks += [block(out_channels, width) for _ in range(depth - 1)]
            setattr(self, name, nn.Sequential(*blocks))
            in_channels = out_channels
        self.num_features = in_channels
        if init_weights:
            self.init_weights()

    def init_weights(self) -> None:
        """Kaiming-normal (fan out) convolutions and unit BatchNorms, every layer plugged in
        included."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))  # the STAGE_NAMES


RESNET_LAYOUTS: dict[int, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, ...]]] = {
    10: (BasicBlock, (1, 1, 1, 1)),
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
}
