"""Sliding windows over a long video or a live stream, decoded once, in constant memory.

Frames live on a time grid: frame ``i`` is the one shown ``i / fps`` seconds after the first
(``fps`` is the stream's average rate; each decoded frame's index comes from its timestamp, so
a frame that cannot be decoded leaves a hole instead of shifting every later frame). Window
``k`` covers frames ``[k * stride, k * stride + window)`` and takes its ``T`` frames (per test
clip) with the checkpoint's test sampler applied to the window, exactly as ``tcm predict``
samples a whole clip of ``window`` frames.

Memory does not grow with the video: :class:`VideoStream` decodes packet by packet and hands
each frame on; :class:`WindowAssembler` converts, resizes and crops only the frames some window
samples, keeps them until the last window that needs them is complete, and hands out each
window's clip as soon as its last frame has been decoded. At most ``window`` frames (at the
model's input size) are held at any time, whatever the length of the video.

A stretch that cannot be decoded (a corrupt part of the file, a gap in a stream) arrives as a
:class:`Gap`; every window that overlaps it is skipped (a :class:`SkippedWindow`) and the
others go on.

Example:
    >>> prep = Preprocessing(num_segments=8, resize=[240, 320], input_size=224)
    >>> plan = WindowPlan.build(Span.parse("2.0"), Span.parse("0.5"), fps=25.0, prep=prep)
    >>> plan.window, plan.stride, plan.offsets.tolist()
    (50, 12, [[3, 9, 15, 21, 28, 34, 40, 46]])
"""

from __future__ import annotations

import logging
import os
import re
import select
import stat
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch

from tcm.data.decoding import (
    MISSING,
    NO_VIDEO_STREAM,
    NOT_A_VIDEO,
    BadVideoError,
    frame_to_rgb,
    special_file,
    unreadable,
)
from tcm.data.preprocessing import Preprocessing
from tcm.data.sampling import build_sampler
from tcm.data.transforms import center_crop, resize, three_crop

logger = logging.getLogger(__name__)

#: Frame rate assumed for a stream that states none (some webcams and raw streams).
FALLBACK_FPS = 25.0
#: Seconds to wait for a live source to open or to send data before giving up.
LIVE_TIMEOUT_S = 20.0
#: A hole in the timestamps of this many seconds or less, with no decoding error, is filled
#: with the frame before it (variable frame rate); a longer one is a :class:`Gap`.
MAX_HOLD_S = 1.0

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


@dataclass
class DecodedFrame:
    """Frame ``index`` of the time grid (a PyAV frame, not yet converted)."""

    index: int
    frame: av.VideoFrame


@dataclass
class Gap:
    """Frames ``[start, stop)`` of the grid that could not be decoded, and why."""

    start: int
    stop: int
    reason: str


