"""Extracting the frames of videos to folders of JPEG files, in parallel.

Each video becomes a folder ``<out>/<relative path without extension>/img_00001.jpg ...``.
Frames are written to a temporary folder renamed when complete, so an interrupted run leaves
no half-written folder, and folders that already exist are skipped (a run can be resumed). A
full disk or a folder that cannot be written stops the run at the first error.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from tcm.data.bad_video import NOT_A_VIDEO, BadVideoError
from tcm.data.frame_names import DEFAULT_FRAME_TEMPLATE, format_frame_name
from tcm.data.transforms import short_side_size
from tcm.data.video_reader import VideoReader
from tcm.utils.files import FILESYSTEM_ERRNOS, writing_stopped
from tcm.utils.parallel import map_in_processes

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExtractResult:
    """Outcome for one video: the frame folder, its frame count, or the error."""

    video: str
    folder: str
    num_frames: int
    error: str = ""


def extract_frames(
    video: str | os.PathLike,
    folder: str | os.PathLike,
    *,
    template: str = DEFAULT_FRAME_TEMPLATE,
    start_index: int = 1,
    short_side: int | None = None,
    quality: int = 90,
) -> int:
    """Write every frame of ``video`` as JPEG into ``folder``; returns the number of frames.

    Args:
        short_side: resize so the short side has this length (``None`` keeps the size).
        quality: JPEG quality.
    """
    folder = Path(folder)
    partial_folder = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial_folder, ignore_errors=True)
    partial_folder.mkdir(parents=True)
    count = 0
    try:
        with VideoReader(video) as reader:
            height, width = reader.size
            if short_side is not None:
                height, width = short_side_size(height, width, short_side)
            for frame in reader.iter_frames():
                image = frame.to_image(width=width, height=height)
                image.save(
                    partial_folder / format_frame_name(template, count + start_index),
                    quality=quality,
                )
                count += 1
    except BaseException:  # a bad video, a full disk, Ctrl-C: no half-written folder stays
        shutil.rmtree(partial_folder, ignore_errors=True)
        raise
    if count == 0:
        shutil.rmtree(partial_folder, ignore_errors=True)
        raise BadVideoError(video, NOT_A_VIDEO, "no frame decoded")
    shutil.rmtree(folder, ignore_errors=True)
    partial_folder.rename(folder)
    return count


def _extract_one(relative: str, root: Path, out: Path, **options) -> ExtractResult:
    folder_rel = os.path.splitext(relative)[0]
    folder = out / folder_rel
    if folder.is_dir():
        from tcm.data.media_lookup import count_frames

        return ExtractResult(relative, folder_rel, count_frames(folder))
    try:
        return ExtractResult(
            relative, folder_rel, extract_frames(root / relative, folder, **options)
        )
    except BadVideoError as error:
        return ExtractResult(relative, folder_rel, 0, str(error))
    except OSError as error:
        if error.errno in FILESYSTEM_ERRNOS:  # the output's disk or folder: every video fails
            raise OSError(error.errno, error.strerror, error.filename or str(folder)) from None
        raise


def extract_all(
    videos: Sequence[str],
    root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    workers: int = 4,
    progress: bool = True,
    template: str = DEFAULT_FRAME_TEMPLATE,
    start_index: int = 1,
    short_side: int | None = None,
    quality: int = 90,
) -> list[ExtractResult]:
    """Extract the frames of ``videos`` (paths relative to ``root``) under ``out``.

    Returns one :class:`ExtractResult` per video, in order; failures carry ``error``.

    Raises:
        OutputError: at the first error of the output's disk or folder (full, read-only, ...);
            the folders finished are kept.
    """
    job = partial(
        _extract_one,
        root=Path(root),
        out=Path(out),
        template=template,
        start_index=start_index,
        short_side=short_side,
        quality=quality,
    )
    try:
        results = map_in_processes(
            job,
            videos,
            workers=workers,
            progress=progress,
            desc="extracting frames",
            unit="video",
            chunksize=2,
        )
    except OSError as error:
        if error.errno not in FILESYSTEM_ERRNOS:
            raise
        raise writing_stopped(error, out, "frame extraction") from error
    failed = [r for r in results if r.error]
    if failed:
        logger.warning(
            "%d of %d videos failed to extract, e.g. %s", len(failed), len(results), failed[0].error
        )
    return results
