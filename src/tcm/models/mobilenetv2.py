"""MobileNetV2 backbone in the layout of the TSM release (and of the common ImageNet weights
it starts from): ``features.0`` .. ``features.18``, the layers of each inverted residual flat
in ``conv`` (``features.3.conv.0`` is block 3's expansion 1x1).

The classifier lives in the recognizer. :func:`torchvision_to_release_layout` renames a
torchvision-layout state dict (``features.3.conv.0.0``, ``classifier.1``) to this one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import torch
from torch import nn

# (expansion t, output channels c, repeats n, stride of the first block s), width 1.0.
INVERTED_RESIDUAL_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STRIDE8_LAYER = "features.6"
"""The last layer at stride 8 (32 channels, 28x28 at 224): where TCM goes by default."""


def _conv_bn_relu6(
    in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1
):
    return [
        nn.Conv2d(
            in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=False
        ),
        nn.BatchNorm2d(out_channels),
        nn.ReLU6(inplace=True),
    ]


class InvertedResidual(nn.Module):
    """Expansion 1x1 (when ``expansion > 1``), depthwise 3x3, linear 1x1; the input is added
    when ``use_res_connect`` (stride 1 and as many output channels as input channels).

    Shapes: ``(N*T, C_in, H, W)`` -> ``(N*T, C_out, H / stride, W / stride)``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        hidden = in_channels * expansion
        self.expansion = expansion
        self.use_res_connect = stride == 1 and in_channels == out_channels
        layers = _conv_bn_relu6(in_channels, hidden, 1) if expansion != 1 else []
        layers += _conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden)
        layers += [nn.Conv2d(hidden, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 (width 1.0) applied to every frame: ``(N*T, 3, H, W)`` ->
    ``(N*T, 1280, H/32, W/32)``.

    Args:
        setting: ``(t, c, n, s)`` of each group of inverted residuals.
        stem_width: channels of ``features.0``.
        last_width: channels of ``features.-1``, the 1x1 conv before pooling (``num_features``).
        init_weights: initialise now (normal convs with std ``sqrt(2 / fan_out)``, unit
            BatchNorms); builders that plug layers in first call :meth:`init_weights` after.
    """

    def __init__(
        self,
        setting: Sequence[tuple[int, int, int, int]] = INVERTED_RESIDUAL_SETTING,
        stem_width: int = 32,
        last_width: int = 1280,
        init_weights: bool = True,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Sequential(*_conv_bn_relu6(3, stem_width, 3, stride=2))]
        in_channels = stem_width
        for expansion, channels, repeats, stride in setting:
            for index in range(repeats):
                block_stride = stride if index == 0 else 1
                layers.append(InvertedResidual(in_channels, channels, block_stride, expansion))
                in_channels = channels
        layers.append(nn.Sequential(*_conv_bn_relu6(in_channels, last_width, 1)))
        self.features = nn.Sequential(*layers)
        self.num_features = last_width
        if init_weights:
            self.init_weights()

    def init_weights(self) -> None:
        """Every convolution (layers plugged in included) ``N(0, 2 / fan_out)``; BatchNorms
        weight 1, bias 0."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
                nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


# torchvision nests each conv-BN-ReLU6 of a block in a sub-sequence: block part (index,
# position) -> the flat index of the release layout, for blocks with and without expansion.
_TORCHVISION_EXPANDED = {
    ("0", "0"): 0, ("0", "1"): 1, ("1", "0"): 3, ("1", "1"): 4, ("2", None): 6, ("3", None): 7
}  # fmt: skip
_TORCHVISION_PLAIN = {("0", "0"): 0, ("0", "1"): 1, ("1", None): 3, ("2", None): 4}
_TORCHVISION_BLOCK_KEY = re.compile(r"features\.(\d+)\.conv\.(\d+)\.(?:(\d+)\.)?(.+)")


def is_torchvision_layout(state: Mapping[str, torch.Tensor]) -> bool:
    """Whether a MobileNetV2 state dict uses torchvision's nested names."""
    return any(key.startswith("features.1.conv.0.0.") for key in state)


def torchvision_to_release_layout(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a torchvision ``mobilenet_v2`` state dict to :class:`MobileNetV2`'s names.

    ``features.N.conv.P.Q.*`` -> ``features.N.conv.K.*`` (flat), ``classifier.1.*`` ->
    ``classifier.*``; the stem and ``features.18`` already agree. Blocks without expansion
    (``features.1``) are told apart by the shape of their first conv (depthwise).
    """
    expanded: dict[str, bool] = {}
    for key, value in state.items():
        match = re.fullmatch(r"features\.(\d+)\.conv\.0\.0\.weight", key)
        if match:
            expanded[match.group(1)] = value.shape[1] != 1  # a depthwise conv has 1 in-channel
    renamed = {}
    for key, value in state.items():
        match = _TORCHVISION_BLOCK_KEY.fullmatch(key)
        if match and match.group(1) in expanded:
            block, part, position, rest = match.groups()
            table = _TORCHVISION_EXPANDED if expanded[block] else _TORCHVISION_PLAIN
            index = table.get((part, position))
            if index is None:
                raise ValueError(f"{key}: not a MobileNetV2 block parameter")
            key = f"features.{block}.conv.{index}.{rest}"
        elif key.startswith("classifier.1."):
            key = "classifier." + key.removeprefix("classifier.1.")
        renamed[key] = value
    return renamed