def _open_pipe(path: Path, timeout: float) -> int:
    """A descriptor reading the named pipe ``path``, once something has been written to it;
    opening a pipe for reading would otherwise wait for a writer without end.

    Raises:
        BadVideoError: nothing written within ``timeout`` seconds, or the writer left
            without writing.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # returns at once, writer or not
    except OSError as error:
        raise unreadable(path, error) from None
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    events = poller.poll(timeout * 1000)
    if not events or not events[0][1] & select.POLLIN:
        os.close(fd)
        why = f"no data within {timeout:g} s" if not events else "the writer left without data"
        raise BadVideoError(path, "cannot open the stream", f"a named pipe: {why}")
    os.set_blocking(fd, True)
    return fd


class VideoStream:
    """Decode a video file or a live source once, frame by frame, onto the time grid.

    Args:
        source: a video file, a URL (``rtsp://``, ``http://``, ...) or a device
            (``/dev/video0`` with ``input_format="v4l2"``): anything PyAV opens.
        live: a live source: its length is unknown and it is not checked as a file. A named
            pipe is read once something is written to it (within :data:`LIVE_TIMEOUT_S`).
        input_format: FFmpeg input format to force (``"v4l2"``, ``"avfoundation"``, ...).
        threads: decoder threads (0: FFmpeg chooses).

    Attributes:
        fps: frames per second of the grid.
        num_frames: frames the container declares (estimated from its duration when it
            declares none); ``None`` for a live source.
        duration: seconds, ``None`` when unknown.

    Iterating yields a :class:`DecodedFrame` or a :class:`Gap` for every grid index from 0 up,
    in order, each index exactly once.

    Raises:
        BadVideoError: the source cannot be opened or holds no video stream.
    """

    def __init__(
        self,
        source: str | os.PathLike,
        *,
        live: bool = False,
        input_format: str | None = None,
        threads: int = 0,
    ) -> None:
        self.source = str(source)
        self.live = live
        self._pipe: int | None = None
        kind = None
        path = Path(source)
        try:
            info = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            if not live:
                raise BadVideoError(path, MISSING, "no such file") from None
        except OSError as error:
            raise unreadable(path, error) from None
        else:
            if stat.S_ISDIR(info.st_mode):
                raise BadVideoError(path, NOT_A_VIDEO, "a folder; windows need a video file")
            kind = special_file(info.st_mode)
        if kind is not None and not live:
            raise BadVideoError(
                path, NOT_A_VIDEO, f"{kind}, not a regular file; read it as a live source"
            )
        url = self.source
        if kind == "a named pipe":
            self._pipe = _open_pipe(path, LIVE_TIMEOUT_S)
            url = f"pipe:{self._pipe}"  # FFmpeg reads the descriptor: no second, blocking open
        try:
            self._container = av.open(
                url,
                format=input_format,
                metadata_errors="ignore",
                timeout=LIVE_TIMEOUT_S if live else None,
            )
        except (av.error.FFmpegError, OSError) as error:
            self._close_pipe()
            reason = "cannot open the stream" if live else NOT_A_VIDEO
            raise BadVideoError(self.source, reason, str(error)) from None
        if not self._container.streams.video:
            self.close()
            raise BadVideoError(self.source, NO_VIDEO_STREAM)
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        self._stream.thread_count = threads
        rate = self._stream.average_rate or self._stream.guessed_rate
        if rate:
            self.fps = float(rate)
        else:
            logger.warning("%s states no frame rate; assuming %g fps", self.source, FALLBACK_FPS)
            self.fps = FALLBACK_FPS
        self.num_frames: int | None = None
        self.duration: float | None = None
        if not live:
            if self._stream.duration and self._stream.time_base:
                self.duration = float(self._stream.duration * self._stream.time_base)
            elif self._container.duration:
                self.duration = self._container.duration / 1e6
            declared = self._stream.frames
            if declared:
                self.num_frames = int(declared)
            elif self.duration:
                self.num_frames = max(1, round(self.duration * self.fps))
            if self.duration is None and self.num_frames:
                self.duration = self.num_frames / self.fps

    def _grid(self, seconds: float) -> int:
        """Grid index of a timestamp (seconds)."""
        if self._origin is None:
            self._origin = seconds
        return round((seconds - self._origin) * self.fps)

    def _index(self, frame: av.VideoFrame, previous: int) -> int:
        """Grid index of a decoded frame, from its timestamp (or the next index without one)."""
        if frame.pts is None or frame.time_base is None:
            return previous + 1
        seconds = float(frame.pts * frame.time_base)
        index = self._grid(seconds)
        if index < previous - self.fps:  # timestamps restarted (a live stream reconnected)
            self._origin = seconds - (previous + 1) / self.fps
            index = previous + 1
        return index

    def __iter__(self) -> Iterator[DecodedFrame | Gap]:
        start = self._stream.start_time
        self._origin = float(start * self._stream.time_base) if start is not None else None
        previous = -1
        held: av.VideoFrame | None = None
        # Packets the decoder rejected, by timestamp (seconds), until a hole accounts for them:
        # the decoder outputs frames later than it takes packets, so they are matched by time.
        # A frame-threaded decoder reports an error up to one frame per thread late, hence the
        # slack (a hole counts as lost if a failure is reported that far after it).
        failed: list[float] = []
        slack = 0 if self._stream.thread_count == 1 else max(self._stream.thread_count, 16)
        failed_untimed = False
        reason = ""
        max_hold = max(1, round(MAX_HOLD_S * self.fps))
        try:
            for packet in self._container.demux(self._stream):
                try:
                    frames = packet.decode()
                except av.error.FFmpegError as failure:
                    reason = f"unreadable frames ({failure.strerror or failure})"
                    logger.debug("%s: packet at pts %s: %s", self.source, packet.pts, failure)
                    if packet.pts is None or packet.time_base is None:
                        failed_untimed = True
                    else:
                        failed.append(float(packet.pts * packet.time_base))
                    continue
                for frame in frames:
                    index = self._index(frame, previous)
                    if index <= previous:
                        continue  # two frames in one grid slot (variable frame rate): keep one
                    if index > previous + 1:
                        hole = index - previous - 1
                        lost = failed_untimed or any(
                            previous < self._grid(t) < index + slack for t in failed
                        )
                        if not lost and held is not None and hole <= max_hold:
                            for filled in range(previous + 1, index):
                                yield DecodedFrame(filled, held)
                        else:
                            why = reason if lost else f"no frame for {hole / self.fps:.2f} s"
                            yield Gap(previous + 1, index, why)
                        failed_untimed = False
                    failed = [t for t in failed if self._grid(t) > index]
                    held = frame
                    previous = index
                    yield DecodedFrame(index, frame)
        except av.error.FFmpegError as failure:
            reason = f"reading stopped ({failure.strerror or failure})"
            failed_untimed = True
            logger.debug("%s: %s after %d frames", self.source, reason, previous + 1)
        lost = failed_untimed or bool(failed)
        if lost and self.num_frames is not None and previous + 1 < self.num_frames:
            yield Gap(previous + 1, self.num_frames, reason)

    def close(self) -> None:
        self._container.close()
        self._close_pipe()

    def _close_pipe(self) -> None:
        if self._pipe is not None:
            os.close(self._pipe)
            self._pipe = None

    def __enter__(self) -> VideoStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class FramePreparer:
    """A decoded frame as the model's test pipeline prepares it, without normalisation.

    ``prep.resize`` (``[H, W]``, a short side, or none), then the centre crop (or the three
    crops) of ``prep.input_size``: the same operations, on the same frames, as
    :func:`~tcm.deploy.inputs.read_clip`.

    Returns (when called on a frame): uint8 ``(num_crops, 3, S, S)``, contiguous (it holds no
    reference to the full-size frame).
    """

    def __init__(self, prep: Preprocessing) -> None:
        if prep.num_crops not in (1, 3):
            raise ValueError(f"num_crops must be 1 or 3, got {prep.num_crops}")
        self.prep = prep

    def __call__(self, frame: av.VideoFrame) -> torch.Tensor:
        image = torch.from_numpy(frame_to_rgb(frame)).permute(2, 0, 1)[None]  # (1, 3, H, W)
        size = self.prep.resize
        if isinstance(size, tuple):
            image = resize(image, size)
        elif size is not None:
            image = resize(image, int(size), short_side=True)
        if self.prep.num_crops == 1:
            out = center_crop(image, self.prep.input_size)  # (1, 3, S, S)
        else:
            out = three_crop(image, self.prep.input_size)[:, 0]  # (3, 3, S, S)
        return out.contiguous()


@dataclass
class WindowClip:
    """A complete window: its number, frame range ``[start, stop)`` and uint8 clip
    ``(V*T, 3, S, S)`` (views in the order of :func:`~tcm.deploy.inputs.read_clip`)."""

    k: int
    start: int
    stop: int
    clip: torch.Tensor


@dataclass
class SkippedWindow:
    """A window that overlaps frames that could not be decoded."""

    k: int
    start: int
    stop: int
    reason: str


class WindowAssembler:
    """Keeps the prepared frames that pending windows sample; hands out complete windows.

    Feed it the items of a :class:`VideoStream` in order with :meth:`push`; each call returns
    the windows completed by that frame or gap (usually none or one).

    Args:
        plan: the windows.
        prepare: decoded frame -> ``(num_crops, 3, S, S)`` uint8 (a :class:`FramePreparer`).
    """

    def __init__(self, plan: WindowPlan, prepare: FramePreparer) -> None:
        self.plan = plan
        self.prepare = prepare
        self.next_window = 0
        self._frames: dict[int, torch.Tensor] = {}
        self._gaps: deque[Gap] = deque()
        #: the largest number of prepared frames held at once (for tests and benchmarks)
        self.peak_frames = 0

    @property
    def held_frames(self) -> int:
        """Prepared frames held now."""
        return len(self._frames)

    def push(self, item: DecodedFrame | Gap) -> list[WindowClip | SkippedWindow]:
        if isinstance(item, Gap):
            self._gaps.append(item)
            last = item.stop - 1
        else:
            last = item.index
            if self.plan.needed(item.index):
                self._frames[item.index] = self.prepare(item.frame)
                self.peak_frames = max(self.peak_frames, len(self._frames))
        done = []
        while self.plan.end(self.next_window) - 1 <= last:
            done.append(self._complete(self.next_window))
            self.next_window += 1
            self._forget_before(self.plan.start(self.next_window))
        return done

    def _complete(self, k: int) -> WindowClip | SkippedWindow:
        start, stop = self.plan.start(k), self.plan.end(k)
        for gap in self._gaps:
            if gap.start < stop and gap.stop > start:
                return SkippedWindow(k, start, stop, gap.reason)
        views = []
        for clip_indices in self.plan.indices(k):  # (T,) per test clip
            frames = torch.stack([self._frames[int(i)] for i in clip_indices], dim=1)
            views.append(frames)  # (num_crops, T, 3, S, S)
        clip = torch.cat(views).flatten(0, 1)  # (V*T, 3, S, S)
        return WindowClip(k, start, stop, clip)

    def _forget_before(self, first: int) -> None:
        for index in [i for i in self._frames if i < first]:
            del self._frames[index]
        while self._gaps and self._gaps[0].stop <= first:
            self._gaps.popleft()


def count_windows(plan: WindowPlan, num_frames: int) -> int:
    """Windows a video of ``num_frames`` grid frames holds completely."""
    if num_frames < plan.window:
        return 0
    return (num_frames - plan.window) // plan.stride + 1
