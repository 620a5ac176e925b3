"""Random access to the frames of a video file with PyAV: :class:`VideoReader`.

``get_frames(indices) -> uint8 (N, H, W, 3)`` RGB, as for frame folders. It decodes only as far
as the last frame it needs, and seeks to a key frame when one lies between the current position
and the next needed frame (skipping the frames in between is cheaper than decoding them).
Frames are identified by their presentation timestamp, looked up in an index built from the
packets (demuxing without decoding costs a few milliseconds for a 10 s clip), so variable frame
rate files are read exactly. Containers whose timestamps do not give presentation order (AVI)
are read sequentially and frames counted. Problems raise :class:`BadVideoError`.

With ``threads > 1`` the stretches that start at such a seek ("runs": a key frame and the
needed frames decoded from it) go to up to ``threads`` single-threaded decoders of the same
file, one per thread of a process-wide pool, which decode and convert to RGB in parallel (PyAV
releases the GIL while decoding); the frames are the same as with one decoder, bit for bit.
"""

from __future__ import annotations

import bisect
import logging
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import wait
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from tcm.data.bad_video import (
    NO_VIDEO_STREAM,
    TOO_FEW_FRAMES,
    TRUNCATED,
    BadVideoError,
    check_media_path,
)
from tcm.data.decode_pool import thread_pool
from tcm.data.pyav import frame_to_rgb, open_video

logger = logging.getLogger(__name__)


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
        check_media_path(self.path)
        self._container = open_video(self.path)
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
        pool = thread_pool(count - 1) if busy else None
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
