"""ResNet backbones for clips, with optional temporal shift and TCM layers.

Parameter names follow the common ImageNet ResNet layout (``conv1``, ``bn1``,
``layer1.0.conv1``, ...), so ImageNet weights load directly; the classifier lives in the
recognizer, not here. TCM layers sit under ``tcm_layers.<stage name>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from tcm.layers import TCM, TemporalShift

STAGE_NAMES = ("layer1", "layer2", "layer3", "layer4")


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def _conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs; the residual branch starts with ``shift`` (temporal shift or identity)."""

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        width: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        shift: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.shift = shift or nn.Identity()
        self.conv1 = _conv3x3(in_channels, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(self.shift(x))))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1, 3x3 (strided), 1x1 convs; the residual branch starts with ``shift``."""

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        width: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        shift: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.shift = shift or nn.Identity()
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
        out = self.relu(self.bn1(self.conv1(self.shift(x))))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


@dataclass
class TCMOptions:
    """Where TCM goes and how it is configured.

    Attributes:
        stages: stage names after which a TCM layer is inserted (``"layer1"`` .. ``"layer4"``);
            the reference places one after ``layer2``.
        patch_size: correlation window per axis (odd).
        reduced_channels: channels the correlation works on.
        sigma: Gaussian window width of the soft-argmax.
        temperature: softmax scale of the soft-argmax.
        tempos: MTDM's tempos, ``("fast", "slow")`` in the reference.
        temporal_attention: TAM ends with its temporal attention (as in the reference).
    """

    stages: Sequence[str] = ("layer2",)
    patch_size: int = 15
    reduced_channels: int = 64
    sigma: float = 5.0
    temperature: float = 100.0
    tempos: Sequence[str] = ("fast", "slow")
    temporal_attention: bool = True


class ResNet(nn.Module):
    """A ResNet trunk applied to every frame, with temporal modelling between frames.

    Args:
        block: ``BasicBlock`` or ``Bottleneck``.
        layers: number of blocks per stage.
        num_segments: frames per clip ``T``.
        temporal_shift: shift channels between frames at the start of every residual branch
            (TSM); without it, frames are independent (TSN).
        shift_fold_div: ``C // shift_fold_div`` channels move each way.
        tcm: where and how TCM layers are inserted; ``None`` for none.
        widths: base width of each stage (64, 128, 256, 512 for the standard ResNets).
        stem_width: channels of the stem conv.

    Shapes: ``forward`` takes ``(N*T, 3, H, W)`` and returns ``(N*T, C_out, H/32, W/32)``
    with ``C_out = widths[-1] * block.expansion`` (``num_features``).
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: Sequence[int],
        num_segments: int,
        temporal_shift: bool = False,
        shift_fold_div: int = 8,
        tcm: TCMOptions | None = None,
        widths: Sequence[int] = (64, 128, 256, 512),
        stem_width: int = 64,
    ) -> None:
        super().__init__()
        if len(layers) != len(STAGE_NAMES) or len(widths) != len(STAGE_NAMES):
            raise ValueError(f"expected {len(STAGE_NAMES)} stages, got layers={layers}")
        tcm_stages = tuple(tcm.stages) if tcm is not None else ()
        unknown = [stage for stage in tcm_stages if stage not in STAGE_NAMES]
        if unknown:
            raise ValueError(f"unknown TCM stage(s) {unknown}; choose among {STAGE_NAMES}")
        self.num_segments = num_segments
        self.conv1 = nn.Conv2d(3, stem_width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)

        def make_shift() -> nn.Module | None:
            return TemporalShift(num_segments, shift_fold_div) if temporal_shift else None

        in_channels = stem_width
        stage_channels = {}
        for index, (name, depth, width) in enumerate(zip(STAGE_NAMES, layers, widths)):
            stride = 1 if index == 0 else 2
            out_channels = width * block.expansion
            downsample = None
            if stride != 1 or in_channels != out_channels:
                downsample = nn.Sequential(
                    _conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels)
                )
            blocks = [block(in_channels, width, stride, downsample, make_shift())]
            blocks += [block(out_channels, width, shift=make_shift()) for _ in range(depth - 1)]
            setattr(self, name, nn.Sequential(*blocks))
            stage_channels[name] = in_channels = out_channels
        self.num_features = in_channels
        self.tcm_layers = nn.ModuleDict(
            {
                stage: TCM(
                    stage_channels[stage],
                    num_segments,
                    patch_size=tcm.patch_size,
                    reduced_channels=tcm.reduced_channels,
                    sigma=tcm.sigma,
                    temperature=tcm.temperature,
                    tempos=tuple(tcm.tempos),
                    temporal_attention=tcm.temporal_attention,
                )
                for stage in tcm_stages
            }
        )
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for name in STAGE_NAMES:
            x = getattr(self, name)(x)
            if name in self.tcm_layers:
                x = self.tcm_layers[name](x)
        return x


RESNET_LAYOUTS: dict[int, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, ...]]] = {
    10: (BasicBlock, (1, 1, 1, 1)),
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
}
