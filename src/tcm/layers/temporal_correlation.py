"""The Temporal Correlation Module: ``x + TAM(MTDM(x))``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from tcm.layers.mtdm import MTDM, TEMPOS
from tcm.layers.tam import TAM


def check_input(x: torch.Tensor, channels: int, num_segments: int) -> None:
    """Refuse anything but ``(N*T, channels, H, W)`` with ``N*T`` a multiple of ``T``."""
    if x.dim() != 4 or x.shape[1] != channels or x.shape[0] % num_segments:
        raise ValueError(
            f"TCM expects (N*T, {channels}, H, W) with N*T a multiple of "
            f"num_segments={num_segments}, got {tuple(x.shape)}"
        )


torch.fx.wrap("check_input")  # a call in traced graphs, not control flow on proxies


class TCM(nn.Module):
    """Plug-in temporal module for any 2D backbone.

    Args:
        in_channels: channels ``C`` of the feature map it is placed on.
        num_segments: frames per clip ``T``.
        patch_size: correlation window per axis (odd); 15 in the reference.
        reduced_channels: channels the correlation works on; 64 in the reference.
        sigma: Gaussian window width of the soft-argmax.
        temperature: softmax scale of the soft-argmax.
        tempos: which of MTDM's tempos to compute, ``("fast", "slow")`` in the reference.
        temporal_attention: end TAM with its temporal attention, as the reference does.

    Shapes: input ``(N*T, C, H, W)`` with the T frames of a clip contiguous, output the same.

    Example:
        >>> layer = TCM(in_channels=128, num_segments=8)
        >>> layer(torch.randn(16, 128, 14, 14)).shape
        torch.Size([16, 128, 14, 14])
    """

    def __init__(
        self,
        in_channels: int,
        num_segments: int,
        patch_size: int = 15,
        reduced_channels: int = 64,
        sigma: float = 5.0,
        temperature: float = 100.0,
        tempos: Sequence[str] = TEMPOS,
        temporal_attention: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.num_segments = num_segments
        self.mtdm = MTDM(
            in_channels, num_segments, reduced_channels, patch_size, sigma, temperature, tempos
        )
        self.tam = TAM(
            in_channels,
            num_segments,
            in_channels=self.mtdm.out_channels,
            temporal_attention=temporal_attention,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels, self.num_segments)
        return x + self.tam(self.mtdm(x))
