"""Clip-level recognizer: a frame backbone, a linear head and the average over segments."""

from __future__ import annotations

import torch
import torch.fx
from torch import nn

from tcm.models.plugin import RECOGNIZER_SEGMENTS, plugged_num_segments
from tcm.models.probe import feature_channels
from tcm.utils.imagenet import IMAGENET_MEAN, IMAGENET_STD


def check_clips(x: torch.Tensor, num_segments: int) -> None:
    """Raise ``ValueError`` unless ``x`` is ``(N, T', 3, H, W)`` with ``T'`` a multiple of
    ``num_segments``."""
    if x.dim() != 5:
        raise ValueError(
            f"expected a clip batch (N, T, 3, H, W), got a tensor of shape {list(x.shape)}"
        )
    if x.shape[2] != 3:
        raise ValueError(
            f"expected 3 colour channels at dim 2 of (N, T, 3, H, W), got {x.shape[2]}"
        )
    if x.shape[1] == 0 or x.shape[1] % num_segments != 0:
        raise ValueError(
            f"expected a frame count that is a multiple of num_segments={num_segments}, "
            f"got {x.shape[1]}"
        )


def check_feature_maps(frames: torch.Tensor, num_features: int) -> None:
    """Raise ``ValueError`` unless the backbone's output ``frames`` is ``(N*T, C, h, w)`` with
    ``C`` the classifier's ``num_features``."""
    if frames.dim() != 4:
        raise ValueError(
            f"the backbone returned {list(frames.shape)}; a backbone must return feature "
            "maps (N*T, C, h, w), not pooled features"
        )
    if frames.shape[1] != num_features:
        raise ValueError(
            f"the backbone returned {frames.shape[1]}-channel feature maps, but the classifier "
            f"takes {num_features} (the backbone's num_features attribute): correct it, or "
            "delete it to have the channels measured"
        )


torch.fx.wrap("check_clips")  # leaves of a torch.fx trace: a traced model keeps the checks
torch.fx.wrap("check_feature_maps")


class VideoRecognizer(nn.Module):
    """TSN-style recognizer around a frame backbone.

    Frames go through the backbone as ``(N*T, 3, H, W)`` (clip-major), are pooled, dropped out
    and classified; logits are averaged over the segments of a clip (consensus before softmax).

    Args:
        backbone: any module mapping ``(N*T, 3, H, W)`` to feature maps ``(N*T, C, h, w)``
            (a :class:`~tcm.models.ResNet`, a :class:`~tcm.models.MobileNetV2`, a user's CNN),
            with or without temporal shift and TCM plugged in (:mod:`tcm.models.plugin`).
            ``C`` is its ``num_features`` attribute, or measured on a zero clip; either is
            checked at every forward pass. The recognizer records ``num_segments`` on the
            backbone, so that plug-ins added later are refused for another ``T``.
        num_classes: ``K``.
        num_segments: frames per clip ``T``; default: the backbone's plug-ins' (or its
            ``num_segments`` attribute).
        dropout: dropout rate before the classifier.

    Shapes:
        input ``(N, T', 3, H, W)``, float, normalised with ``mean``/``std`` on 0..1 pixels,
        ``T'`` a multiple of ``num_segments``: ``T' / num_segments`` clips per sample, whose
        logits are averaged. Output logits ``(N, K)``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        dropout: float = 0.5,
        *,
        num_segments: int | None = None,
    ) -> None:
        super().__init__()
        plugged = plugged_num_segments(backbone)
        num_segments = num_segments or plugged or getattr(backbone, "num_segments", None)
        if not isinstance(num_segments, int) or num_segments < 1:
            raise ValueError("VideoRecognizer: give num_segments (frames per clip)")
        if plugged is not None and plugged != num_segments:
            raise ValueError(
                f"the backbone's plug-ins were made for num_segments={plugged}, not {num_segments}"
            )
        self.backbone = backbone
        setattr(backbone, RECOGNIZER_SEGMENTS, num_segments)  # checked by later plug-ins
        self.num_segments = num_segments
        self.num_classes = num_classes
        self.mean = IMAGENET_MEAN
        self.std = IMAGENET_STD
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(feature_channels(backbone, num_segments), num_classes)
        nn.init.normal_(self.fc.weight, std=0.001)
        nn.init.zeros_(self.fc.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, T', 3, H, W)`` -> pooled frame features ``(N*T', num_features)``."""
        check_clips(x, self.num_segments)
        frames = self.backbone(x.flatten(0, 1))  # (N*T', C, h, w)
        check_feature_maps(frames, self.fc.in_features)
        return frames.mean(dim=(2, 3))

    def forward_head(self, features: torch.Tensor, frames_per_sample: int) -> torch.Tensor:
        """``(N*T', num_features)`` -> logits ``(N, K)`` averaged over the ``T'`` frames."""
        logits = self.fc(self.dropout(features))  # (N*T', K)
        return logits.view(-1, frames_per_sample, self.num_classes).mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x), x.shape[1])
