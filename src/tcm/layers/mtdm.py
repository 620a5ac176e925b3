"""MTDM: multi-scale temporal dynamics, displacement fields at a fast and a slow tempo."""

from __future__ import annotations

import torch
from torch import nn

from tcm.ops import mtdm_fields


def _normalize_channels(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``x / sqrt(sum_c x^2 + eps)`` over dim 1."""
    return x * torch.rsqrt(x.pow(2).sum(dim=1, keepdim=True) + eps)


class MTDM(nn.Module):
    """Displacement fields between frames for two tempos.

    The fast tempo pairs adjacent frames ``(t, t+1)``; the slow tempo pairs the clip's first
    frame with every later one ``(0, t+1)``. Each pair gives ``[u, v, confidence]`` from a local
    correlation of channel-reduced, L2-normalised features and a kernel soft-argmax; the last
    pair's maps are repeated so there are T per clip.

    Args:
        in_channels: channels ``C`` of the input.
        num_segments: frames per clip ``T`` (at least 2).
        reduced_channels: channels the correlation works on.
        patch_size: displacements per axis (odd), radius ``patch_size // 2``.
        sigma: Gaussian window width of the soft-argmax, in displacement steps.
        temperature: softmax scale of the soft-argmax.

    Shapes:
        input ``(N*T, C, H, W)`` -> output ``(N*T, 6, H, W)`` with channels
        ``[u_fast, v_fast, conf_fast, u_slow, v_slow, conf_slow]``.
    """

    out_channels = 6

    def __init__(
        self,
        in_channels: int,
        num_segments: int,
        reduced_channels: int = 64,
        patch_size: int = 15,
        sigma: float = 5.0,
        temperature: float = 100.0,
    ) -> None:
        super().__init__()
        if num_segments < 2:
            raise ValueError(
                f"MTDM needs at least 2 frames per clip, got num_segments={num_segments}"
            )
        if patch_size < 1 or patch_size % 2 == 0:
            raise ValueError(f"patch_size must be a positive odd number, got {patch_size}")
        self.num_segments = num_segments
        self.patch_size = patch_size
        self.sigma = sigma
        self.temperature = temperature
        # Name kept from the reference release so its checkpoints map one-to-one.
        self.chnl_reduction = nn.Sequential(
            nn.Conv2d(in_channels, reduced_channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(reduced_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = _normalize_channels(self.chnl_reduction(x))
        channels, height, width = reduced.shape[1:]
        clips = reduced.view(-1, self.num_segments, channels, height, width)  # (N, T, c, H, W)
        frames = self.num_segments
        # Fast pairs (t, t+1) for t = 0..T-2, then the slow pairs (0, t+1) for t = 1..T-2
        # (the slow pair for t = 0 is the fast one).
        firsts = torch.cat([clips[:, :-1], clips[:, :1].expand(-1, frames - 2, -1, -1, -1)], 1)
        seconds = torch.cat([clips[:, 1:], clips[:, 2:]], dim=1)  # (N, 2T-3, c, H, W)
        # ReLU'd local correlation and kernel soft-argmax, fused on the compiled path.
        fields = mtdm_fields(
            firsts.reshape(-1, channels, height, width),
            seconds.reshape(-1, channels, height, width),
            self.patch_size,
            self.sigma,
            self.temperature,
        )  # (N * (2T-3), 3, H, W)
        fields = fields.view(-1, 2 * frames - 3, 3, height, width).to(x.dtype)
        fast = fields[:, : frames - 1]  # (N, T-1, 3, H, W)
        slow = torch.cat([fields[:, :1], fields[:, frames - 1 :]], dim=1)
        fast = torch.cat([fast, fast[:, -1:]], dim=1)  # (N, T, 3, H, W)
        slow = torch.cat([slow, slow[:, -1:]], dim=1)
        return torch.cat([fast, slow], dim=2).view(-1, 6, height, width)

    def extra_repr(self) -> str:
        return (
            f"num_segments={self.num_segments}, patch_size={self.patch_size}, "
            f"sigma={self.sigma}, temperature={self.temperature}"
        )
