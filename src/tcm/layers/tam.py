"""TAM: features from the displacement fields, re-weighted over time."""

from __future__ import annotations

import math

import torch
from torch import nn

from tcm.layers.conv_bn import (
    ConvBNReLU,
    channels_last_helps,
    conv_bn_relu,
    is_small_map,
    to_layout,
)
from tcm.ops.attention_add import attention_add, attention_kernels_for
from tcm.ops.backend import is_capturing


def attention_kernel_size(num_segments: int) -> int:
    """Odd kernel size ``floor(log2 T)`` (+1 if even) of the temporal attention."""
    size = int(math.log2(num_segments))
    return size + 1 if size % 2 == 0 else size


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
        clips = x.view(-1, self.num_segments, *x.shape[1:])  # (N, T, C, H, W)
        pooled = clips.mean(dim=(3, 4)).transpose(1, 2)  # (N, C, T)
        weights = self.conv(pooled.reshape(-1, 1, self.num_segments))  # (N*C, 1, T)
        return weights.sigmoid().view(-1, channels, self.num_segments).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels, height, width = x.shape[1:]
        clips = x.view(-1, self.num_segments, channels, height, width)  # (N, T, C, H, W)
        return (clips * self.weights(x)[..., None, None]).view(-1, channels, height, width)

    def add_weighted(
        self, base: torch.Tensor, x: torch.Tensor, *, overwrite: bool = False
    ) -> torch.Tensor:
        """``base + self(x)``: ``(N*T, C, H, W)`` each, and out.

        With ``overwrite`` (inference only: nothing may need ``x`` afterwards) the sum is
        written over ``x`` in one pass: no new maps are allocated (a large allocation costs a
        page fault per 4 KB on its first use). Without it, on CPU float maps where the compiled
        kernels load, the attention and the sum run as one op (:mod:`tcm.ops.attention_add`,
        equal up to float rounding); elsewhere the product and the sum are two steps, rounded
        exactly as ``base + self(x)``.
        """
        # Hooks on the 1D convolution would not see the compiled op.
        if not (overwrite or self.conv._forward_hooks or self.conv._forward_pre_hooks):
            kernels = attention_kernels_for(base, x, self.conv.weight)
            if kernels is not None:
                return attention_add(base, x, self.conv.weight, self.num_segments, kernels)
        channels, height, width = x.shape[1:]
        clips = x.view(-1, self.num_segments, channels, height, width)  # (N, T, C, H, W)
        weights = self.weights(x)[..., None, None]  # (N, T, C, 1, 1)
        if overwrite:
            out = torch.addcmul(base.view_as(clips), clips, weights, out=clips)
            return out.reshape(base.shape)
        return base + (clips * weights).view(base.shape)


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
        self.conv1 = ConvBNReLU(
            *conv_bn_relu(in_channels, in_channels, 3, groups=3),
            *conv_bn_relu(in_channels, in_channels, 3, groups=3),
            *conv_bn_relu(in_channels, in_channels, 3, groups=3),
            *conv_bn_relu(in_channels, 16, 1),
        )
        self.conv2 = ConvBNReLU(*conv_bn_relu(16, 16, 3, groups=16), *conv_bn_relu(16, 32, 1))
        self.conv3 = ConvBNReLU(*conv_bn_relu(32, 32, 3, groups=32), *conv_bn_relu(32, 64, 1))
        self.conv4 = ConvBNReLU(
            *conv_bn_relu(64, 64, 3, groups=64), *conv_bn_relu(64, out_channels, 1)
        )
        # Name kept from the reference release ("ETA") for checkpoint compatibility.
        self.ETA = TemporalAttention(num_segments) if temporal_attention else nn.Identity()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The convolutions without the temporal attention: ``(N*T, 6, H, W) -> (N*T, C, H, W)``.

        On the CPU the narrow part (6 to 64 channels, grouped and depthwise convolutions) runs
        channels-last, where oneDNN's kernels for so few channels are faster (a TAM training
        step on the demo's 8x8 maps takes about half the time); the last 1x1 convolution, the
        lift to ``C`` channels, runs in the plain layout, which is faster for wide outputs (512
        channels at 28x28), except on small maps (:func:`~tcm.layers.conv_bn.is_small_map`),
        where it stays channels-last too. Graphs being captured get the plain layout
        throughout. The output may so be channels-last.
        """
        if not channels_last_helps(x):
            return self.conv4(self.conv3(self.conv2(self.conv1(x))))
        x = self.conv3(self.conv2(self.conv1(to_layout(x, torch.channels_last))))
        lift_layout = None if is_small_map(x) else torch.contiguous_format
        return self.conv4(x, last_layout=lift_layout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N*T, 6, H, W) -> (N*T, C, H, W)``, in the plain layout."""
        return to_layout(self.ETA(self.features(x)), torch.contiguous_format)

    def add_to(self, base: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``base + self(x)``: ``base (N*T, C, H, W)``, ``x (N*T, 6, H, W)`` ->
        ``(N*T, C, H, W)`` in ``base``'s layout. Without autograd the re-weighting and the sum take one pass over
        TAM's own output (see :meth:`TemporalAttention.add_weighted`)."""
        features = self.features(x)  # (N*T, C, H, W), needed by nothing else
        if isinstance(self.ETA, TemporalAttention):
            # Graphs (export, compile) get the plain op: out= is not exportable everywhere.
            # The sum is written over the features only where their layout is base's.
            overwrite = (
                not is_capturing()
                and features.stride() == base.stride()
                and not (torch.is_grad_enabled() and (features.requires_grad or base.requires_grad))
            )
            return self.ETA.add_weighted(base, features, overwrite=overwrite)
        return base + self.ETA(features)
