"""What happens when in a long video: class probabilities of sliding windows, merged segments.

:class:`LongVideoPredictor` slides a window over a video file or a live stream (see
:mod:`tcm.deploy.windows` for the grid, the sampling and the constant memory), classifies the
windows in batches, and collects a :class:`Timeline`:

- one :class:`WindowPrediction` per window: start and end (seconds), the class probabilities
  ``(K,)``, and for a model with TCM the mean magnitude of its fast and slow displacement
  fields (input pixels), the module's view of the tempo;
- :class:`Segment` s, runs of consecutive windows with the same top class at or above a
  probability threshold; a window stands for the moment at its centre, so two segments meet
  half-way between the centres of their neighbouring windows (and the first and last segments
  reach the video's ends);
- :class:`BadStretch` es: parts that could not be decoded, whose windows were skipped;
- a strip of thumbnails along the video (at most ``thumbnails`` of them, evenly spread).

The per-window results grow with the video (``K`` floats per window); frames never do.

Example:
    >>> from tcm.deploy import LongVideoPredictor, Predictor
    >>> long = LongVideoPredictor(Predictor("best.pt"), window="2.0", stride="0.5")  # doctest: +SKIP
    >>> timeline = long.run("match.mp4")                                             # doctest: +SKIP
    >>> [(s.label, s.start, s.end) for s in timeline.segments(threshold=0.5)]        # doctest: +SKIP
    [('dribbling', 0.0, 12.25), ('shooting', 12.25, 14.0), ...]
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from tcm.data.transforms import resize
from tcm.deploy.inputs import to_model_input
from tcm.deploy.predictor import ClassScore, Predictor
from tcm.deploy.visualize import tcm_stages
from tcm.deploy.windows import (
    FramePreparer,
    Gap,
    SkippedWindow,
    Span,
    VideoStream,
    WindowAssembler,
    WindowClip,
    WindowPlan,
    check_spans,
)
from tcm.models.plugin import tcm_layers

logger = logging.getLogger(__name__)

#: Height of the thumbnails kept for the timeline picture, in pixels.
THUMBNAIL_SIZE = 64


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


class _Thumbnails:
    """At most ``capacity`` thumbnails, evenly spread over the windows seen so far: when full,
    every other one is dropped and from then on one window in twice as many is kept."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.items: list[tuple[float, np.ndarray]] = []
        self.every = 1
        self.seen = 0

    def offer(self, seconds: float, make: Callable[[], np.ndarray]) -> None:
        if self.capacity > 0 and self.seen % self.every == 0:
            self.items.append((seconds, make()))
            if len(self.items) > self.capacity:
                self.items = self.items[::2]
                self.every *= 2
        self.seen += 1


