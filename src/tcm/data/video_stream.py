"""Decoding a video file or a live stream once, frame by frame, onto a time grid: :class:`VideoStream`.

Frames live on a time grid: frame ``i`` is the one shown ``i / fps`` seconds after the first
(``fps`` is the stream's average rate; each decoded frame's index comes from its timestamp, so
a frame that cannot be decoded leaves a hole instead of shifting every later frame). The
stream decodes packet by packet and hands each frame on, in constant memory; a stretch that
cannot be decoded (a corrupt part of the file, a gap in a stream) arrives as a :class:`Gap`.
Where :class:`~tcm.data.video_reader.VideoReader` seeks to the frames a clip samples, this
reads a long video or a stream from start to end, as sliding windows need.
"""

from __future__ import annotations

import logging
import os
import select
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av

from tcm.data.bad_video import (
    CANNOT_OPEN,
    NOT_A_VIDEO,
    BadVideoError,
    check_media_path,
    unreadable,
)
from tcm.data.pyav import open_video

logger = logging.getLogger(__name__)

#: Frame rate assumed for a stream that states none (some webcams and raw streams).
FALLBACK_FPS = 25.0
#: Seconds to wait for a live source to open or to send data before giving up.
LIVE_TIMEOUT_S = 20.0
#: A hole in the timestamps of this many seconds or less, with no decoding error, is filled
#: with the frame before it (variable frame rate); a longer one is a :class:`Gap`.
MAX_HOLD_S = 1.0


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
        raise BadVideoError(path, CANNOT_OPEN, f"a named pipe: {why}")
    os.set_blocking(fd, True)
    return fd


def _is_still_image(container: av.container.InputContainer) -> bool:
    """A single picture (JPEG, PNG, ... read by FFmpeg's image demuxers), which states neither
    frames nor duration."""
    name = container.format.name
    return name == "image2" or name.endswith("_pipe")


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
        path = Path(source)
        kind = check_media_path(path, live=live, hint="; read it as a live source")
        url = None
        if kind == "a named pipe":
            self._pipe = _open_pipe(path, LIVE_TIMEOUT_S)
            url = f"pipe:{self._pipe}"  # FFmpeg reads the descriptor: no second, blocking open
        try:
            self._container = open_video(
                self.source,
                url=url,
                input_format=input_format,
                timeout=LIVE_TIMEOUT_S if live else None,
                failure=CANNOT_OPEN if live else NOT_A_VIDEO,
            )
        except BadVideoError:
            self._close_pipe()
            raise
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
            elif _is_still_image(self._container):
                self.num_frames, self.duration = 1, 1 / self.fps  # a one-frame clip
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
