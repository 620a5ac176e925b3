"""The reader a path needs: :func:`open_media` (a frame folder or a video file)."""

from __future__ import annotations

import os
from pathlib import Path

from tcm.data.bad_video import TOO_FEW_FRAMES, BadVideoError, unreadable
from tcm.data.frame_folder import FrameFolderReader
from tcm.data.frame_names import DEFAULT_FRAME_TEMPLATE
from tcm.data.video_reader import VideoReader


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