class LongVideoPredictor:
    """Classify sliding windows of long videos and live streams.

    Args:
        predictor: the model, its classes and its test preprocessing.
        window: window length: a :class:`~tcm.deploy.windows.Span` or its text (``"2.0"``
            seconds, ``"64f"`` frames).
        stride: time between window starts (default: a quarter of the window).
        batch_size: windows per forward pass.
        classify: normalised clips ``(N, V*T, 3, S, S)`` -> probabilities ``(N, K)``, to run
            another engine (an ONNX session); default :meth:`Predictor.predict_clips`.
        tempo: record TCM's field magnitudes (needs a TCM model and the default ``classify``).
        thumbnails: thumbnails kept for the timeline picture.

    Example:
        >>> long = LongVideoPredictor(predictor, window="2.0", stride="0.5")   # doctest: +SKIP
        >>> with long.open("match.mp4") as run:                                 # doctest: +SKIP
        ...     for event in run:           # WindowPrediction or BadStretch, as they come
        ...         ...
        >>> run.timeline.segments()                                             # doctest: +SKIP
    """

    def __init__(
        self,
        predictor: Predictor,
        window: Span | str = "2.0",
        stride: Span | str | None = None,
        *,
        batch_size: int = 8,
        classify: Callable[[torch.Tensor], torch.Tensor] | None = None,
        tempo: bool = True,
        thumbnails: int = 48,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch size must be positive, got {batch_size}")
        self.predictor = predictor
        self.window = window if isinstance(window, Span) else Span.parse(window)
        if stride is None:
            stride = self.window.scaled(0.25)
        self.stride = stride if isinstance(stride, Span) else Span.parse(stride)
        check_spans(self.window, self.stride, predictor.preprocessing.num_segments)
        self.batch_size = batch_size
        self.classify = classify or predictor.predict_clips
        self.tempo = tempo and classify is None and bool(tcm_stages(predictor.model))
        self.thumbnails = thumbnails

    def open(
        self,
        source: str | os.PathLike,
        *,
        live: bool = False,
        input_format: str | None = None,
        threads: int = 0,
    ) -> WindowRun:
        """Open ``source`` (see :class:`~tcm.deploy.windows.VideoStream`); iterate the result.

        Raises:
            BadVideoError: the source cannot be opened.
            ValueError: the window or stride does not suit its frame rate (see
                :func:`~tcm.deploy.windows.check_spans`).
        """
        stream = VideoStream(source, live=live, input_format=input_format, threads=threads)
        try:
            return WindowRun(self, stream)
        except BaseException:
            stream.close()
            raise

    def run(self, source: str | os.PathLike, **options: Any) -> Timeline:
        """The whole :class:`Timeline` of ``source`` (options as :meth:`open`)."""
        with self.open(source, **options) as run:
            for _ in run:
                pass
        return run.timeline


class WindowRun:
    """One pass over one source: iterate it for :class:`WindowPrediction` s and
    :class:`BadStretch` es in the order of the video; :attr:`timeline` collects them.

    Attributes:
        plan: the windows, in frames.
        position: seconds of video decoded so far (for a progress bar).
        duration: the video's length in seconds, ``None`` when unknown (a live source).
        timeline: the results so far.
        peak_frames: the largest number of prepared frames held at once.
    """

    def __init__(self, owner: LongVideoPredictor, stream: VideoStream) -> None:
        self.owner = owner
        self.stream = stream
        prep = owner.predictor.preprocessing
        check_spans(owner.window, owner.stride, prep.num_segments, stream.fps)
        self.plan = WindowPlan.build(
            owner.window, owner.stride, fps=stream.fps, prep=prep, num_frames=stream.num_frames
        )
        self.position = 0.0
        self.duration = stream.duration
        self.timeline = Timeline(
            source=stream.source,
            classes=owner.predictor.classes,
            fps=stream.fps,
            window=self.plan.seconds(self.plan.window),
            stride=self.plan.seconds(self.plan.stride),
        )
        self._assembler = WindowAssembler(self.plan, FramePreparer(prep))
        self._thumbnails = _Thumbnails(owner.thumbnails)
        self._probe = TempoProbe(owner.predictor.model, prep.input_size) if owner.tempo else None
        if self._probe is not None:
            self.timeline.tempo_stage = self._probe.stage
        logger.debug(
            "%s: %g fps, windows of %d frames every %d, sampling %s",
            stream.source,
            stream.fps,
            self.plan.window,
            self.plan.stride,
            self.plan.offsets.tolist(),
        )

    @property
    def peak_frames(self) -> int:
        return self._assembler.peak_frames

    def __iter__(self) -> Iterator[WindowPrediction | BadStretch]:
        plan, live = self.plan, self.stream.live
        pending: list[WindowClip] = []
        stretch: tuple[BadStretch, int] | None = None  # open stretch, its last grid frame + 1
        for item in self.stream:
            last = item.stop - 1 if isinstance(item, Gap) else item.index
            self.position = self.timeline.duration = plan.seconds(last + 1)
            if isinstance(item, Gap):
                if stretch is not None and item.start - stretch[1] < plan.window:
                    bad = stretch[0]
                    bad.end = plan.seconds(item.stop)
                    bad.frames += item.stop - item.start
                    stretch = (bad, item.stop)
                else:
                    if stretch is not None:
                        yield from self._flush(pending)
                        yield self._close(stretch[0])
                    start, end = plan.seconds(item.start), plan.seconds(item.stop)
                    stretch = (
                        BadStretch(start, end, item.reason, item.stop - item.start),
                        item.stop,
                    )
            for done in self._assembler.push(item):
                if isinstance(done, SkippedWindow):
                    if stretch is not None:
                        stretch[0].windows += 1
                    continue
                pending.append(done)
                if len(pending) >= self.owner.batch_size:
                    yield from self._flush(pending)
            if live and pending:
                yield from self._flush(pending)
            if stretch is not None and last >= stretch[1] + plan.window:
                yield from self._flush(pending)
                yield self._close(stretch[0])
                stretch = None
        yield from self._flush(pending)
        if stretch is not None:
            yield self._close(stretch[0])
        if not self.timeline.windows:
            logger.debug(
                "%s: no complete window of %g s in %.2f s of video",
                self.stream.source,
                self.timeline.window,
                self.position,
            )

    def _close(self, stretch: BadStretch) -> BadStretch:
        logger.debug(
            "%s: %.2f-%.2f s could not be decoded (%s); %d windows skipped",
            self.stream.source,
            stretch.start,
            stretch.end,
            stretch.reason,
            stretch.windows,
        )
        self.timeline.stretches.append(stretch)
        return stretch

    def _flush(self, pending: list[WindowClip]) -> Iterator[WindowPrediction]:
        if not pending:
            return
        prep = self.owner.predictor.preprocessing
        clips = to_model_input(torch.stack([w.clip for w in pending]), prep)  # (N, V*T, 3, S, S)
        tempo = None
        if self._probe is not None:
            with self._probe:
                probabilities = self.owner.classify(clips)
            views = prep.num_clips * prep.num_crops
            tempo = self._probe.last.view(len(pending), views, 2).mean(dim=1).tolist()
        else:
            probabilities = self.owner.classify(clips)
        probabilities = probabilities.float().cpu().numpy()  # (N, K)
        for i, window in enumerate(pending):
            result = WindowPrediction(
                window.k,
                self.plan.seconds(window.start),
                self.plan.seconds(window.stop),
                probabilities[i],
                tuple(tempo[i]) if tempo is not None else None,
            )
            self._thumbnails.offer(result.centre, lambda clip=window.clip: _thumbnail(clip, prep))
            self.timeline.thumbnails = self._thumbnails.items
            self.timeline.windows.append(result)
            yield result
        pending.clear()

    def close(self) -> None:
        self.stream.close()

    def __enter__(self) -> WindowRun:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _thumbnail(clip: torch.Tensor, prep) -> np.ndarray:
    """The middle sampled frame of a window's first view, ``THUMBNAIL_SIZE`` high:
    ``(h, w, 3)`` uint8."""
    frame = clip[prep.num_segments // 2]  # (3, S, S)
    if frame.shape[-2] > THUMBNAIL_SIZE:
        frame = resize(frame, THUMBNAIL_SIZE, short_side=True)
    return frame.permute(1, 2, 0).contiguous().numpy()
