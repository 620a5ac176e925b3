"""MTDM: multi-scale temporal dynamics, displacement fields at a fast and a slow tempo."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from tcm.ops import mtdm_fields

torch.fx.wrap("mtdm_fields")  # one call in torch.fx graphs, as the operator is elsewhere

#: The two tempos of the reference, in the order of MTDM's output channels.
TEMPOS = ("fast", "slow")


class MTDM(nn.Module):
    """Displacement fields between frames for two tempos.

    The fast tempo pairs adjacent frames ``(t, t+1)``; the slow tempo pairs the clip's first
    frame with every later one ``(0, t+1)``. Each pair gives ``[u, v, confidence]`` from a local
    correlation of channel-reduced, L2-normalised features and a kernel soft-argmax
    (:func:`tcm.ops.mtdm_fields`); the last pair's maps are repeated so there are T per clip.

    Args:
        in_channels: channels ``C`` of the input.
        num_segments: frames per clip ``T`` (at least 2).
        reduced_channels: channels the correlation works on.
        patch_size: displacements per axis (odd), radius ``patch_size // 2``.
        sigma: Gaussian window width of the soft-argmax, in displacement steps.
        temperature: softmax scale of the soft-argmax.
        tempos: which tempos to compute, ``("fast", "slow")`` in the reference; an ablation
            keeps one, and the output has 3 channels per tempo kept, in the order given.

    Shapes:
        input ``(N*T, C, H, W)`` -> output ``(N*T, 6, H, W)`` with channels
        ``[u_fast, v_fast, conf_fast, u_slow, v_slow, conf_slow]``.
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
        self.chnl_reduction = nn.Sequential(
            nn.Conv2d(in_channels, reduced_channels, 1, bias=False),
            nn.BatchNorm2d(reduced_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.chnl_reduction(x)  # (N*T, c, H, W)
        features = features * torch.rsqrt(features.pow(2).sum(dim=1, keepdim=True) + 1e-6)
        _, channels, height, width = features.shape
        frames = self.num_segments
        clips = features.view(-1, frames, channels, height, width)  # (N, T, c, H, W)
        # Fast pairs (t, t+1) and slow pairs (0, t+1), t = 0 .. T-2; the pair (0, 1) is both
        # tempos' first and is computed once.
        firsts, seconds = [], []
        if "fast" in self.tempos:
            firsts.append(clips[:, :-1])
            seconds.append(clips[:, 1:])
        slow_from = 2 if "fast" in self.tempos else 1  # the first slow pair computed here
        if "slow" in self.tempos:
            firsts.append(clips[:, :1].expand(-1, frames - slow_from, -1, -1, -1))
            seconds.append(clips[:, slow_from:])
        firsts, seconds = torch.cat(firsts, dim=1), torch.cat(seconds, dim=1)  # (N, pairs, ...)
        fields = mtdm_fields(
            firsts.flatten(0, 1),
            seconds.flatten(0, 1),
            self.patch_size,
            self.sigma,
            self.temperature,
        )  # (N * pairs, 3, H, W)
        fields = fields.view(clips.shape[0], -1, 3, height, width).to(x.dtype)
        per_tempo = {  # tempo -> (N, T-1, 3, H, W)
            "fast": fields[:, : frames - 1],
            "slow": torch.cat([fields[:, :1], fields[:, frames - 1 :]], dim=1)
            if "fast" in self.tempos
            else fields,
        }
        # The last pair's maps repeated: T per clip, (N, T, 3, H, W) each.
        outputs = [torch.cat([f, f[:, -1:]], dim=1) for f in map(per_tempo.get, self.tempos)]
        return torch.cat(outputs, dim=2).view(-1, self.out_channels, height, width)

    def extra_repr(self) -> str:
        tempos = "" if self.tempos == TEMPOS else f", tempos={self.tempos}"
        return (
            f"num_segments={self.num_segments}, patch_size={self.patch_size}, "
            f"sigma={self.sigma}, temperature={self.temperature}{tempos}"
        )
