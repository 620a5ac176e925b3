"""The temporal shift in residual blocks shaped like those of torchvision's and timm's
MobileNetV3, EfficientNet, ConvNeXt, GhostNet and RegNet (torch-only copies of their
structure), and the recognizer's checks of a backbone's output."""

from __future__ import annotations

import copy
from collections import OrderedDict

import pytest
import torch
from torch import nn

import tcm
from tcm.layers import temporal_shift
from tcm.models import VideoRecognizer, shifted_layers

FRAMES = 4


def conv_norm_act(c_in: int, c_out: int, kernel: int = 1, stride: int = 1, groups: int = 1):
    """torchvision's ``Conv2dNormActivation`` / timm's ``ConvNormAct``: a conv sequence."""
    conv = nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(c_out), nn.ReLU())


class TorchvisionInvertedResidual(nn.Module):
    """MobileNetV3's block and EfficientNet's MBConv in torchvision: ``use_res_connect`` and
    the layers in ``block``."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, expansion: int = 4) -> None:
        super().__init__()
        hidden = c_in * expansion
        self.use_res_connect = stride == 1 and c_in == c_out
        layers = [conv_norm_act(c_in, hidden)] if expansion != 1 else []
        layers += [conv_norm_act(hidden, hidden, 3, stride, hidden), conv_norm_act(hidden, c_out)]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return out + x if self.use_res_connect else out


class TimmInvertedResidual(nn.Module):
    """timm's MobileNetV3 / EfficientNet block: ``conv_pw``, ``conv_dw``, ``conv_pwl``,
    ``has_skip`` and ``drop_path``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_pw = nn.Conv2d(channels, 2 * channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(2 * channels)
        self.conv_dw = nn.Conv2d(2 * channels, 2 * channels, 3, 1, 1, groups=2 * channels)
        self.bn2 = nn.BatchNorm2d(2 * channels)
        self.conv_pwl = nn.Conv2d(2 * channels, channels, 1, bias=False)
        self.has_skip = True
        self.drop_path = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv_dw(torch.relu(self.bn1(self.conv_pw(x)))))
        out = self.conv_pwl(torch.relu(out))
        return self.drop_path(out) + x if self.has_skip else out


class ConvNeXtBlock(nn.Module):
    """ConvNeXt's block: depthwise 7x7, norm, two pointwise layers; ``shortcut`` (defined
    after the branch) and ``drop_path``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(channels, channels, 7, 1, 3, groups=channels)
        self.norm = nn.BatchNorm2d(channels)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, 4 * channels, 1), nn.GELU(), nn.Conv2d(4 * channels, channels, 1)
        )
        self.shortcut = nn.Identity()
        self.drop_path = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop_path(self.mlp(self.norm(self.conv_dw(x)))) + self.shortcut(x)


class GhostModule(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.primary_conv = conv_norm_act(c_in, c_out // 2)
        self.cheap_operation = conv_norm_act(c_out // 2, c_out // 2, 3, groups=c_out // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        primary = self.primary_conv(x)
        return torch.cat([primary, self.cheap_operation(primary)], dim=1)


class GhostBottleneck(nn.Module):
    """GhostNet's block: two ghost modules and a ``shortcut`` (empty: the identity)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.ghost1 = GhostModule(channels, 2 * channels)
        self.se = nn.Identity()
        self.ghost2 = GhostModule(2 * channels, channels)
        self.shortcut = nn.Sequential()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ghost2(self.se(self.ghost1(x))) + self.shortcut(x)


class ResBottleneckBlock(nn.Module):
    """torchvision's RegNet block: ``x + f(x)``, or ``proj(x) + f(x)`` with ``proj`` defined
    before the branch ``f``."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.proj = None
        if stride != 1 or c_in != c_out:
            self.proj = conv_norm_act(c_in, c_out, 1, stride)
        self.f = nn.Sequential(
            OrderedDict(
                a=conv_norm_act(c_in, c_out),
                b=conv_norm_act(c_out, c_out, 3, stride, groups=2),
                c=conv_norm_act(c_out, c_out),
            )
        )
        self.activation = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.proj is None else self.proj(x)
        return self.activation(identity + self.f(x))


class ZooNet(nn.Module):
    """A backbone of all of them: ``(N*T, 3, H, W)`` -> ``(N*T, 32, H/4, W/4)``."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_norm_act(3, 8, 3, 2)
        self.blocks = nn.Sequential(
            TorchvisionInvertedResidual(8, 8),
            TorchvisionInvertedResidual(8, 16, stride=2),  # no skip connection: not shifted
            TimmInvertedResidual(16),
            ConvNeXtBlock(16),
            GhostBottleneck(16),
            ResBottleneckBlock(16, 16),
            ResBottleneckBlock(16, 32),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))


