"""The tempo TCM sees in a clip: a forward hook that measures its displacement fields."""

from __future__ import annotations

import torch

from tcm.deploy.tcm_maps import tcm_stages
from tcm.models.plugin import tcm_layers


class TempoProbe:
    """Mean magnitude of a TCM layer's fast and slow displacement fields, per clip.

    While open (``with probe:``), a forward hook on the layer's MTDM records, for the clips of
    the last forward pass, the mean over frames and positions of ``|(u, v)|`` in input pixels
    (``radius * input_size / w`` per unit; the repeated last frame of each clip left out).

    Attributes:
        last: ``(clips, 2)`` ``[fast, slow]`` of the last forward pass (``clips = N * V``).
    """

    def __init__(self, model: torch.nn.Module, input_size: int, stage: str | None = None):
        stages = tcm_stages(model)
        if not stages:
            raise ValueError("the model has no TCM layer")
        self.stage = stage or stages[0]
        self.layer = tcm_layers(model.backbone)[self.stage]
        self.radius = self.layer.mtdm.patch_size // 2
        self.input_size = input_size
        self.last: torch.Tensor | None = None
        self._handle = None

    def _record(self, _module, _inputs, output: torch.Tensor) -> None:
        frames = self.layer.num_segments
        height, width = output.shape[-2:]
        fields = output.detach().float().view(-1, frames, 6, height, width)[:, :-1]
        pixels = self.radius * self.input_size / width
        fast = torch.hypot(fields[:, :, 0], fields[:, :, 1]).mean(dim=(1, 2, 3))  # (clips,)
        slow = torch.hypot(fields[:, :, 3], fields[:, :, 4]).mean(dim=(1, 2, 3))
        self.last = (torch.stack([fast, slow], dim=1) * pixels).cpu()

    def __enter__(self) -> TempoProbe:
        self._handle = self.layer.mtdm.register_forward_hook(self._record)
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
