"""What a long video's timeline holds: window predictions, bad stretches, and merged segments.

- :class:`WindowPrediction`: one window's start and end (seconds), class probabilities
  ``(K,)`` and, for a model with TCM, the tempo its fields measured;
- :class:`Segment`: a run of consecutive windows with the same top class at or above a
  probability threshold (:func:`merge_segments`); a window stands for the moment at its centre,
  so two segments meet half-way between the centres of their neighbouring windows;
- :class:`BadStretch`: a part that could not be decoded, whose windows were skipped;
- :class:`Timeline`: all of them for one video, with its thumbnails.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tcm.deploy.predictor import ClassScore


@dataclass
class WindowPrediction:
    """The result for one window.

    Attributes:
        k: window number (window ``k`` starts ``k`` strides into the video).
        start, end: seconds from the first frame.
        probabilities: ``(K,)`` float32 softmax probabilities.
        tempo: ``(fast, slow)`` mean displacement magnitude of the TCM layer, in input
            pixels, or ``None`` without TCM.
    """

    k: int
    start: float
    end: float
    probabilities: np.ndarray
    tempo: tuple[float, float] | None = None

    @property
    def centre(self) -> float:
        return (self.start + self.end) / 2

    def top(self, classes: list[str], topk: int = 5) -> list[ClassScore]:
        """The ``topk`` most probable classes, most probable first."""
        k = max(1, min(topk, self.probabilities.size))
        order = np.argsort(-self.probabilities, kind="stable")[:k]
        return [ClassScore(classes[i], int(i), float(self.probabilities[i])) for i in order]

    def to_dict(self, classes: list[str], topk: int = 5) -> dict[str, Any]:
        """``{"start", "end", "classes", "probabilities"}`` (top ``topk``), plus ``"tempo":
        {"fast", "slow"}`` with TCM."""
        top = self.top(classes, topk)
        out: dict[str, Any] = {
            "start": round(self.start, 4),
            "end": round(self.end, 4),
            "classes": [score.label for score in top],
            "probabilities": [round(score.probability, 6) for score in top],
        }
        if self.tempo is not None:
            out["tempo"] = {"fast": round(self.tempo[0], 4), "slow": round(self.tempo[1], 4)}
        return out


@dataclass
class Segment:
    """Consecutive windows with the same top class: ``[start, end)`` seconds, the class, the
    mean of its probability over the windows, and how many windows."""

    start: float
    end: float
    label: str
    index: int
    probability: float
    windows: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": round(self.start, 4),
            "end": round(self.end, 4),
            "label": self.label,
            "index": self.index,
            "probability": round(self.probability, 6),
            "windows": self.windows,
        }


@dataclass
class BadStretch:
    """Frames ``[start, end)`` seconds that could not be decoded (nearby stretches merged).

    Attributes:
        reason: why (the first error of the stretch).
        frames: grid frames that were missing.
        windows: windows skipped because they overlap it.
    """

    start: float
    end: float
    reason: str
    frames: int
    windows: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": round(self.start, 4),
            "end": round(self.end, 4),
            "reason": self.reason,
            "frames": self.frames,
            "windows": self.windows,
        }


def merge_segments(
    windows: list[WindowPrediction],
    classes: list[str],
    *,
    threshold: float = 0.5,
    stride: float,
) -> list[Segment]:
    """Runs of consecutive windows whose top class is the same and at least ``threshold``.

    A window below the threshold, or a window missing from the sequence (skipped), ends a run.
    A run's bounds lie half a stride before its first window's centre and after its last one's;
    a run that starts with the video's first window starts where that window starts, one that
    ends with the last window ends where that window ends.

    Args:
        windows: in order of ``k``.
        classes: class names.
        threshold: smallest top-class probability a window of a segment has.
        stride: seconds between window starts.
    """
    segments: list[Segment] = []
    run: list[WindowPrediction] = []
    best = -1

    def close() -> None:
        if not run:
            return
        first, last = run[0], run[-1]
        start = first.start if first is windows[0] else first.centre - stride / 2
        end = last.end if last is windows[-1] else last.centre + stride / 2
        mean = float(np.mean([w.probabilities[best] for w in run]))
        segments.append(Segment(start, end, classes[best], best, mean, len(run)))
        run.clear()

    for window in windows:
        top = int(np.argmax(window.probabilities))
        confident = window.probabilities[top] >= threshold
        if run and (not confident or top != best or window.k != run[-1].k + 1):
            close()
        if confident:
            best = top
            run.append(window)
    close()
    return segments


@dataclass
class Timeline:
    """Everything :class:`LongVideoPredictor` found in one video.

    Attributes:
        source: the file or stream.
        classes: class names.
        fps: frame rate of the time grid.
        window, stride: seconds.
        duration: seconds decoded.
        windows: :class:`WindowPrediction` per classified window, in order.
        stretches: :class:`BadStretch` es.
        thumbnails: ``(seconds, (h, w, 3) uint8)`` along the video.
        tempo_stage: the backbone stage of the TCM layer whose fields ``tempo`` measures, or
            ``None`` without TCM.
    """

    source: str
    classes: list[str]
    fps: float
    window: float
    stride: float
    duration: float = 0.0
    windows: list[WindowPrediction] = field(default_factory=list)
    stretches: list[BadStretch] = field(default_factory=list)
    thumbnails: list[tuple[float, np.ndarray]] = field(default_factory=list)
    tempo_stage: str | None = None

    def segments(self, threshold: float = 0.5) -> list[Segment]:
        return merge_segments(self.windows, self.classes, threshold=threshold, stride=self.stride)

    def probabilities(self) -> np.ndarray:
        """``(num_windows, K)``."""
        if not self.windows:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        return np.stack([w.probabilities for w in self.windows])

    def to_dict(self, *, topk: int = 5, threshold: float = 0.5) -> dict[str, Any]:
        return {
            "source": self.source,
            "fps": self.fps,
            "window": self.window,
            "stride": self.stride,
            "duration": round(self.duration, 4),
            "windows": [w.to_dict(self.classes, topk) for w in self.windows],
            "segments": [s.to_dict() for s in self.segments(threshold)],
            "skipped": [s.to_dict() for s in self.stretches],
        }
