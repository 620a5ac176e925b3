"""Temporal shift (TSM): exchange a fraction of channels with the neighbouring frames."""

from __future__ import annotations

import torch
import torch.fx
from torch import nn


def check_frames(x: torch.Tensor, num_segments: int, where: str) -> None:
    """Raise ``ValueError`` naming ``where`` unless ``x`` is ``(N*T, C, H, W)`` with ``T``
    ``num_segments``. A leaf of ``torch.fx`` traces, so a traced model keeps the check."""
    if x.dim() != 4 or x.shape[0] % num_segments != 0:
        raise ValueError(
            f"{where}: expected (N*T, C, H, W) with N*T a multiple of "
            f"num_segments={num_segments}, got {list(x.shape)}"
        )


torch.fx.wrap("check_frames")


def temporal_shift(x: torch.Tensor, num_segments: int, fold_div: int = 8) -> torch.Tensor:
    """Shift ``1/fold_div`` of the channels one frame back and as many one frame forward.

    Args:
        x: ``(N*T, C, H, W)``, the T frames of a clip contiguous.
        num_segments: ``T``.
        fold_div: ``C // fold_div`` channels move in each direction.

    Returns:
        ``(N*T, C, H, W)``: channels ``[0, f)`` of frame t hold frame t+1's (zeros for the last
        frame), channels ``[f, 2f)`` hold frame t-1's (zeros for the first), the rest unchanged.
    """
    channels, height, width = x.shape[1], x.shape[2], x.shape[3]
    clips = x.view(-1, num_segments, channels, height, width)  # (N, T, C, H, W)
    fold = channels // fold_div
    zeros = clips.new_zeros(clips.shape[0], 1, fold, height, width)
    from_next = torch.cat([clips[:, 1:, :fold], zeros], dim=1)
    from_prev = torch.cat([zeros, clips[:, :-1, fold : 2 * fold]], dim=1)
    shifted = torch.cat([from_next, from_prev, clips[:, :, 2 * fold :]], dim=2)
    return shifted.view(-1, channels, height, width)


class TemporalShift(nn.Module):
    """Module form of :func:`temporal_shift`; input and output ``(N*T, C, H, W)``."""

    def __init__(self, num_segments: int, fold_div: int = 8) -> None:
        super().__init__()
        self.num_segments = num_segments
        self.fold_div = fold_div

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return temporal_shift(x, self.num_segments, self.fold_div)

    def extra_repr(self) -> str:
        return f"num_segments={self.num_segments}, fold_div={self.fold_div}"
