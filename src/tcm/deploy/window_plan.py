"""Where sliding windows lie on a video's time grid and which frames each one samples.

Window ``k`` covers frames ``[k * stride, k * stride + window)`` of the grid (see
:mod:`tcm.data.video_stream`) and takes its ``T`` frames (per test clip) with the checkpoint's
test sampler applied to the window, exactly as ``tcm predict`` samples a whole clip of
``window`` frames.

Example:
    >>> prep = Preprocessing(num_segments=8, resize=[240, 320], input_size=224)
    >>> plan = WindowPlan.build(Span.parse("2.0"), Span.parse("0.5"), fps=25.0, prep=prep)
    >>> plan.window, plan.stride, plan.offsets.tolist()
    (50, 12, [[3, 9, 15, 21, 28, 34, 40, 46]])
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import numpy as np

from tcm.data.preprocessing import Preprocessing
from tcm.data.sampling import build_sampler

logger = logging.getLogger(__name__)

_SPAN = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|f)?\s*$")


@dataclass(frozen=True)
class Span:
    """A length of video in seconds (``unit="s"``) or frames (``unit="f"``).

    Example:
        >>> Span.parse("2.5"), Span.parse("64f")
        (Span(value=2.5, unit='s'), Span(value=64.0, unit='f'))
        >>> Span.parse("64f").to_frames(fps=30.0), Span.parse("2.5").to_frames(fps=30.0)
        (64, 75)
    """

    value: float
    unit: str = "s"

    @classmethod
    def parse(cls, text: str | float) -> Span:
        """``"2"``, ``"2.0"`` or ``"2s"``: seconds; ``"64f"``: frames (a whole number)."""
        match = _SPAN.match(str(text))
        if match is None:
            raise ValueError(
                f"cannot read {text!r} as a length of video: give seconds (2.0, 2s) or frames (64f)"
            )
        value, unit = float(match.group(1)), match.group(2) or "s"
        if value <= 0:
            raise ValueError(f"a length of video must be positive, got {text!r}")
        if unit == "f" and value != int(value):
            raise ValueError(f"a number of frames must be whole, got {text!r}")
        return cls(value, unit)

    def to_frames(self, fps: float) -> int:
        """Frames at ``fps`` (at least one)."""
        if self.unit == "f":
            return int(self.value)
        return max(1, round(self.value * fps))

    def scaled(self, factor: float) -> Span:
        """The same unit, ``factor`` times as long (whole frames rounded, at least one)."""
        value = self.value * factor
        return Span(float(max(1, round(value))) if self.unit == "f" else value, self.unit)

    def __str__(self) -> str:
        return f"{int(self.value)} frames" if self.unit == "f" else f"{self.value:g} s"


def check_spans(window: Span, stride: Span, num_segments: int, fps: float | None = None) -> None:
    """A ``ValueError`` for a window shorter than the ``num_segments`` frames the model samples
    from it (frames would repeat), or a stride longer than the window (the video between two
    windows would be seen by none, yet merged segments would cover it). Without ``fps``, only
    what the lengths say by themselves is checked (frames, or both in the same unit).

    Example:
        >>> check_spans(Span.parse("1f"), Span.parse("1f"), num_segments=8)
        Traceback (most recent call last):
        ...
        ValueError: a window of 1 frames holds fewer frames than the 8 the model samples from each window; give a window of at least 8f
    """
    frames = window.to_frames(fps) if fps is not None or window.unit == "f" else None
    if frames is not None and frames < num_segments:
        at = f" at {fps:g} fps" if window.unit == "s" else ""
        raise ValueError(
            f"a window of {window} holds fewer frames{at} than the {num_segments} the model "
            f"samples from each window; give a window of at least {num_segments}f"
        )
    if fps is not None:
        longer = stride.to_frames(fps) > window.to_frames(fps)
    elif stride.unit == window.unit:
        longer = stride.value > window.value
    else:
        return
    if longer:
        raise ValueError(
            f"a stride of {stride} is longer than the window of {window}: the video between "
            "windows would be seen by none; give a stride up to the window"
        )


@dataclass(frozen=True)
class WindowPlan:
    """Where the windows lie and which frames each one samples, in frames of the time grid.

    Attributes:
        window: frames per window ``W``.
        stride: frames between window starts.
        offsets: ``(num_clips, T)`` frame offsets a window samples, from its first frame (the
            checkpoint's test sampler applied to ``W`` frames).
        fps: frames per second of the grid (to report times in seconds).
    """

    window: int
    stride: int
    offsets: np.ndarray
    fps: float

    @classmethod
    def build(
        cls,
        window: Span,
        stride: Span,
        *,
        fps: float,
        prep: Preprocessing,
        num_frames: int | None = None,
    ) -> WindowPlan:
        """The plan for a video at ``fps``; a video known to be shorter than one window
        (``num_frames``) gets one window covering all of it. (Whether the lengths suit a
        timeline is :func:`check_spans`'s concern.)"""
        window_frames = window.to_frames(fps)
        stride_frames = stride.to_frames(fps)
        if num_frames is not None and 0 < num_frames < window_frames:
            logger.info(
                "the video has %d frames, fewer than a window of %d: one window covers it",
                num_frames,
                window_frames,
            )
            window_frames = num_frames
        sampler = build_sampler(prep.sampling, prep.num_segments, stride=prep.dense_stride)
        offsets = sampler(window_frames, train=False, num_clips=prep.num_clips)
        return cls(window_frames, stride_frames, offsets, float(fps))

    def __post_init__(self) -> None:
        if self.window < 1 or self.stride < 1:
            raise ValueError(f"window and stride must be at least one frame, got {self}")
        # Frame i is sampled by some window iff i = k * stride + o for an offset o and k >= 0:
        # for each residue of the offsets modulo the stride, the smallest such offset.
        first: dict[int, int] = {}
        for offset in sorted({int(o) for o in self.offsets.reshape(-1)}):
            first.setdefault(offset % self.stride, offset)
        object.__setattr__(self, "_first_by_residue", first)

    def start(self, k: int) -> int:
        """First frame of window ``k``."""
        return k * self.stride

    def end(self, k: int) -> int:
        """One past the last frame of window ``k``."""
        return k * self.stride + self.window

    def indices(self, k: int) -> np.ndarray:
        """Frames window ``k`` samples: ``(num_clips, T)``."""
        return self.start(k) + self.offsets

    def needed(self, index: int) -> bool:
        """Whether any window samples frame ``index``."""
        first = self._first_by_residue.get(index % self.stride)
        return first is not None and index >= first

    def seconds(self, frames: float) -> float:
        """A frame position on the grid, in seconds."""
        return frames / self.fps


def count_windows(plan: WindowPlan, num_frames: int) -> int:
    """Windows a video of ``num_frames`` grid frames holds completely."""
    if num_frames < plan.window:
        return 0
    return (num_frames - plan.window) // plan.stride + 1
