"""Re-encoding videos once for fast random access in training, in parallel.

A training clip takes 8 or 16 frames spread over a video. In a file with a key frame every few
seconds, each of them needs every reference frame since the key frame before it: about 130 of
the 280 frames of a 10 s Kinetics clip, whatever the reader skips. Re-encoded with a key frame
every ``gop`` frames, no B-frames and x264's decoding-light settings (``tune=fastdecode``: no
CABAC, no deblocking filter), a sampled frame costs at most ``gop`` frames, each cheaper.

Frame count and timestamps are kept, so frame ``i`` of the new file is frame ``i`` of the
original (resized, up to coding loss) and lists and annotations made for the originals stay
valid. Only the video stream is kept. Each video ``<root>/<path>`` becomes
``<out>/<path without extension>.mp4``, written as ``<name>.partial`` and renamed once complete
and checked, so an interrupted run leaves no half-written file that counts as done; files
already there are skipped (a run resumes).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from pathlib import Path

import av
from av.video.frame import PictureType
from av.video.reformatter import ColorRange, VideoReformatter

from tcm.data.decoding import (
    REFORMAT_IN_CALLING_THREAD,
    TRUNCATED,
    BadVideoError,
    VideoReader,
)
from tcm.utils.parallel import map_in_processes

logger = logging.getLogger(__name__)

#: H.264 where PyAV's FFmpeg has it (the PyPI wheels do), MPEG-4 part 2 otherwise.
DEFAULT_CODEC = "libx264" if "libx264" in av.codecs_available else "mpeg4"
# The MPEG-4 part 2 encoder refuses time bases finer than this.
_MPEG4_FINEST_TIME_BASE = Fraction(1, 65535)
# Rate assumed for a video that states none and whose timestamps cannot be used.
_FALLBACK_RATE = Fraction(25)


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
        BadVideoError: the source cannot be read to its end, or the new file does not hold
            as many frames as the source.
    """
    if gop < 1:
        raise ValueError(f"gop must be at least 1, got {gop}")
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
        partial_file.unlink(missing_ok=True)
        raise
    os.replace(partial_file, target)
    return count


def _write(
    reader: VideoReader, path: Path, short_side: int | None, gop: int, crf: int, codec: str
) -> int:
    height, width = reencoded_size(*reader.size, short_side)
    rate = reader.frame_rate
    timestamps = reader.timestamps
    if timestamps is not None:  # kept as they are: variable frame rates stay exact
        time_base = reader.time_base
        pts = [stamp - timestamps[0] for stamp in timestamps]
    else:  # frames counted (AVI): evenly spaced at the stated rate
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


def _reencode_one(relative: str, root: Path, out: Path, **options) -> ReencodeResult:
    output = reencoded_name(relative)
    if (out / output).is_file():
        return ReencodeResult(relative, output)
    try:
        return ReencodeResult(
            relative, output, reencode_video(root / relative, out / output, **options)
        )
    except BadVideoError as error:
        return ReencodeResult(relative, output, error=str(error))
    except Exception as error:  # one bad file must not stop a whole data set
        return ReencodeResult(
            relative, output, error=f"{root / relative}: {type(error).__name__}: {error}"
        )


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

    Returns one :class:`ReencodeResult` per video, in order; failures carry ``error`` (the
    file and why) and do not stop the others.

    Example:
        >>> results = reencode_all(["a/x.avi", "b/y.mkv"], "videos", "videos_fast")  # doctest: +SKIP
        >>> [r.output for r in results]                                           # doctest: +SKIP
        ['a/x.mp4', 'b/y.mp4']
    """
    root, out = Path(root), Path(out)
    first_of: dict[str, str] = {}  # output -> the video that makes it
    for relative in videos:
        first_of.setdefault(reencoded_name(relative), relative)
    unique = list(first_of.values())
    job = partial(
        _reencode_one, root=root, out=out, short_side=short_side, gop=gop, crf=crf, codec=codec
    )
    done = map_in_processes(
        job,
        unique,
        workers=workers,
        progress=progress,
        desc="re-encoding",
        unit="video",
        chunksize=1,
    )
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
