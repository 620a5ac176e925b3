"""Running a classifier over a long video or a live stream: :class:`LongVideoPredictor`.

:class:`LongVideoPredictor` slides a window over a video file or a live stream (see
:mod:`tcm.data.video_stream` for the grid, :mod:`tcm.deploy.window_plan` for the sampling,
:mod:`tcm.deploy.windows` for the constant memory), classifies the windows in batches, and
collects a :class:`~tcm.deploy.timeline_records.Timeline`:

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
from typing import Any

import numpy as np
import torch

from tcm.data.transforms import resize
from tcm.data.video_stream import DecodedFrame, Gap, VideoStream
from tcm.deploy.inputs import to_model_input
from tcm.deploy.predictor import Predictor
from tcm.deploy.tcm_maps import tcm_stages
from tcm.deploy.tempo_probe import TempoProbe
from tcm.deploy.timeline_records import BadStretch, Timeline, WindowPrediction
from tcm.deploy.window_plan import Span, WindowPlan, check_spans
from tcm.deploy.windows import FramePreparer, SkippedWindow, WindowAssembler, WindowClip
from tcm.utils.prefetch import Prefetcher

logger = logging.getLogger(__name__)

#: Height of the thumbnails kept for the timeline picture, in pixels.
THUMBNAIL_SIZE = 64


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
        window: window length: a :class:`~tcm.deploy.window_plan.Span` or its text (``"2.0"``
            seconds, ``"64f"`` frames).
        stride: time between window starts (default: a quarter of the window).
        batch_size: windows per forward pass.
        classify: normalised clips ``(N, V*T, 3, S, S)`` -> probabilities ``(N, K)``, to run
            another engine (an ONNX session); default :meth:`Predictor.predict_clips`.
        tempo: record TCM's field magnitudes (needs a TCM model and the default ``classify``).
        thumbnails: thumbnails kept for the timeline picture.
        overlap: decode and prepare frames in a background thread while the model runs on
            the windows before (the results are the same; memory stays bounded).

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
        overlap: bool = True,
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
        self.overlap = overlap

    def open(
        self,
        source: str | os.PathLike,
        *,
        live: bool = False,
        input_format: str | None = None,
        threads: int = 0,
    ) -> WindowRun:
        """Open ``source`` (see :class:`~tcm.data.video_stream.VideoStream`); iterate the result.

        Raises:
            BadVideoError: the source cannot be opened.
            ValueError: the window or stride does not suit its frame rate (see
                :func:`~tcm.deploy.window_plan.check_spans`).
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
        self._prefetch: Prefetcher | None = None
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
        decoded = self._decoded()
        if self.owner.overlap:
            # Windows of this many items ahead at most: a batch and a window's frames.
            depth = self.plan.window + self.owner.batch_size * self.plan.stride
            decoded = self._prefetch = Prefetcher(decoded, depth=depth)
        for item, completed in decoded:
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
            for done in completed:
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

    def _decoded(self) -> Iterator[tuple[DecodedFrame | Gap, list[WindowClip | SkippedWindow]]]:
        """Each decoded frame or gap and the windows it completes (frames prepared)."""
        for item in self.stream:
            yield item, self._assembler.push(item)

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
        if self._prefetch is not None:
            self._prefetch.close()
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
