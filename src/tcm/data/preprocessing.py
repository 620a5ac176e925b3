"""How frames become a model's input: one description for training, testing and inference.

A :class:`Preprocessing` says how clips are sampled from a video, resized, cropped, augmented
(training) or split into views (testing), and normalised. Training builds it from the config
(:func:`tcm.engine.preprocessing.preprocessing_from_config`) and writes it into every
checkpoint's ``data`` entry (:meth:`Preprocessing.to_dict`); ``tcm test``, ``tcm predict``, ``tcm export`` and
``tcm visualize`` read it back (:meth:`Preprocessing.from_checkpoint`), so a model is always
fed as it was trained. :func:`tcm.data.build_dataset` takes one.

Where the frames are stored (frame folder names, the first frame's number) is not part of it:
that belongs to a data set, not to a model.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tcm.utils.imagenet import IMAGENET_MEAN, IMAGENET_STD

logger = logging.getLogger(__name__)


def _size(value: Any) -> int | tuple[int, int] | None:
    """``[H, W]`` -> ``(H, W)``; an int (short side) or ``None`` as it is."""
    if value is None:
        return None
    if isinstance(value, Sequence) and not isinstance(value, str):
        height, width = (int(v) for v in value)
        return height, width
    return int(value)


@dataclass(frozen=True)
class Preprocessing:
    """Frames -> clips of a model: sampling, geometry, augmentation, test views, normalisation.

    Attributes:
        num_segments: frames per clip ``T``.
        sampling: ``"segments"`` (TSN: one frame from each of ``T`` segments) or ``"dense"``
            (``T`` frames ``dense_stride`` apart).
        dense_stride: frame stride of dense sampling.
        input_size: side ``S`` of the square input the model sees.
        resize: ``(H, W)`` for every frame (Something-Something ``(240, 320)``), an int for the
            short side (Kinetics ``256``), or ``None``.
        mean: per-channel mean of 0..1 RGB pixels (the model's).
        std: per-channel standard deviation of 0..1 RGB pixels (the model's).
        num_clips: test clips per video; the model averages the ``V = num_clips *
            num_crops`` views.
        num_crops: test crops per clip: 1 (centre) or 3 (along the long side).
        short_side_range: training only: the short side drawn per clip in ``[lo, hi]``.
        train_crop: ``"multiscale"`` (TSN multi-scale crop) or ``"random"``.
        scales, max_distort, more_fix_crop: the multi-scale crop's options.
        flip: random horizontal flip in training.

    Example:
        >>> prep = Preprocessing(num_segments=8, resize=[240, 320], num_clips=2, num_crops=3)
        >>> prep.resize, prep.frames_per_input
        ((240, 320), 48)
    """

    num_segments: int = 8
    sampling: str = "segments"
    dense_stride: int = 8
    input_size: int = 224
    resize: int | tuple[int, int] | None = (240, 320)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    num_clips: int = 1
    num_crops: int = 1
    short_side_range: tuple[int, int] | None = None
    train_crop: str = "multiscale"
    scales: tuple[float, ...] = (1.0, 0.875, 0.75, 0.66)
    max_distort: int = 1
    more_fix_crop: bool = False
    flip: bool = True

    def __post_init__(self) -> None:
        # Lists from YAML or JSON become tuples, so that equal descriptions compare equal.
        fix = object.__setattr__
        for name in ("num_segments", "dense_stride", "input_size", "num_clips", "num_crops"):
            fix(self, name, int(getattr(self, name)))
        fix(self, "resize", _size(self.resize))
        fix(self, "mean", tuple(float(v) for v in self.mean))
        fix(self, "std", tuple(float(v) for v in self.std))
        fix(self, "scales", tuple(float(v) for v in self.scales))
        if self.short_side_range is not None:
            low, high = (int(v) for v in self.short_side_range)
            fix(self, "short_side_range", (low, high))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preprocessing:
        """Read :meth:`to_dict`'s output; unknown entries (such as the frame names older
        checkpoints recorded) are ignored, missing ones take the defaults."""
        known = {f.name for f in dataclasses.fields(cls)}
        nullable = {"resize", "short_side_range"}
        return cls(
            **{k: v for k, v in data.items() if k in known and (v is not None or k in nullable)}
        )

    @classmethod
    def from_checkpoint(cls, checkpoint: Mapping[str, Any]) -> Preprocessing:
        """Read ``checkpoint["data"]``. A checkpoint without one gets the reference test recipe
        (resize 240x320, centre crop 224, ImageNet mean and std) with a warning."""
        data = dict(checkpoint.get("data") or {})
        if not data:
            logger.warning(
                "the checkpoint records no preprocessing; using the reference test recipe "
                "(resize 240x320, centre crop 224, ImageNet mean/std)"
            )
        data["num_segments"] = data.get("num_segments") or checkpoint["model"]["num_segments"]
        return cls.from_dict(data)

    @property
    def views(self) -> tuple[int, int]:
        """``(num_clips, num_crops)``."""
        return self.num_clips, self.num_crops

    @property
    def frames_per_input(self) -> int:
        """Frames the model receives per video: ``num_clips * num_crops * num_segments``."""
        return self.num_clips * self.num_crops * self.num_segments

    def replace(self, **changes: Any) -> Preprocessing:
        """A copy with ``changes`` (e.g. other test views)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and numbers, for a checkpoint's ``data`` entry (YAML and JSON-ready)."""
        out = dataclasses.asdict(self)
        for key in ("resize", "mean", "std", "scales", "short_side_range"):
            if isinstance(out[key], tuple):
                out[key] = list(out[key])
        return out
