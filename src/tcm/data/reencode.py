"""Re-encoding videos once for fast random access in training, in parallel.

A training clip takes 8 or 16 frames spread over a video. In a file with a key frame every few
seconds, each of them needs every reference frame since the key frame before it: about 130 of
the 280 frames of a 10 s Kinetics clip, whatever the reader skips. Re-encoded with a key frame
every ``gop`` frames, no B-frames and x264's decoding-light settings (``tune=fastdecode``: no
CABAC, no deblocking filter), a sampled frame costs at most ``gop`` frames, each cheaper.

Frame count and timestamps are kept, so frame ``i`` of the new file is frame ``i`` of the
original (resized, up to coding loss), shown at the same time, and lists and annotations made
for the originals stay valid. Only the video stream is kept. Each video ``<root>/<path>``
becomes ``<out>/<path without extension>.mp4``, written as ``<name>.partial`` and renamed once
complete and checked, so an interrupted run leaves no half-written file that counts as done.

The output folder records the settings its files were made with (:data:`SETTINGS_FILE`, see
:class:`ReencodeSettings`) and is locked while a run writes into it (:class:`ReencodeFolder`):
a run with other settings is refused, as is a second run at the same time. A run resumes: a
file already there is checked (it opens, holds the source's frames at the right size, its last
frame decodes) and kept, or made again when it is damaged. A full disk or a folder that cannot
be written stops the run at the first such error (the finished files stay).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from pathlib import Path

import av
from av.video.frame import PictureType
from av.video.reformatter import ColorRange, VideoReformatter

from tcm.data.annotations import REENCODE_SETTINGS_FILE
from tcm.data.bad_video import TRUNCATED, BadVideoError
from tcm.data.pyav import REFORMAT_IN_CALLING_THREAD
from tcm.data.video_reader import VideoReader
from tcm.errors import OutputError
from tcm.utils.files import FILESYSTEM_ERRNOS, writing_stopped
from tcm.utils.locks import FolderLock
from tcm.utils.parallel import map_in_processes

logger = logging.getLogger(__name__)

#: H.264 where PyAV's FFmpeg has it (the PyPI wheels do), MPEG-4 part 2 otherwise.
DEFAULT_CODEC = "libx264" if "libx264" in av.codecs_available else "mpeg4"
# The MPEG-4 part 2 encoder refuses time bases finer than this.
_MPEG4_FINEST_TIME_BASE = Fraction(1, 65535)
# Rate assumed for a video that states none and whose timestamps cannot be used.
_FALLBACK_RATE = Fraction(25)
#: x264's quality scale; it takes a larger ``crf`` without complaint and uses 51.
CRF_RANGE = (0, 51)
#: The smallest short side a video is shrunk to. The backbones downsample by 32: below that,
#: their last stage sees less than one pixel of the frame, and nothing is left to classify.
MIN_SHORT_SIDE = 32
#: The file in the output folder that records the settings (see :class:`ReencodeSettings`).
SETTINGS_FILE = REENCODE_SETTINGS_FILE
_LOCK_FILE = ".tcm-reencode.lock"


def check_settings(
    *, short_side: int | None = None, gop: int = 8, crf: int = 20, name: Callable[[str], str] = str
) -> None:
    """A ``ValueError`` for a setting out of range; ``name`` turns a setting's name
    (``short_side``) into the one the user wrote (``--short-side``)."""
    if gop < 1:
        raise ValueError(f"{name('gop')} must be at least 1, got {gop}")
    low, high = CRF_RANGE
    if not low <= crf <= high:
        raise ValueError(f"{name('crf')} must lie in [{low}, {high}] (x264's scale), got {crf}")
    if short_side is not None and short_side < MIN_SHORT_SIDE:
        raise ValueError(
            f"{name('short_side')} must be at least {MIN_SHORT_SIDE} pixels (the backbones "
            f"downsample by {MIN_SHORT_SIDE}), got {short_side}"
        )


@dataclass(frozen=True)
class ReencodeSettings:
    """How the videos of one output folder are re-encoded (see :func:`reencode_video`).

    Raises:
        ValueError: a setting out of range (:func:`check_settings`), or an unknown ``codec``.
    """

    short_side: int | None = 256
    gop: int = 8
    crf: int = 20
    codec: str = DEFAULT_CODEC

    def __post_init__(self) -> None:
        check_settings(short_side=self.short_side, gop=self.gop, crf=self.crf)
        if self.codec not in ("libx264", "mpeg4"):
            raise ValueError(f"codec must be libx264 or mpeg4, got {self.codec!r}")

    def describe(self) -> str:
        """``gop 8, crf 20, short side 256, libx264``."""
        side = "as it is" if self.short_side is None else self.short_side
        return f"gop {self.gop}, crf {self.crf}, short side {side}, {self.codec}"


@dataclass(frozen=True)
class ReencodeResult:
    """Outcome for one video: the new file (relative to the output folder), its frame count
    (0 when it was there already), or the error."""

    video: str
    output: str
    num_frames: int = 0
    error: str = ""


def reencoded_name(relative: str) -> str:
    """Path of the re-encoded file for the video ``relative``: same folders, ``.mp4``.

    Example:
        >>> reencoded_name("abseiling/x1.webm")
        'abseiling/x1.mp4'
    """
    return os.path.splitext(relative)[0] + ".mp4"


def reencoded_size(height: int, width: int, short_side: int | None) -> tuple[int, int]:
    """``(h, w)`` of the re-encoded frames: the short side brought down to ``short_side``
    (never enlarged; ``None`` keeps the size), both even as 4:2:0 chroma needs.

    Example:
        >>> reencoded_size(720, 1280, 256), reencoded_size(240, 320, 256)
        ((256, 456), (240, 320))
    """
    scale = 1.0
    if short_side is not None and min(height, width) > short_side:
        scale = short_side / min(height, width)
    return max(2, 2 * round(height * scale / 2)), max(2, 2 * round(width * scale / 2))


def _encoder_options(codec: str, gop: int, crf: int) -> dict[str, str]:
    if codec == "libx264":
        return {
            "crf": str(crf),
            "preset": "veryfast",
            "tune": "fastdecode",
            # Key frames at exactly every `gop` frames, none at scene cuts; processes, not
            # encoder threads, run videos in parallel.
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0",
            "threads": "1",
        }
    return {"qmin": "3", "qmax": "3", "threads": "1"}  # MPEG-4 part 2: a fixed quantiser


def reencode_video(
    source: str | os.PathLike,
    target: str | os.PathLike,
    *,
    short_side: int | None = 256,
    gop: int = 8,
    crf: int = 20,
    codec: str = DEFAULT_CODEC,
) -> int:
    """Write ``source``'s frames to the MP4 file ``target``; returns the number of frames.

    Args:
        short_side: shrink so the short side is at most this long (``None`` keeps the size).
        gop: frames from one key frame to the next.
        crf: x264 quality, lower is better and larger (at 20 a 340x256 Kinetics clip keeps
            38 dB PSNR in 1.5 times its original size).
        codec: ``"libx264"`` or, where PyAV lacks it, ``"mpeg4"``.

    Raises:
        ValueError: settings out of range (see :class:`ReencodeSettings`).
        BadVideoError: the source cannot be read to its end, or the new file does not hold
            as many frames as the source.
        OSError: the new file cannot be written (disk full, read-only folder, ...).
    """
    ReencodeSettings(short_side, gop, crf, codec)  # checks them
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial_file = target.with_name(target.name + ".partial")
    try:
        with VideoReader(source) as reader:
            count = _write(reader, partial_file, short_side, gop, crf, codec)
        with VideoReader(partial_file) as written:
            if written.num_frames != count:
                raise BadVideoError(
                    source, TRUNCATED, f"{count} frames re-encoded, {written.num_frames} written"
                )
    except BaseException:
        with contextlib.suppress(OSError):
            partial_file.unlink(missing_ok=True)
        raise
    os.replace(partial_file, target)
    return count


def _write(
    reader: VideoReader, path: Path, short_side: int | None, gop: int, crf: int, codec: str
) -> int:
    height, width = reencoded_size(*reader.size, short_side)
    rate = reader.frame_rate
    # The packets' timestamps, kept as they are (variable frame rates stay exact, a first frame
    # shown after the start stays there), also where frames are counted in decoding (AVI).
    timestamps = reader.presentation_timestamps
    if timestamps is not None:
        time_base = reader.time_base
        pts = [stamp - min(timestamps[0], 0) for stamp in timestamps]
    else:  # no usable timestamps: evenly spaced at the stated rate
        if rate is None:
            logger.warning("%s states no frame rate; writing %s fps", reader.path, _FALLBACK_RATE)
            rate = _FALLBACK_RATE
        time_base = 1 / rate
        pts = list(range(reader.num_frames))
    if codec == "mpeg4" and time_base < _MPEG4_FINEST_TIME_BASE:
        pts = [round(stamp * time_base / _MPEG4_FINEST_TIME_BASE) for stamp in pts]
        time_base = _MPEG4_FINEST_TIME_BASE
    reformatter = VideoReformatter()
    count = 0
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream(
            codec, rate=rate or _FALLBACK_RATE, options=_encoder_options(codec, gop, crf)
        )
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = time_base
        stream.codec_context.gop_size = gop
        stream.codec_context.max_b_frames = 0
        for frame in reader.iter_frames():
            if count == len(pts):
                break  # frame indices end with the index; a file's own count never grows
            # Full-range sources (MJPEG's yuvj420p) are brought to the limited range the
            # output is read in.
            image = reformatter.reformat(
                frame,
                width=width,
                height=height,
                format="yuv420p",
                interpolation="BICUBIC",
                dst_color_range=ColorRange.MPEG,
                **REFORMAT_IN_CALLING_THREAD,
            )
            image.pts, image.time_base = pts[count], time_base
            image.pict_type = PictureType.NONE  # key frames by `gop`, not the source's types
            container.mux(stream.encode(image))
            count += 1
        container.mux(stream.encode(None))
    if count != reader.num_frames:
        raise BadVideoError(
            reader.path, TRUNCATED, f"{count} frames decoded, {reader.num_frames} in the index"
        )
    return count


class ReencodeFolder:
    """The output folder of a re-encoding, while a run writes into it: locked against a second
    run, and holding the settings of its files in :data:`SETTINGS_FILE`.

    Opening it (``with ReencodeFolder(out, settings):``) takes the lock, then records
    ``settings`` in a new folder or checks them against those recorded.

    Raises (on opening):
        OutputError: another run holds the folder; it holds files made with other settings;
            or it holds files of the videos but no record of their settings.
    """

    def __init__(
        self, out: str | os.PathLike, settings: ReencodeSettings, outputs: Sequence[str] = ()
    ) -> None:
        self.out = Path(out)
        self.settings = settings
        self.outputs = list(outputs)
        self._lock = FolderLock(self.out, _LOCK_FILE, "another re-encoding")

    def open(self) -> ReencodeFolder:
        """Lock and check the settings; in a folder without a record of them, look for the
        ``outputs`` (relative paths of the files the run makes)."""
        self._lock.acquire()
        try:
            self._check_settings(self.outputs)
        except BaseException:
            self._lock.release()
            raise
        return self

    def _check_settings(self, outputs: Sequence[str]) -> None:
        record = self.out / SETTINGS_FILE
        wanted = dataclasses.asdict(self.settings)
        if record.is_file():
            try:
                recorded = json.loads(record.read_text(encoding="utf-8"))
                recorded = {key: recorded[key] for key in wanted}
                made_with = ReencodeSettings(**recorded)
            except (ValueError, KeyError, TypeError) as error:
                raise OutputError(
                    f"{record}: not a record of re-encoding settings ({error}); re-encode into "
                    "another folder"
                ) from None
            if made_with != self.settings:
                raise OutputError(
                    f"{self.out} holds videos re-encoded with {made_with.describe()} "
                    f"({record}); this run asks for {self.settings.describe()}: re-encode into "
                    "another folder, or with the same settings"
                )
            return
        present = next((name for name in outputs if (self.out / name).exists()), None)
        if present is not None:
            raise OutputError(
                f"{self.out} already holds {present} but no record of the settings it was made "
                f"with ({SETTINGS_FILE}); re-encode into an empty folder"
            )
        temporary = record.with_name(record.name + ".partial")
        temporary.write_text(json.dumps({"format": "tcm-reencode", **wanted}) + "\n")
        os.replace(temporary, record)

    def close(self) -> None:
        self._lock.release()

    def __enter__(self) -> ReencodeFolder:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()


def _check_existing(source: Path, target: Path, settings: ReencodeSettings) -> str:
    """Why the file ``target``, already there, is not the re-encoding of ``source``; ``""``
    when it is (it opens, has the source's frame count and the expected size, and its last
    frame decodes)."""
    try:
        with VideoReader(source) as original:
            count, size = original.num_frames, reencoded_size(*original.size, settings.short_side)
        with VideoReader(target) as copy:
            if copy.num_frames != count:
                return f"{copy.num_frames} frames, the source has {count}"
            if copy.size != size:
                return f"frames of {copy.size[1]}x{copy.size[0]}, expected {size[1]}x{size[0]}"
            copy.get_frames([count - 1])
    except BadVideoError as error:
        return error.reason + (f" ({error.detail})" if error.detail else "")
    return ""


def _reencode_one(
    relative: str, root: Path, out: Path, settings: ReencodeSettings
) -> ReencodeResult:
    output = reencoded_name(relative)
    source, target = root / relative, out / output
    try:
        if target.is_file():
            problem = _check_existing(source, target, settings)
            if not problem:
                return ReencodeResult(relative, output)
            logger.warning("%s: %s; made again", target, problem)
        count = reencode_video(source, target, **dataclasses.asdict(settings))
        return ReencodeResult(relative, output, count)
    except BadVideoError as error:
        return ReencodeResult(relative, output, error=str(error))
    except OSError as error:
        if error.errno in FILESYSTEM_ERRNOS:  # the output's disk or folder: every file fails
            raise OSError(error.errno, error.strerror, error.filename or str(target)) from None
        return ReencodeResult(relative, output, error=f"{source}: {type(error).__name__}: {error}")
    except Exception as error:  # one bad file must not stop a whole data set
        return ReencodeResult(relative, output, error=f"{source}: {type(error).__name__}: {error}")


def reencode_all(
    videos: Sequence[str],
    root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    workers: int = 4,
    progress: bool = True,
    short_side: int | None = 256,
    gop: int = 8,
    crf: int = 20,
    codec: str = DEFAULT_CODEC,
) -> list[ReencodeResult]:
    """Re-encode ``videos`` (paths relative to ``root``) under ``out``, ``workers`` at a time.

    Returns one :class:`ReencodeResult` per video, in order; a video that cannot be read
    carries ``error`` (the file and why) and does not stop the others. ``out`` is locked for
    the run and records the settings (see :class:`ReencodeFolder`).

    Raises:
        OutputError: ``out`` is used by another run, or holds files of other settings; or
            the first error of its disk or folder (full, read-only, ...): the run stops
            there, the files finished are kept, and a new run continues from them.

    Example:
        >>> results = reencode_all(["a/x.avi", "b/y.mkv"], "videos", "videos_fast")  # doctest: +SKIP
        >>> [r.output for r in results]                                           # doctest: +SKIP
        ['a/x.mp4', 'b/y.mp4']
    """
    root, out = Path(root), Path(out)
    settings = ReencodeSettings(short_side, gop, crf, codec)
    first_of: dict[str, str] = {}  # output -> the video that makes it
    for relative in videos:
        first_of.setdefault(reencoded_name(relative), relative)
    unique = list(first_of.values())
    job = partial(_reencode_one, root=root, out=out, settings=settings)
    with ReencodeFolder(out, settings, list(first_of)):
        try:
            done = map_in_processes(
                job,
                unique,
                workers=workers,
                progress=progress,
                desc="re-encoding",
                unit="video",
                chunksize=1,
            )
        except OSError as error:
            if error.errno not in FILESYSTEM_ERRNOS:
                raise
            raise writing_stopped(error, out, "re-encoding") from error
    by_video = dict(zip(unique, done))
    results = []
    for relative in videos:
        output = reencoded_name(relative)
        if first_of[output] == relative:
            results.append(by_video[relative])
        else:
            error = f"{root / relative}: same output {output} as {first_of[output]}"
            results.append(ReencodeResult(relative, output, error=error))
    failed = [r for r in results if r.error]
    if failed:
        logger.warning(
            "%d of %d videos failed to re-encode, e.g. %s",
            len(failed),
            len(results),
            failed[0].error,
        )
    return results
