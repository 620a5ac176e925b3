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


def write_textured_video(
    path: Path,
    *,
    num_frames: int = 60,
    height: int = 64,
    width: int = 96,
    fps: int = 12,
    gop: int = 24,
    b_frames: int = 3,
) -> Path:
    """H.264 of a random texture that moves every frame, with ``b_frames`` B-frames in a
    pyramid (the middle ones are references, the others not) and a key frame every ``gop``
    frames: a frame decoded from the wrong references differs from the full decode."""
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (2 * height, 2 * width, 3), dtype=np.uint8)
    options = {
        "bf": str(b_frames),
        "g": str(gop),
        "preset": "medium",
        "x264-params": "b-pyramid=normal:ref=3:scenecut=0",
    }
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options=options)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        for i in range(num_frames):
            top, left = (3 * i) % height, (5 * i) % width
            image = texture[top : top + height, left : left + width].copy()
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    return path
