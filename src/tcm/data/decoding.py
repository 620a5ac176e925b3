"""Reading frames from video files (PyAV) and from folders of JPEG frames.

Both readers expose ``num_frames`` and ``get_frames(indices) -> uint8 array (N, H, W, 3)``
(RGB, ``N = len(indices)``, indices 0-based, repeats allowed). Problems with the input raise
:class:`BadVideoError` (a :class:`ValueError`) naming the file and the reason: the errors of
PyAV, of PIL and of the system reading the path are wrapped into it, so that a caller that goes
on past bad inputs catches :class:`BadVideoError` alone and a bug still propagates.

:class:`VideoReader` decodes only as far as the last frame it needs, and seeks to a key frame
when one lies between the current position and the next needed frame (skipping the frames in
between is cheaper than decoding them). Frames are identified by their presentation timestamp,
looked up in an index built from the packets (demuxing without decoding costs a few
milliseconds for a 10 s clip), so variable frame rate files are read exactly. Containers whose
timestamps do not give presentation order (AVI) are read sequentially and frames counted.
"""

from __future__ import annotations

import bisect
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter
from PIL import Image

logger = logging.getLogger(__name__)

DEFAULT_FRAME_TEMPLATE = "img_{:05d}.jpg"
"""Frame file names in folders, ``{}``- or ``%``-style: TSN's extraction (``img_00001.jpg``)."""

# One colour converter per thread and process, reused across frames and videos: a frame's
# own `to_ndarray(format=...)` sets up a new swscale context on every call, which costs more
# than decoding a small frame. A forked worker gets its own converter and must never free its
# parent's (freeing waits for threads that did not survive the fork), so they are kept by
# process id.
_converters = threading.local()

#: Options of ``VideoReformatter.reformat`` that keep the conversion in the calling thread.
#: PyAV 17 gave it a pool of swscale threads, which costs more than it saves on frames of a few
#: hundred pixels: with the cores busy (other loader workers, PyTorch's threads) the
#: conversion of a clip's 8 frames took 5-9 ms instead of 1. Earlier versions take no option.
REFORMAT_IN_CALLING_THREAD = {"threads": 1} if int(av.__version__.split(".")[0]) >= 17 else {}


def frame_to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """A decoded frame as an ``(H, W, 3)`` uint8 RGB array (one converter per thread and process)."""
    by_process = getattr(_converters, "by_process", None)
    if by_process is None:
        by_process = _converters.by_process = {}
    converter = by_process.get(os.getpid())
    if converter is None:
        converter = by_process[os.getpid()] = VideoReformatter()
    return converter.reformat(frame, format="rgb24", **REFORMAT_IN_CALLING_THREAD).to_ndarray()


# Reasons carried by BadVideoError, as reported by ``tcm check-data``.
MISSING = "missing"
EMPTY = "empty"
TRUNCATED = "truncated"
NOT_A_VIDEO = "not a video"
NO_VIDEO_STREAM = "no video stream"
TOO_FEW_FRAMES = "fewer frames than claimed"
MISSING_FRAME = "missing frame"
BAD_FRAME = "unreadable frame"
BAD_LABEL = "label out of range"
TOO_SMALL = "frames smaller than the crop"
UNREADABLE = "unreadable"  # the system refused to read the path (permission, I/O error)

# Magic bytes of containers, to tell a damaged video from a file that is not a video at all.
_SIGNATURES = (
    (4, b"ftyp"),  # mp4 / mov / m4v
    (0, b"\x1a\x45\xdf\xa3"),  # matroska / webm
    (0, b"RIFF"),  # avi
    (0, b"\x00\x00\x01\xba"),  # mpeg-ps
    (0, b"FLV"),
    (0, b"OggS"),
)


class BadVideoError(ValueError):
    """A sample that cannot be read: the message names the file and the problem.

    Attributes:
        path: the file or folder.
        reason: one of the short reasons of this module (``"missing"``, ``"truncated"``, ...).
        detail: free text with specifics.
    """

    def __init__(
        self, path: str | os.PathLike, reason: str | None = None, detail: str = ""
    ) -> None:
        if reason is None:  # re-raised from a DataLoader worker with the full message only
            path, reason, detail = _split_worker_message(str(path))
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        if not reason:
            super().__init__(self.path)
        else:
            super().__init__(f"{self.path}: {reason}" + (f" ({detail})" if detail else ""))

    def __reduce__(self):
        return (type(self), (self.path, self.reason, self.detail))


