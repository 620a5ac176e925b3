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

With ``threads > 1`` the stretches that start at such a seek ("runs": a key frame and the
needed frames decoded from it) go to up to ``threads`` single-threaded decoders of the same
file, one per thread of a process-wide pool, which decode and convert to RGB in parallel (PyAV
releases the GIL while decoding); the frames are the same as with one decoder, bit for bit.
"""

from __future__ import annotations

import bisect
import logging
import os
import stat
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
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


# The threads that run a reader's extra decoders: (process id, threads, pool). Created on first
# use; a forked child (a DataLoader worker) inherits the pool without its threads, so it makes
# its own. A reader wanting more threads replaces it; the old pool's threads end once the
# readers using it let go (never shut down here: another thread may be submitting to it).
_pool: tuple[int, int, ThreadPoolExecutor] | None = None


def _thread_pool(threads: int) -> ThreadPoolExecutor:
    """This process's pool of decoding threads, with at least ``threads`` threads."""
    global _pool
    pool = _pool
    if pool is None or pool[0] != os.getpid() or pool[1] < threads:
        executor = ThreadPoolExecutor(threads, thread_name_prefix="tcm-decode")
        pool = _pool = (os.getpid(), threads, executor)
    return pool[2]


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


_SPECIAL_FILES = (
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def special_file(mode: int) -> str | None:
    """What a path of ``st_mode`` ``mode`` is when it is neither a regular file nor a folder
    (``"a named pipe"``, ``"a character device"``, ...); ``None`` otherwise. Such a path cannot
    be read as a video file: it has no length and cannot seek, and reading a pipe nobody
    writes to waits forever."""
    return next((kind for test, kind in _SPECIAL_FILES if test(mode)), None)


def _check_file(path: Path) -> None:
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise BadVideoError(path, MISSING, "no such file") from None
    except OSError as error:  # e.g. a folder on the way that may not be searched
        raise unreadable(path, error) from None
    if stat.S_ISDIR(info.st_mode):
        raise BadVideoError(path, NOT_A_VIDEO, "is a directory")
    kind = special_file(info.st_mode)
    if kind is not None:
        raise BadVideoError(path, NOT_A_VIDEO, f"{kind}, not a regular file")
    if info.st_size == 0:
        raise BadVideoError(path, EMPTY, "zero bytes")


class _Decoder:
    """One demuxer and single-threaded decoder of the file, and the frames it has decoded."""

    __slots__ = ("container", "decoded", "stream")

    def __init__(self, container: av.container.InputContainer) -> None:
        self.container = container
        self.stream = container.streams.video[0]
        self.stream.thread_count = 1  # frame threads cost more than they save on small frames
        self.decoded = 0


class VideoReader:
    """Random access to the frames of one video file.

    Args:
        path: the video file.
        threads: decoders working in parallel threads on one :meth:`get_frames` call (0: one
            per CPU core). Each decodes the stretches of the clip that start at a key frame
            (a seek), so more than one pays only when the needed frames lie behind several key
            frames; every decoder beyond the first opens the file once more (kept until
            :meth:`close`). 1 suits DataLoader workers, which parallelise over videos when
            there are as many of them as cores.

    Example:
        >>> with VideoReader("clip.mp4") as reader:           # doctest: +SKIP
        ...     frames = reader.get_frames([0, 10, 20])        # (3, H, W, 3) uint8
    """

    #: Seek when the key frame before the next needed frame is more than this many frames
    #: ahead of the decoder's position.
    seek_threshold: int = 4

    #: What opening the file again for one more decoder costs, in frames decoded: 1-2 ms, about
    #: 4 frames of 340x256 H.264 with or without B-frames. A decoder not yet open starts with
    #: this much work when the runs are dealt, so that small jobs stay with the open ones.
    open_cost: int = 4

    def __init__(self, path: str | os.PathLike, *, threads: int = 1) -> None:
        if threads < 0:
            raise ValueError(f"threads must be 0 (one per core) or more, got {threads}")
        self.path = Path(path)
        self.threads = threads or os.cpu_count() or 1
        _check_file(self.path)
        try:
            self._container = av.open(str(self.path), metadata_errors="ignore")
        except av.error.FFmpegError as error:
            reason = TRUNCATED if _looks_like_container(self.path) else NOT_A_VIDEO
            raise BadVideoError(self.path, reason, str(error)) from None
        if not self._container.streams.video:
            self._container.close()
            raise BadVideoError(self.path, NO_VIDEO_STREAM)
        #: the reader's own decoder, then those of parallel threads (``None`` until opened)
        self._decoders: list[_Decoder | None] = [_Decoder(self._container)]
        self._stream = self._decoders[0].stream
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
        self._presentation = sorted(pts) if timestamps_ok else None
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
    def frames_decoded(self) -> int:
        """Frames decoded so far by all decoders (for tests and benchmarks of the seeking)."""
        return sum(decoder.decoded for decoder in self._decoders if decoder is not None)

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
    def presentation_timestamps(self) -> list[int] | None:
        """When each frame is shown (in :attr:`time_base` units), in frame order, from the
        packets: also for AVI, whose decoder does not report them in frame order (see
        :attr:`timestamps`); ``None`` when packets lack timestamps or repeat one."""
        return list(self._presentation) if self._presentation is not None else None

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)`` of the decoded frames."""
        return self._stream.codec_context.height, self._stream.codec_context.width

    # -- decoding ------------------------------------------------------------------------

    def _seek_to_start(self) -> None:
        self._container.seek(0, backward=True, any_frame=False, stream=self._stream)

    def _frames(self, decoder: _Decoder, start: int, wanted: set[int]):
        """Yield ``(index, frame)`` from the key frame ``start`` (0 = beginning) on.

        Packets of frames not in ``wanted`` (indices) are decoded with ``skip_frame="NONREF"``:
        the decoder drops them when no other frame references them (B-frames), which is where
        most of the time between wanted frames goes.
        """
        container, stream = decoder.container, decoder.stream
        context = stream.codec_context
        skip = self._by_pts
        wanted_pts = {self._pts[i] for i in wanted} if skip else set()
        context.skip_frame = "DEFAULT"
        position = self._pts[start] if start > 0 else 0
        container.seek(position, backward=True, any_frame=False, stream=stream)
        ordinal = 0
        last = -1
        for packet in container.demux(stream):
            if skip:
                needed = packet.pts is None or packet.pts in wanted_pts
                context.skip_frame = "DEFAULT" if needed else "NONREF"
            for frame in packet.decode():
                decoder.decoded += 1
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

    def _plan(self, wanted: list[int]) -> list[list[int]]:
        """The runs of a sequential reading of ``wanted`` (sorted, no repeats): each is the key
        frame where the decoder starts (the beginning, or a seek: when the key frame before
        the next wanted frame lies more than :attr:`seek_threshold` frames past the last one),
        followed by the wanted frames it then decodes up to."""
        runs: list[list[int]] = []
        for target in wanted:
            key = self._key_before(target)
            if not runs or (self._by_pts and key > runs[-1][-1] + self.seek_threshold):
                runs.append([key])
            runs[-1].append(target)
        return runs

    def _key_before(self, index: int) -> int:
        """The last key frame at or before frame ``index`` (0 without one, or without the
        index of key frames)."""
        place = bisect.bisect_right(self._keys, index)
        return self._keys[place - 1] if place else 0

    def _decode(self, wanted: list[int]) -> dict[int, np.ndarray]:
        """The RGB frames of ``wanted`` (sorted, no repeats), by index."""
        runs = self._plan(wanted)
        wanted_set = set(wanted)
        if self.threads > 1 and len(runs) > 1:
            return self._decode_in_parallel(runs, wanted_set)
        got: dict[int, np.ndarray] = {}
        for run in runs:
            self._decode_run(self._decoders[0], run, wanted_set, got)
        return got

    def _decode_run(
        self, decoder: _Decoder, run: list[int], wanted: set[int], got: dict[int, np.ndarray]
    ) -> None:
        """Decode ``run`` (a key frame, then wanted frames) with ``decoder`` into ``got``.
        ``wanted`` (all the frames of the call) says which packets are decoded in full."""
        key, targets = run[0], set(run[1:])
        position = key - 1
        try:
            for index, frame in self._frames(decoder, key, wanted):
                position = index
                if index in targets and index not in got:
                    got[index] = frame_to_rgb(frame)
                if index >= run[-1]:
                    break
        except av.error.FFmpegError as error:
            raise BadVideoError(self.path, TRUNCATED, f"decoding failed: {error}") from None
        missing = [index for index in run[1:] if index not in got]
        if missing and position > missing[0]:  # a seek landed past the frame
            raise _TimestampMismatch
        if missing:
            raise BadVideoError(
                self.path, TRUNCATED, f"decoding ended at frame {position + 1} of {self._count}"
            )

    def _decode_in_parallel(self, runs: list[list[int]], wanted: set[int]) -> dict:
        """Decode ``runs`` with up to :attr:`threads` decoders in parallel: this thread runs
        the reader's own decoder, the pool's threads the others. Raises the error of the
        earliest run that failed, as reading them in order would."""
        count = min(self.threads, len(runs))
        self._decoders += [None] * (count - len(self._decoders))
        opening = [0 if d is not None else self.open_cost for d in self._decoders[:count]]
        shares = _share_out(runs, opening)
        busy = [slot for slot in range(1, count) if shares[slot]]
        pool = _thread_pool(count - 1) if busy else None
        futures = [pool.submit(self._decode_share, slot, shares[slot], wanted) for slot in busy]
        try:
            outcomes = [self._decode_share(0, shares[0], wanted)]
        finally:
            wait(futures)  # no decoder may still be busy when this returns or raises
        outcomes += [future.result() for future in futures]
        failures = [failure for _, failure in outcomes if failure is not None]
        if failures:
            raise min(failures, key=lambda failure: failure[0])[1]
        got: dict[int, np.ndarray] = {}
        for share_got, _ in outcomes:
            got.update(share_got)
        return got

    def _decode_share(self, slot: int, runs: list[list[int]], wanted: set[int]):
        """Decode ``runs`` in order with decoder ``slot``: ``(frames by index, None)``, or at
        the first run that fails ``(frames so far, (its key frame, the error))``."""
        got: dict[int, np.ndarray] = {}
        for run in runs:
            try:
                self._decode_run(self._decoder(slot), run, wanted, got)
            except (BadVideoError, _TimestampMismatch) as error:
                return got, (run[0], error)
        return got, None

    def _decoder(self, slot: int) -> _Decoder:
        """Decoder ``slot``, opening the file again the first time: in the thread that uses it,
        so that opening overlaps the other decoders' work. The packet index is the reader's
        own (no demuxing)."""
        decoder = self._decoders[slot]
        if decoder is None:
            try:
                container = av.open(str(self.path), metadata_errors="ignore")
            except (av.error.FFmpegError, OSError) as error:
                raise BadVideoError(
                    self.path, TRUNCATED, f"cannot open another decoder: {error}"
                ) from None
            if not container.streams.video:
                container.close()
                raise BadVideoError(self.path, NO_VIDEO_STREAM, "when opened again")
            decoder = self._decoders[slot] = _Decoder(container)
        return decoder

    def iter_frames(self) -> Iterator[av.VideoFrame]:
        """Every frame, in presentation order, decoded sequentially from the start."""
        self._stream.codec_context.skip_frame = "DEFAULT"
        self._seek_to_start()
        try:
            for packet in self._container.demux(self._stream):
                for frame in packet.decode():
                    self._decoders[0].decoded += 1
                    yield frame
        except av.error.FFmpegError as error:
            raise BadVideoError(self.path, TRUNCATED, f"decoding failed: {error}") from None

    def read_all(self) -> int:
        """Decode every frame (without colour conversion); returns how many were decoded."""
        return sum(1 for _ in self.iter_frames())

    def close(self) -> None:
        """Close the file, and its copies opened for parallel decoding."""
        for decoder in self._decoders:
            if decoder is not None:
                decoder.container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _TimestampMismatch(Exception):
    """Decoded timestamps do not match the packet index: fall back to counting frames."""


def _share_out(runs: list[list[int]], loads: list[int]) -> list[list[list[int]]]:
    """``runs`` dealt to decoders that start with ``loads`` of work, by cost (the frames from
    a run's key frame to its last wanted frame): the longest first, each to the decoder with the
    least work so far (the first of equals). Each decoder's runs are in file order; some may
    have none."""
    loads = list(loads)
    shares: list[list[list[int]]] = [[] for _ in loads]
    for run in sorted(runs, key=lambda run: run[-1] - run[0], reverse=True):
        least = loads.index(min(loads))
        shares[least].append(run)
        loads[least] += run[-1] - run[0] + 1
    return [sorted(share) for share in shares]


def _map_list(function, items) -> list:
    """``[function(item) for item in items]``, for handing to a thread pool."""
    return [function(item) for item in items]


def image_to_rgb(image: Image.Image) -> np.ndarray:
    """A decoded image as ``(H, W, 3)`` uint8 RGB.

    16-bit grey (PNG's ``I;16`` and its byte orders, or ``I``) is scaled to 8 bits (``0..65535``
    onto ``0..255``), where a plain conversion would clip everything above 255 to white.

    Example:
        >>> grey = Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.uint16))
        >>> grey.mode, image_to_rgb(grey)[0, :, 0].tolist()
        ('I;16', [0, 128, 255])
    """
    if image.mode == "RGB":  # JPEG frames decode as RGB: converting them would only copy
        return np.asarray(image)
    if image.mode.startswith("I;16") or image.mode == "I":
        values = np.clip(np.asarray(image).astype(np.int64), 0, 65535)
        grey = ((values * 255 + 32767) // 65535).astype(np.uint8)  # (H, W), rounded
        return np.repeat(grey[..., None], 3, axis=2)
    return np.asarray(image.convert("RGB"))


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
        threads: images decoded in parallel threads by one :meth:`get_frames` call (0: one per
            CPU core; PIL releases the GIL while decoding). 1 suits DataLoader workers.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        num_frames: int | None = None,
        template: str = DEFAULT_FRAME_TEMPLATE,
        start_index: int = 1,
        threads: int = 1,
    ) -> None:
        if threads < 0:
            raise ValueError(f"threads must be 0 (one per core) or more, got {threads}")
        self.threads = threads or os.cpu_count() or 1
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
                return image_to_rgb(image)
        except FileNotFoundError:
            raise self._absent(path) from None
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            raise BadVideoError(self.path, BAD_FRAME, f"{path.name}: {error}") from None

    def _absent(self, path: Path) -> BadVideoError:
        """The error for the frame file ``path``, which is not there: one frame missing, fewer
        frames than claimed, or frames named otherwise than the template says."""
        if self.frame_path(self._count - 1).exists():
            return BadVideoError(self.path, MISSING_FRAME, f"{path.name} absent")
        from tcm.data.annotations import IMAGE_EXTENSIONS

        with os.scandir(self.path) as entries:
            images = sorted(e.name for e in entries if e.name.lower().endswith(IMAGE_EXTENSIONS))
        named = {self.frame_path(i).name for i in range(self._count)}
        matching = sum(name in named for name in images)
        if images and not matching:
            kinds = "/".join(sorted({os.path.splitext(name)[1] for name in images}))
            return BadVideoError(
                self.path,
                MISSING_FRAME,
                f"{path.name} absent: the frame template {self.template!r} (first number "
                f"{self.start_index}) matches none of the {len(images)} {kinds} images here, "
                f"such as {images[0]}; set the frame template to their names",
            )
        detail = f"{matching} on disk, {self._count} claimed"
        return BadVideoError(self.path, TOO_FEW_FRAMES, detail)

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        """Load the frames at ``indices`` (0-based). Returns uint8 ``(len(indices), H, W, 3)``."""
        indices = [int(i) for i in indices]
        if not indices:
            raise ValueError("no frame index given")
        for index in indices:
            if not 0 <= index < self._count:
                raise ValueError(f"frame index {index} out of range [0, {self._count})")
        unique = list(dict.fromkeys(indices))
        loaded = dict(zip(unique, self._load_all(unique), strict=True))
        shapes = {frame.shape for frame in loaded.values()}
        if len(shapes) > 1:
            raise BadVideoError(self.path, BAD_FRAME, f"frames of different sizes {sorted(shapes)}")
        out = np.empty((len(indices), *shapes.pop()), dtype=np.uint8)
        for row, index in enumerate(indices):
            out[row] = loaded[index]
        return out

    def _load_all(self, indices: list[int]) -> list[np.ndarray]:
        """The frames at ``indices``, in order: in this thread, or with :attr:`threads` > 1 in
        as many stretches, all but the first in the decoding threads' pool."""
        count = min(self.threads, len(indices))
        if count <= 1:
            return [self._load(index) for index in indices]
        stretches = [[int(i) for i in part] for part in np.array_split(indices, count)]
        pool = _thread_pool(count - 1)
        futures = [pool.submit(_map_list, self._load, part) for part in stretches[1:]]
        try:
            frames = _map_list(self._load, stretches[0])
        finally:
            wait(futures)  # no thread may still read when this returns or raises
        for future in futures:  # the earliest failure first, as reading in order would
            frames += future.result()
        return frames

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
            path,
            num_frames=num_frames,
            template=frame_template,
            start_index=frame_start_index,
            threads=threads,
        )
    reader = VideoReader(path, threads=threads)
    if num_frames is not None and reader.num_frames < num_frames:
        reader.close()
        raise BadVideoError(
            path, TOO_FEW_FRAMES, f"list claims {num_frames}, the video has {reader.num_frames}"
        )
    return reader
