"""Which frames of a video make a clip.

A sampler maps a video's frame count to frame indices ``(num_clips, T)`` (int64, 0-based).
Training draws one clip with a :class:`numpy.random.Generator`; testing is deterministic and
may take several clips per video.

- :class:`SegmentSampler` (TSN): the video is cut into ``T`` equal segments; training takes a
  random frame of each segment, testing the centre frame. Clip ``k`` of ``num_clips`` at test
  time takes the frame at ``(k + 0.5) / num_clips`` of each segment (``num_clips=1``: centre).
- :class:`DenseSampler`: ``T`` frames at a fixed stride from a start frame; training draws the
  start uniformly, testing spreads ``num_clips`` starts evenly over the video (one clip: the
  centre). A video shorter than the clip's span uses the largest stride that fits.

Videos with fewer frames than ``T`` repeat frames evenly (the reference's segment sampler fills
such clips with frame 0 at training time; evenly repeated frames keep the clip's order).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class ClipSampler(ABC):
    """Base class: ``sampler(num_frames, train=..., rng=..., num_clips=...) -> (num_clips, T)``."""

    def __init__(self, num_segments: int) -> None:
        if num_segments < 1:
            raise ValueError(f"num_segments must be >= 1, got {num_segments}")
        self.num_segments = num_segments

    @abstractmethod
    def __call__(
        self,
        num_frames: int,
        *,
        train: bool,
        rng: np.random.Generator | None = None,
        num_clips: int = 1,
    ) -> np.ndarray:
        """Frame indices ``(num_clips, T)`` for a video of ``num_frames`` frames."""

    def _check(self, num_frames: int, train: bool, rng, num_clips: int) -> None:
        if num_frames < 1:
            raise ValueError(f"a video needs at least one frame, got {num_frames}")
        if train and rng is None:
            raise ValueError("training sampling needs a random generator")
        if num_clips < 1:
            raise ValueError(f"num_clips must be >= 1, got {num_clips}")


def _spread(num_frames: int, count: int) -> np.ndarray:
    """``count`` evenly spread indices in ``[0, num_frames)``, repeating frames if needed."""
    return np.floor((np.arange(count) + 0.5) * num_frames / count).astype(np.int64)


class SegmentSampler(ClipSampler):
    """TSN segment sampling.

    Example:
        >>> SegmentSampler(4)(40, train=False)
        array([[ 5, 15, 25, 35]])
    """

    def __call__(self, num_frames, *, train, rng=None, num_clips=1):
        self._check(num_frames, train, rng, num_clips)
        t = self.num_segments
        if num_frames < t:
            return np.tile(_spread(num_frames, t), (num_clips, 1))
        if train:
            clips = []
            for _ in range(num_clips):
                length = num_frames // t
                offsets = rng.integers(0, length, size=t)
                clips.append(np.arange(t) * length + offsets)
            return np.stack(clips).astype(np.int64)
        tick = num_frames / t
        positions = (np.arange(num_clips)[:, None] + 0.5) / num_clips  # (num_clips, 1)
        indices = np.floor(tick * (np.arange(t)[None, :] + positions)).astype(np.int64)
        return np.minimum(indices, num_frames - 1)


class DenseSampler(ClipSampler):
    """Dense sampling: ``T`` frames ``stride`` apart (Kinetics convention, e.g. 8 x 8).

    Example:
        >>> DenseSampler(4, stride=2)(20, train=False, num_clips=2)
        array([[ 0,  2,  4,  6],
               [13, 15, 17, 19]])
    """

    def __init__(self, num_segments: int, stride: int = 8) -> None:
        super().__init__(num_segments)
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        self.stride = stride

    def __call__(self, num_frames, *, train, rng=None, num_clips=1):
        self._check(num_frames, train, rng, num_clips)
        t = self.num_segments
        if num_frames < t:
            return np.tile(_spread(num_frames, t), (num_clips, 1))
        stride = min(self.stride, (num_frames - 1) // (t - 1)) if t > 1 else 1
        span = (t - 1) * stride + 1
        last_start = max(0, num_frames - span)
        if train:
            starts = rng.integers(0, last_start + 1, size=num_clips)
        else:
            starts = np.round(np.linspace(0, last_start, num_clips)).astype(np.int64)
            if num_clips == 1:
                starts = np.array([last_start // 2])
        return (starts[:, None] + np.arange(t)[None, :] * stride).astype(np.int64)


def build_sampler(kind: str, num_segments: int, *, stride: int = 8) -> ClipSampler:
    """``"segments"`` -> :class:`SegmentSampler`, ``"dense"`` -> :class:`DenseSampler`."""
    if kind == "segments":
        return SegmentSampler(num_segments)
    if kind == "dense":
        return DenseSampler(num_segments, stride)
    raise ValueError(f"unknown sampling {kind!r}; expected 'segments' or 'dense'")