REASONS = (
    TOO_SMALL,
    MISSING,
    EMPTY,
    TRUNCATED,
    NOT_A_VIDEO,
    NO_VIDEO_STREAM,
    TOO_FEW_FRAMES,
    MISSING_FRAME,
    BAD_FRAME,
    BAD_LABEL,
    UNREADABLE,
)


def _split_worker_message(text: str) -> tuple[str, str, str]:
    """``(path, reason, detail)`` of the message a DataLoader worker re-raises: the worker's
    traceback, whose last line is ``...BadVideoError: PATH: REASON (DETAIL)``."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    last = lines[-1] if lines else text
    _, marker, message = last.partition("BadVideoError: ")
    message = message if marker else last
    for reason in REASONS:
        head, sep, tail = message.partition(f": {reason}")
        if sep and (not tail or (tail.startswith(" (") and tail.endswith(")"))):
            return head, reason, tail[2:-1]
    return message, "", ""


def _looks_like_container(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(12)
    except OSError:
        return False
    return any(head[offset : offset + len(magic)] == magic for offset, magic in _SIGNATURES)


def unreadable(path: str | os.PathLike, error: OSError) -> BadVideoError:
    """The :class:`BadVideoError` for a path the system refuses to read (``error``)."""
    return BadVideoError(path, UNREADABLE, error.strerror or str(error))


def _check_file(path: Path) -> None:
    try:
        exists = path.exists()
        is_dir = exists and path.is_dir()
        size = path.stat().st_size if exists else None
    except OSError as error:  # e.g. a folder on the way that may not be searched
        raise unreadable(path, error) from None
    if not exists:
        raise BadVideoError(path, MISSING, "no such file")
    if is_dir:
        raise BadVideoError(path, NOT_A_VIDEO, "is a directory")
    if size == 0:
        raise BadVideoError(path, EMPTY, "zero bytes")


class VideoReader:
    """Random access to the frames of one video file.

    Args:
        path: the video file.
        threads: decoder threads (1 suits DataLoader workers, which parallelise over videos;
            more decode several frames at once, which pays when workers are fewer than cores
            and frames are large; 0 lets FFmpeg choose).

    Example:
        >>> with VideoReader("clip.mp4") as reader:           # doctest: +SKIP
        ...     frames = reader.get_frames([0, 10, 20])        # (3, H, W, 3) uint8
    """

    #: Seek when the key frame before the next needed frame is more than this many frames
    #: ahead of the decoder's position.
    seek_threshold: int = 4

    def __init__(self, path: str | os.PathLike, *, threads: int = 1) -> None:
        self.path = Path(path)
        _check_file(self.path)
        try:
            self._container = av.open(str(self.path), metadata_errors="ignore")
        except av.error.FFmpegError as error:
            reason = TRUNCATED if _looks_like_container(self.path) else NOT_A_VIDEO
            raise BadVideoError(self.path, reason, str(error)) from None
        if not self._container.streams.video:
            self._container.close()
            raise BadVideoError(self.path, NO_VIDEO_STREAM)
        self._stream = self._container.streams.video[0]
        self._stream.thread_count = threads
        if threads != 1:
            # Frame threads: slice threads alone do nothing for the usual one-slice frames.
            self._stream.thread_type = "AUTO"
        #: frames decoded so far (for tests and benchmarks of the seeking logic)
        self.frames_decoded = 0
        try:
            self._build_index()
        except BadVideoError:
            self._container.close()
            raise

    # -- metadata ------------------------------------------------------------------------

    def _build_index(self) -> None:
        """Demux all packets once: presentation timestamps and key frames, no decoding."""
        pts, keys = [], []
        try:
            for packet in self._container.demux(self._stream):
                if packet.size == 0:
                    continue
                pts.append(packet.pts)
                if packet.is_keyframe:
                    keys.append(packet.pts)
        except av.error.FFmpegError as error:
            if not pts:
                raise BadVideoError(self.path, TRUNCATED, f"no readable packet: {error}") from None
            logger.debug("%s: demuxing stopped after %d packets: %s", self.path, len(pts), error)
        if not pts:
            raise BadVideoError(self.path, TRUNCATED, "the video stream holds no frame")
        self._count = len(pts)
        declared = self._stream.frames
        timestamps_ok = None not in pts and len(set(pts)) == len(pts)
        self._by_pts = timestamps_ok and self._container.format.name != "avi"
        if self._by_pts:
            self._pts = sorted(pts)
            self._index_of = {value: i for i, value in enumerate(self._pts)}
            self._keys = sorted(self._index_of[value] for value in keys if value in self._index_of)
        else:
            self._keys = []
        if declared and len(pts) < declared:
            raise BadVideoError(
                self.path, TRUNCATED, f"header declares {declared} frames, {len(pts)} present"
            )
        self._check_duration()
        try:
            self._seek_to_start()
        except av.error.FFmpegError as error:
            raise BadVideoError(
                self.path, TRUNCATED, f"cannot seek to the start: {error}"
            ) from None

    def _check_duration(self) -> None:
        """Without a frame count in the header (WebM, MKV), compare the packets' time span with
        the container's duration; only for video-only files, where the two must agree."""
        duration = self._container.duration  # microseconds
        if (
            self._stream.frames
            or not duration
            or not self._by_pts
            or len(self._container.streams) != 1
        ):
            return
        start = self._stream.start_time or 0
        covered = float((self._pts[-1] - start) * self._stream.time_base) * 1e6
        if covered < 0.75 * duration - 1e5:
            raise BadVideoError(
                self.path,
                TRUNCATED,
                f"frames cover {covered / 1e6:.2f} s of a {duration / 1e6:.2f} s video",
            )

    @property
    def num_frames(self) -> int:
        """Number of frames (video packets) in the stream."""
        return self._count

    @property
    def fps(self) -> float:
        rate = self._stream.average_rate or self._stream.guessed_rate
        return float(rate) if rate else 0.0

    @property
    def frame_rate(self) -> Fraction | None:
        """Average frame rate as a fraction (``None`` when the container gives none)."""
        return self._stream.average_rate or self._stream.guessed_rate or None

    @property
    def time_base(self) -> Fraction:
        """Unit of :attr:`timestamps`, in seconds."""
        return self._stream.time_base

    @property
    def timestamps(self) -> list[int] | None:
        """Presentation timestamp of each frame (in :attr:`time_base` units), in frame order;
        ``None`` when the container's timestamps do not give the order (frames are counted)."""
        return list(self._pts) if self._by_pts else None

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)`` of the decoded frames."""
        return self._stream.codec_context.height, self._stream.codec_context.width

    # -- decoding ------------------------------------------------------------------------

    def _seek_to_start(self) -> None:
        self._container.seek(0, backward=True, any_frame=False, stream=self._stream)
        self._iterator = None

    def _frames(self, start: int, wanted: set[int] | None = None):
        """Yield ``(index, frame)`` from the key frame ``start`` (0 = beginning) on.

        With ``wanted`` (frame indices), packets of other frames are decoded with
        ``skip_frame="NONREF"``: the decoder drops them when no other frame references them
        (B-frames), which is where most of the time between wanted frames goes. Frame threads
        take the setting with each packet, so this holds for any number of threads.
        """
        context = self._stream.codec_context
        skip = wanted is not None and self._by_pts
        wanted_pts = {self._pts[i] for i in wanted} if skip else set()
        context.skip_frame = "DEFAULT"
        if start > 0:
            self._container.seek(
                self._pts[start], backward=True, any_frame=False, stream=self._stream
            )
        else:
            self._seek_to_start()
        ordinal = 0
        last = -1
        for packet in self._container.demux(self._stream):
            if skip:
                needed = packet.pts is None or packet.pts in wanted_pts
                context.skip_frame = "DEFAULT" if needed else "NONREF"
            for frame in packet.decode():
                self.frames_decoded += 1
                if self._by_pts:
                    index = self._index_of.get(frame.pts)
                    if index is None or index <= last:
                        raise _TimestampMismatch
                else:
                    index = ordinal
                    ordinal += 1
                last = index
                yield index, frame

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        """Decode the frames at ``indices`` (0-based, any order, repeats allowed).

        Returns:
            uint8 array ``(len(indices), H, W, 3)``, RGB.
        """
        wanted = sorted({int(i) for i in indices})
        if not wanted:
            raise ValueError("no frame index given")
        if wanted[0] < 0:
            raise ValueError(f"negative frame index {wanted[0]}")
        if wanted[-1] >= self._count:
            raise BadVideoError(
                self.path,
                TOO_FEW_FRAMES,
                f"frame {wanted[-1]} requested, {self._count} in the video",
            )
        try:
            got = self._decode(wanted)
        except _TimestampMismatch:
            logger.debug("%s: timestamps do not give frame order; reading sequentially", self.path)
            self._by_pts = False
            self._keys = []
            got = self._decode(wanted)
        return np.stack([got[int(i)] for i in indices])

    def _decode(self, wanted: list[int]) -> dict[int, np.ndarray]:
        got: dict[int, np.ndarray] = {}
        wanted_set = set(wanted)
        iterator, position = None, -1
        try:
            for target in wanted:
                if target in got:
                    continue
                key = self._keys[bisect.bisect_right(self._keys, target) - 1] if self._keys else 0
                if iterator is None or (self._by_pts and key > position + self.seek_threshold):
                    iterator = self._frames(key, wanted_set)
                for index, frame in iterator:
                    position = index
                    if index in wanted_set and index not in got:
                        got[index] = frame_to_rgb(frame)
                    if index >= target:
                        break
                if target not in got:
                    if position > target:  # a seek landed past the target
                        raise _TimestampMismatch
                    raise BadVideoError(
                        self.path,
                        TRUNCATED,
                        f"decoding ended at frame {position + 1} of {self._count}",
                    )
        except av.error.FFmpegError as error:
            raise BadVideoError(self.path, TRUNCATED, f"decoding failed: {error}") from None
        return got

    def iter_frames(self) -> Iterator[av.VideoFrame]:
        """Every frame, in presentation order, decoded sequentially from the start."""
        self._stream.codec_context.skip_frame = "DEFAULT"
        self._seek_to_start()
        try:
            for packet in self._container.demux(self._stream):
                for frame in packet.decode():
                    self.frames_decoded += 1
                    yield frame
        except av.error.FFmpegError as error:
            raise BadVideoError(self.path, TRUNCATED, f"decoding failed: {error}") from None

    def read_all(self) -> int:
        """Decode every frame (without colour conversion); returns how many were decoded."""
        return sum(1 for _ in self.iter_frames())

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _TimestampMismatch(Exception):
    """Decoded timestamps do not match the packet index: fall back to counting frames."""


def format_frame_name(template: str, index: int) -> str:
    """``template`` with the frame number: ``{}``-style (``img_{:05d}.jpg``) or ``%``-style."""
    if "{" in template:
        return template.format(index)
    return template % index


def check_frame_template(template: str, what: str = "frame template") -> str:
    """``template`` if it names each frame by its number (``img_{:05d}.jpg``, ``%05d.jpg``);
    otherwise a ``ValueError`` that says what is wrong.

    Example:
        >>> check_frame_template("img_{:05d}.jpg")
        'img_{:05d}.jpg'
        >>> check_frame_template("img.jpg")
        Traceback (most recent call last):
        ...
        ValueError: frame template 'img.jpg' has no place for the frame number; write it as img_{:05d}.jpg or img_%05d.jpg
    """
    hint = "write it as img_{:05d}.jpg or img_%05d.jpg"
    if "{" not in template and "%" not in template:
        raise ValueError(f"{what} {template!r} has no place for the frame number; {hint}")
    try:
        names = {format_frame_name(template, index) for index in (1, 2, 10)}
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as error:
        raise ValueError(
            f"{what} {template!r} is not a valid name template ({type(error).__name__}: "
            f"{error}); {hint}"
        ) from None
    if len(names) < 3:
        raise ValueError(f"{what} {template!r} has no place for the frame number; {hint}")
    if any("/" in name or "\\" in name for name in names):
        raise ValueError(f"{what} {template!r} must be a file name, not a path")
    return template


class FrameFolderReader:
    """Frames stored as image files in a folder, named by a template.

    Args:
        path: the folder.
        num_frames: frames in the folder (from the list file); counted on disk when ``None``.
        template: file name of frame ``n``, ``{}``- or ``%``-style: ``"img_{:05d}.jpg"``.
        start_index: number of the first frame on disk (1 for ``img_00001.jpg``, or 0).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        num_frames: int | None = None,
        template: str = DEFAULT_FRAME_TEMPLATE,
        start_index: int = 1,
    ) -> None:
        self.path = Path(path)
        try:
            is_dir, exists = self.path.is_dir(), self.path.exists()
        except OSError as error:
            raise unreadable(self.path, error) from None
        if not is_dir:
            if exists:
                raise BadVideoError(self.path, NOT_A_VIDEO, "expected a folder of frames")
            raise BadVideoError(self.path, MISSING, "no such folder")
        self.template = check_frame_template(template)
        self.start_index = start_index
        if num_frames is None:
            from tcm.data.annotations import count_frames

            try:
                num_frames = count_frames(self.path)
            except OSError as error:
                raise unreadable(self.path, error) from None
        if num_frames <= 0:
            raise BadVideoError(self.path, EMPTY, "no frame")
        self._count = num_frames

    @property
    def num_frames(self) -> int:
        return self._count

    def frame_path(self, index: int) -> Path:
        return self.path / format_frame_name(self.template, index + self.start_index)

    def _load(self, index: int) -> np.ndarray:
        path = self.frame_path(index)
        try:
            with Image.open(path) as image:
                # JPEG frames decode as RGB: converting them would only copy
                return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
        except FileNotFoundError:
            if not self.frame_path(self._count - 1).exists():
                from tcm.data.annotations import count_frames

                detail = f"{count_frames(self.path)} on disk, {self._count} claimed"
                raise BadVideoError(self.path, TOO_FEW_FRAMES, detail) from None
            raise BadVideoError(self.path, MISSING_FRAME, f"{path.name} absent") from None
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            raise BadVideoError(self.path, BAD_FRAME, f"{path.name}: {error}") from None

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        """Load the frames at ``indices`` (0-based). Returns uint8 ``(len(indices), H, W, 3)``."""
        out: np.ndarray | None = None
        first_row: dict[int, int] = {}  # frame index -> its first row in ``out``
        for row, index in enumerate(int(i) for i in indices):
            if not 0 <= index < self._count:
                raise ValueError(f"frame index {index} out of range [0, {self._count})")
            if index in first_row:
                frame = out[first_row[index]]
            else:
                frame = self._load(index)
                first_row[index] = row
            if out is None:
                out = np.empty((len(indices), *frame.shape), dtype=frame.dtype)
            elif frame.shape != out.shape[1:]:
                sizes = sorted({frame.shape, out.shape[1:]})
                raise BadVideoError(self.path, BAD_FRAME, f"frames of different sizes {sizes}")
            out[row] = frame
        if out is None:
            raise ValueError("no frame index given")
        return out

    def check_all(self) -> int:
        """Decode every frame; returns the count. Raises :class:`BadVideoError` on the first bad one."""
        shape = None
        for index in range(self._count):
            frame = self._load(index)
            if shape is not None and frame.shape != shape:
                raise BadVideoError(self.path, BAD_FRAME, f"frame {index} has size {frame.shape}")
            shape = frame.shape
        return self._count

    def close(self) -> None:
        pass

    def __enter__(self) -> FrameFolderReader:
        return self

    def __exit__(self, *exc) -> None:
        pass


def open_media(
    path: str | os.PathLike,
    *,
    num_frames: int | None = None,
    frame_template: str = DEFAULT_FRAME_TEMPLATE,
    frame_start_index: int = 1,
    threads: int = 1,
) -> VideoReader | FrameFolderReader:
    """A reader for ``path``: a folder gives a :class:`FrameFolderReader`, a file a
    :class:`VideoReader`. ``num_frames`` (from a list file) is checked against the video."""
    path = Path(path)
    try:
        is_dir = path.is_dir()
    except OSError as error:
        raise unreadable(path, error) from None
    if is_dir:
        return FrameFolderReader(
            path, num_frames=num_frames, template=frame_template, start_index=frame_start_index
        )
    reader = VideoReader(path, threads=threads)
    if num_frames is not None and reader.num_frames < num_frames:
        reader.close()
        raise BadVideoError(
            path, TOO_FEW_FRAMES, f"list claims {num_frames}, the video has {reader.num_frames}"
        )
    return reader
