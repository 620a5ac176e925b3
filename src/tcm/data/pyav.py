"""What the two PyAV readers share: opening a file or stream, and frames as RGB arrays."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from tcm.data.bad_video import (
    NO_VIDEO_STREAM,
    NOT_A_VIDEO,
    TRUNCATED,
    BadVideoError,
    looks_like_container,
)

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


def open_video(
    path: str | os.PathLike,
    *,
    url: str | None = None,
    input_format: str | None = None,
    timeout: float | None = None,
    failure: str | None = None,
) -> av.container.InputContainer:
    """``path`` opened with PyAV (or ``url``, which stands for it: ``pipe:FD``), checked to
    hold a video stream.

    Args:
        path: the file, URL or device, as the errors name it.
        url: what PyAV opens instead of ``path``.
        input_format: FFmpeg input format to force (``"v4l2"``, ...).
        timeout: seconds to wait for a live source.
        failure: the reason when PyAV cannot open it; by default :data:`TRUNCATED` for a file
            that starts as a video container does, :data:`NOT_A_VIDEO` otherwise.

    Raises:
        BadVideoError: PyAV cannot open it, or it holds no video stream.
    """
    try:
        container = av.open(
            url or str(path), format=input_format, metadata_errors="ignore", timeout=timeout
        )
    except (av.error.FFmpegError, OSError) as error:
        reason = failure
        if reason is None:
            reason = TRUNCATED if looks_like_container(Path(path)) else NOT_A_VIDEO
        raise BadVideoError(path, reason, str(error)) from None
    if not container.streams.video:
        container.close()
        raise BadVideoError(path, NO_VIDEO_STREAM)
    return container