EXPECTED = [
    "blocks.0.block.0.0",
    "blocks.2.conv_pw",
    "blocks.3.conv_dw",
    "blocks.4.ghost1.primary_conv.0",
    "blocks.5.f.a.0",
    "blocks.6.f.a.0",  # not proj, the shortcut, although it comes first
]


def test_the_common_residual_blocks_are_shifted_before_their_branchs_first_convolution():
    net = ZooNet().eval()
    reference, plain = copy.deepcopy(net), copy.deepcopy(net)
    tcm.add_temporal_shift(net, FRAMES)
    assert shifted_layers(net) == EXPECTED
    # The same function as the unshifted copy with the shift put by hand before those layers.
    layers = dict(reference.named_modules())
    for name in EXPECTED:
        layers[name].register_forward_pre_hook(lambda m, a: temporal_shift(a[0], FRAMES, 8))
    x = torch.randn(2 * FRAMES, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(net(x), reference(x), rtol=0, atol=0)
        assert not torch.allclose(net(x), plain(x))
    assert list(net.state_dict()) == list(reference.state_dict())


def test_a_shifted_zoo_model_scripts_and_traces_with_its_shift():
    model = VideoRecognizer(tcm.add_temporal_shift(ZooNet(), FRAMES), 3).eval()
    clip = torch.randn(2, FRAMES, 3, 16, 16)
    with torch.no_grad():
        expected = model(clip)
        torch.testing.assert_close(torch.jit.script(model)(clip), expected)
        torch.testing.assert_close(torch.fx.symbolic_trace(model)(clip), expected)


def test_a_block_named_in_blocks_is_shifted_in_its_branch():
    net = tcm.add_temporal_shift(ZooNet(), FRAMES, blocks=["blocks.3", "blocks.6"])
    assert shifted_layers(net) == ["blocks.3.conv_dw", "blocks.6.f.a.0"]


def test_without_residual_blocks_the_candidates_are_named():
    net = nn.Sequential(OrderedDict(stem=conv_norm_act(3, 8), body=conv_norm_act(8, 8)))
    with pytest.raises(ValueError, match=r"layers holding convolutions: stem, body\)"):
        tcm.add_temporal_shift(net, FRAMES)


def test_a_stage_named_in_blocks_hints_the_full_names_of_its_blocks():
    net = ZooNet()
    with pytest.raises(ValueError, match=r"blocks holds residual blocks; name them \(blocks.0,"):
        tcm.add_temporal_shift(net, FRAMES, blocks=["blocks"])
    tcm.add_temporal_shift(net, FRAMES, blocks=["blocks.0"])  # the name the hint gives
    assert shifted_layers(net) == ["blocks.0.block.0.0"]


class Pooled(nn.Module):
    """Ends with pooled features ``(N*T, C)``, as a classification model without its head."""

    def __init__(self, num_features: int | None = None) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_norm_act(3, 16, 3, 2), nn.AdaptiveAvgPool2d(1))
        if num_features is not None:
            self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).flatten(1)


class WrongNumFeatures(ZooNet):
    """Declares 48 features and returns 32 (as timm's MobileNetV3 declares its head's)."""

    num_features = 48


def test_a_backbone_that_is_not_what_it_declares_is_named_at_the_first_forward():
    clip = torch.randn(1, FRAMES, 3, 16, 16)
    model = VideoRecognizer(WrongNumFeatures(), 3, num_segments=FRAMES)
    with pytest.raises(ValueError, match=r"returned 32-channel feature maps, but the classifier"):
        model(clip)
    model = VideoRecognizer(Pooled(num_features=16), 3, num_segments=FRAMES)
    with pytest.raises(ValueError, match=r"returned \[4, 16\]; a backbone must return feature"):
        model(clip)
    with pytest.raises(ValueError, match="a backbone must return feature maps"):
        VideoRecognizer(Pooled(), 3, num_segments=FRAMES)
