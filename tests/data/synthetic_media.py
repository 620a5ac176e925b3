"""Helpers of the data tests: tiny videos written with PyAV, and where the shared files are."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
SHARED_DATA = SHARED / "data"


def frame_value(index: int) -> int:
    """Grey level of frame ``index`` in the synthetic videos (tells frames apart after coding)."""
    return 16 + 9 * index


def write_video(
    path: Path,
    *,
    codec: str = "libx264",
    num_frames: int = 24,
    height: int = 48,
    width: int = 64,
    fps: int = 12,
    pix_fmt: str = "yuv420p",
    gop: int | None = None,
    timestamps_ms: list[int] | None = None,
    options: dict | None = None,
    container_options: dict | None = None,
) -> Path:
    """Write a video whose frame ``i`` is uniformly :func:`frame_value` ``(i)`` grey, except a
    white bar on its left quarter (so flips are visible)."""
    with av.open(str(path), "w", options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=fps, options=options or {})
        stream.width, stream.height = width, height
        stream.codec_context.pix_fmt = pix_fmt
        if gop is not None:
            stream.codec_context.gop_size = gop
        if timestamps_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        for i in range(num_frames):
            image = np.full((height, width, 3), frame_value(i), dtype=np.uint8)
            image[:, : width // 4] = 255
            fmt = "gray" if pix_fmt == "gray" else "rgb24"
            frame = av.VideoFrame.from_ndarray(
                image[..., 0] if fmt == "gray" else image, format=fmt
            )
            if timestamps_ms is not None:
                frame.pts = timestamps_ms[i]
                frame.time_base = Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def frame_indices_of(frames: np.ndarray) -> list[int]:
    """Recover frame indices from decoded synthetic frames ``(N, H, W, 3)``."""
    width = frames.shape[2]
    levels = frames[:, :, width // 2 :].reshape(len(frames), -1).mean(axis=1)
    return [round((level - 16) / 9) for level in levels]
