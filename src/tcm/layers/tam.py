"""TAM: features from the displacement fields, re-weighted over time."""

from __future__ import annotations

import math

import torch
from torch import nn


def attention_kernel_size(num_segments: int) -> int:
    """Odd kernel size ``floor(log2 T)`` (+1 if even) of the temporal attention."""
    size = int(math.log2(num_segments))
    return size + 1 if size % 2 == 0 else size


def conv_bn_relu(
    in_channels: int, out_channels: int, kernel_size: int, groups: int = 1
) -> list[nn.Module]:
    """Conv (no bias, "same" padding), BN, ReLU as three layers of an :class:`nn.Sequential`
    (whose names ``0.weight``, ``1.running_mean``, ... are those of the reference release)."""
    conv = nn.Conv2d(
        in_channels, out_channels, kernel_size, padding=kernel_size // 2, groups=groups, bias=False
    )
    return [conv, nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]


class TemporalAttention(nn.Module):
    """Per-channel weights over time from one 1D kernel shared by all channels.

    Shapes: input ``(N*T, C, H, W)`` -> output ``(N*T, C, H, W)`` scaled by
    ``sigmoid(conv1d(mean_{H,W}))`` along T.
    """

    def __init__(self, num_segments: int, kernel_size: int | None = None) -> None:
        super().__init__()
        self.num_segments = num_segments
        kernel_size = kernel_size or attention_kernel_size(num_segments)
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=(kernel_size - 1) // 2, bias=False)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """The weights of each clip's frames and channels: ``(N*T, C, H, W)`` -> ``(N, T, C)``,
        in ``(0, 1)``."""
        channels = x.shape[1]
        clips = x.view(-1, self.num_segments, channels, x.shape[2], x.shape[3])  # (N, T, C, H, W)
        # A mean over H, W; dividing the sums makes the backward divide (N, C, T), not the map.
        pooled = (clips.sum(dim=(3, 4)) / (x.shape[2] * x.shape[3])).transpose(1, 2)  # (N, C, T)
        weights = self.conv(pooled.reshape(-1, 1, self.num_segments))  # (N*C, 1, T)
        return weights.sigmoid().view(-1, channels, self.num_segments).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        clips = x.view(-1, self.num_segments, x.shape[1], x.shape[2], x.shape[3])  # (N, T, C, H, W)
        return (clips * self.weights(x)[..., None, None]).view(x.shape)


class TAM(nn.Module):
    """Lift the 6 displacement channels to ``out_channels`` and re-weight them over time.

    Args:
        out_channels: channels of the output (those of the backbone where TCM sits).
        num_segments: frames per clip ``T``.
        in_channels: channels of MTDM's output (6; a multiple of 3).
        temporal_attention: re-weight the output over time (the reference does); without it
            TAM ends at its last conv (an ablation).

    Shapes: ``(N*T, 6, H, W)`` -> ``(N*T, out_channels, H, W)``.
    """

    def __init__(
        self,
        out_channels: int,
        num_segments: int,
        in_channels: int = 6,
        temporal_attention: bool = True,
    ) -> None:
        super().__init__()
        if in_channels % 3:
            raise ValueError(f"TAM's convs work in 3 groups; got in_channels={in_channels}")
        # Groups of 3 over the 6 field channels: (u_f, v_f), (conf_f, u_s), (v_s, conf_s),
        # as in the reference release, whose checkpoints expect it.
        self.conv1 = nn.Sequential(
            *conv_bn_relu(in_channels, in_channels, 3, groups=3),
            *conv_bn_relu(in_channels, in_channels, 3, groups=3),
            *conv_bn_relu(in_channels, in_channels, 3, groups=3),
            *conv_bn_relu(in_channels, 16, 1),
        )
        # Depthwise 3x3 then pointwise lift: 16 -> 32 -> 64 -> out_channels.
        self.conv2 = nn.Sequential(*conv_bn_relu(16, 16, 3, groups=16), *conv_bn_relu(16, 32, 1))
        self.conv3 = nn.Sequential(*conv_bn_relu(32, 32, 3, groups=32), *conv_bn_relu(32, 64, 1))
        self.conv4 = nn.Sequential(
            *conv_bn_relu(64, 64, 3, groups=64), *conv_bn_relu(64, out_channels, 1)
        )
        # Name kept from the reference release ("ETA") for checkpoint compatibility.
        self.ETA = TemporalAttention(num_segments) if temporal_attention else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ETA(self.conv4(self.conv3(self.conv2(self.conv1(x)))))
