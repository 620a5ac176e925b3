"""MTDM: multi-scale temporal dynamics, displacement fields at a fast and a slow tempo."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from tcm.layers.conv_bn import (
    ConvBNReLU,
    channels_last_helps,
    conv_bn_relu,
    is_small_map,
    to_layout,
)
from tcm.ops import mtdm_fields, normalize_channels
from tcm.ops.backend import is_capturing
from tcm.ops.mtdm_fields import clip_fields_kernels, mtdm_clip_fields

#: The two tempos of the reference, in the order of MTDM's output channels.
TEMPOS = ("fast", "slow")


def _frames(clips: torch.Tensor, piece: tuple[int, int, int]) -> torch.Tensor:
    first, count, repeats = piece
    frames = clips[:, first : first + count]
    return frames.expand(-1, repeats, -1, -1, -1) if repeats > 1 else frames


def _frame_indices(pieces: list[tuple[int, int, int]]) -> list[int]:
    """The frames of pieces ``(first, count, repeats)``, in order."""
    return [
        index
        for first, count, repeats in pieces
        for index in ([first] * repeats if repeats > 1 else range(first, first + count))
    ]


def _cat_pieces(clips: torch.Tensor, pieces: list[tuple[int, int, int]]) -> torch.Tensor:
    return torch.cat([_frames(clips, piece) for piece in pieces], 1)


class _FramePairs(torch.autograd.Function):
    """The pairs' first and second frames, each a concatenation of pieces of the clips.

    ``clips (N, T, c, H, W)`` -> ``firsts, seconds (N, pairs, c, H, W)``; a piece
    ``(first, count, repeats)`` is frames ``first .. first + count - 1``, or with ``repeats > 1``
    the frame ``first`` (``count == 1``) repeated. Forward, ``torch.cat`` of the pieces.
    Backward, the pieces' gradients added into one zero tensor, in the order (and so with the
    rounding) autograd would add them for slices and a cat, without its full-size zero tensor
    per piece and the sums of those.
    """

    @staticmethod
    def forward(ctx, clips, first_pieces, second_pieces):
        ctx.shape = clips.shape
        ctx.pieces = (first_pieces, second_pieces)
        return tuple(_cat_pieces(clips, pieces) for pieces in (first_pieces, second_pieces))

    @staticmethod
    def backward(ctx, grad_firsts, grad_seconds):
        grad = grad_firsts.new_zeros(ctx.shape)
        # Autograd reaches the seconds' pieces first, each side's last piece first.
        for side, pieces in ((grad_seconds, ctx.pieces[1]), (grad_firsts, ctx.pieces[0])):
            offsets = [0]
            for _, count, repeats in pieces:
                offsets.append(offsets[-1] + count * repeats)
            for (first, count, repeats), start in reversed(list(zip(pieces, offsets))):
                part = side[:, start : start + count * repeats]
                if repeats > 1:
                    part = part.sum(1, keepdim=True)
                grad[:, first : first + count] += part
        return grad, None, None


def _frame_pairs(
    clips: torch.Tensor,
    first_pieces: list[tuple[int, int, int]],
    second_pieces: list[tuple[int, int, int]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """:class:`_FramePairs` where a gradient is wanted; plain slices and cats otherwise (and
    while a graph is captured: tracing takes no Python autograd functions)."""
    if is_capturing() or not (torch.is_grad_enabled() and clips.requires_grad):
        return tuple(_cat_pieces(clips, pieces) for pieces in (first_pieces, second_pieces))
    return _FramePairs.apply(clips, first_pieces, second_pieces)


class MTDM(nn.Module):
    """Displacement fields between frames for two tempos.

    The fast tempo pairs adjacent frames ``(t, t+1)``; the slow tempo pairs the clip's first
    frame with every later one ``(0, t+1)``. Each pair gives ``[u, v, confidence]`` from a local
    correlation of channel-reduced, L2-normalised features and a kernel soft-argmax; the last
    pair's maps are repeated so there are T per clip.

    ``tempos`` keeps only some of the two (for ablations): the output then has 3 channels
    per tempo kept, in the order given.

    Args:
        in_channels: channels ``C`` of the input.
        num_segments: frames per clip ``T`` (at least 2).
        reduced_channels: channels the correlation works on.
        patch_size: displacements per axis (odd), radius ``patch_size // 2``.
        sigma: Gaussian window width of the soft-argmax, in displacement steps.
        temperature: softmax scale of the soft-argmax.
        tempos: which tempos to compute, ``("fast", "slow")`` in the reference.

    Shapes:
        input ``(N*T, C, H, W)`` -> output ``(N*T, 6, H, W)`` with channels
        ``[u_fast, v_fast, conf_fast, u_slow, v_slow, conf_slow]`` (``3 * len(tempos)``
        channels in general).
    """

    def __init__(
        self,
        in_channels: int,
        num_segments: int,
        reduced_channels: int = 64,
        patch_size: int = 15,
        sigma: float = 5.0,
        temperature: float = 100.0,
        tempos: Sequence[str] = TEMPOS,
    ) -> None:
        super().__init__()
        tempos = tuple(tempos)
        if not tempos or len(set(tempos)) != len(tempos) or set(tempos) - set(TEMPOS):
            raise ValueError(f"tempos must be distinct names among {TEMPOS}, got {tempos}")
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
        self.tempos = tempos
        self.out_channels = 3 * len(tempos)
        # Name kept from the reference release so its checkpoints map one-to-one.
        self.chnl_reduction = ConvBNReLU(*conv_bn_relu(in_channels, reduced_channels, 1))

    def reduce(self, x: torch.Tensor) -> torch.Tensor:
        """The channel reduction, L2-normalised: ``(N*T, C, H, W) -> (N*T, c, H, W)``, plain
        layout. Small maps on the CPU are reduced channels-last (see
        :func:`~tcm.layers.conv_bn.is_small_map`)."""
        if not (channels_last_helps(x) and is_small_map(x)):
            return normalize_channels(self.chnl_reduction(x))
        reduced = normalize_channels(self.chnl_reduction(to_layout(x, torch.channels_last)))
        return to_layout(reduced, torch.contiguous_format)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.reduce(x)
        channels, height, width = reduced.shape[1:]
        clips = reduced.view(-1, self.num_segments, channels, height, width)  # (N, T, c, H, W)
        frames = self.num_segments
        keep_fast = "fast" in self.tempos
        # Fast pairs (t, t+1), t = 0..T-2. Slow pairs (0, t+1): the first of them is the fast
        # pair (0, 1), computed once when the fast tempo is kept too.
        shared = 1 if keep_fast else 0
        firsts, seconds = [], []  # pieces: (first frame, frames, repeats of the first)
        if keep_fast:
            firsts.append((0, frames - 1, 1))
            seconds.append((1, frames - 1, 1))
        if "slow" in self.tempos and frames - 1 - shared > 0:
            firsts.append((0, 1, frames - 1 - shared))
            seconds.append((1 + shared, frames - 1 - shared, 1))
        pairs = sum(count * repeats for _, count, repeats in firsts)
        # ReLU'd local correlation and kernel soft-argmax, fused on the compiled path; on
        # small maps it reads the pairs' frames from the clips.
        kernels = clip_fields_kernels(clips, self.patch_size)
        if kernels is not None:
            fields = mtdm_clip_fields(
                clips,
                _frame_indices(firsts),
                _frame_indices(seconds),
                self.patch_size,
                self.sigma,
                self.temperature,
                kernels,
            )  # (N * pairs, 3, H, W)
        else:
            firsts, seconds = _frame_pairs(clips, firsts, seconds)  # (N, pairs, c, H, W) each
            fields = mtdm_fields(
                firsts.reshape(-1, channels, height, width),
                seconds.reshape(-1, channels, height, width),
                self.patch_size,
                self.sigma,
                self.temperature,
            )  # (N * pairs, 3, H, W)
        fields = fields.view(-1, pairs, 3, height, width).to(x.dtype)
        per_tempo = {}  # tempo -> (N, T-1, 3, H, W)
        if keep_fast:
            per_tempo["fast"] = fields[:, : frames - 1]
        if "slow" in self.tempos:
            slow = fields[:, pairs - (frames - 1 - shared) :]
            per_tempo["slow"] = torch.cat([fields[:, :1], slow], dim=1) if shared else slow
        # The last pair's maps repeated: T per clip, (N, T, 3, H, W) each.
        outputs = [torch.cat([f, f[:, -1:]], dim=1) for f in map(per_tempo.get, self.tempos)]
        return torch.cat(outputs, dim=2).view(-1, self.out_channels, height, width)

    def extra_repr(self) -> str:
        tempos = "" if self.tempos == TEMPOS else f", tempos={self.tempos}"
        return (
            f"num_segments={self.num_segments}, patch_size={self.patch_size}, "
            f"sigma={self.sigma}, temperature={self.temperature}{tempos}"
        )
