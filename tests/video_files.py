"""Tiny videos written with PyAV for the tests: one encoder, and the pictures the tests draw.

- :func:`encode_frames`: frames ``(H, W, 3)`` RGB or ``(H, W)`` grey uint8 -> a video file.
- :func:`write_video`: flat grey frames whose level tells the frame index apart after coding
  (:func:`frame_value`, :func:`frame_indices_of`), in any codec and container.
- :func:`write_textured_video`: a moving random texture, H.264 with B-frame pyramids.
- :func:`write_moving_square`: a bright square moving right.
- :func:`write_class_clip`: a coloured square whose colour and motion tell three classes apart.
- :func:`corrupt_packets`: a video damaged in place over a stretch of time.

Importable from every test folder: ``tests`` is on the ``pythonpath`` of the pytest settings.
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def encode_frames(
    path: Path,
    frames: Iterable[np.ndarray],
    *,
    width: int,
    height: int,
    codec: str = "libx264",
    fps: int = 12,
    pix_fmt: str = "yuv420p",
    gop: int | None = None,
    timestamps_ms: list[int] | None = None,
    options: dict | None = None,
    container_options: dict | None = None,
) -> Path:
    """Encode ``frames`` (uint8, ``(H, W, 3)`` RGB or ``(H, W)`` grey) as one video stream.

    Args:
        codec, fps, pix_fmt, gop: the encoder, its frame rate, pixel format and key-frame
            interval (the encoder's default when ``None``).
        timestamps_ms: one presentation time per frame, in milliseconds (a variable frame
            rate); the frame index at ``fps`` when ``None``.
        options, container_options: FFmpeg options of the encoder and of the container.
    """
    with av.open(str(path), "w", options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=fps, options=options or {})
        stream.width, stream.height = width, height
        stream.codec_context.pix_fmt = pix_fmt
        if gop is not None:
            stream.codec_context.gop_size = gop
        if timestamps_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        for i, image in enumerate(frames):
            fmt = "gray" if image.ndim == 2 else "rgb24"
            frame = av.VideoFrame.from_ndarray(image, format=fmt)
            if timestamps_ms is not None:
                frame.pts = timestamps_ms[i]
                frame.time_base = Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def frame_value(index: int) -> int:
    """Grey level of frame ``index`` in the videos of :func:`write_video`."""
    return 16 + 9 * index


def frame_indices_of(frames: np.ndarray) -> list[int]:
    """Recover frame indices from decoded frames ``(N, H, W, 3)`` of :func:`write_video`."""
    width = frames.shape[2]
    levels = frames[:, :, width // 2 :].reshape(len(frames), -1).mean(axis=1)
    return [round((level - 16) / 9) for level in levels]


def write_video(
    path: Path,
    *,
    num_frames: int = 24,
    height: int = 48,
    width: int = 64,
    pix_fmt: str = "yuv420p",
    **encoding,
) -> Path:
    """Write a video whose frame ``i`` is uniformly :func:`frame_value` ``(i)`` grey, except a
    white bar on its left quarter (so flips are visible); ``encoding``: the options of
    :func:`encode_frames` (``codec``, ``fps``, ``gop``, ``timestamps_ms``, ...)."""

    def frames():
        for i in range(num_frames):
            image = np.full((height, width, 3), frame_value(i), dtype=np.uint8)
            image[:, : width // 4] = 255
            yield image[..., 0] if pix_fmt == "gray" else image

    return encode_frames(path, frames(), width=width, height=height, pix_fmt=pix_fmt, **encoding)


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

    def frames():
        for i in range(num_frames):
            top, left = (3 * i) % height, (5 * i) % width
            yield texture[top : top + height, left : left + width].copy()

    return encode_frames(path, frames(), width=width, height=height, fps=fps, options=options)


def write_moving_square(
    path: Path, *, num_frames: int = 16, height: int = 72, width: int = 96, step: int = 3
) -> Path:
    """A video of a bright square moving right by ``step`` pixels per frame."""

    def frames():
        for i in range(num_frames):
            image = np.full((height, width, 3), 40, dtype=np.uint8)
            left = 8 + step * i
            image[28:44, left : left + 16] = (230, 200, 60)
            yield image

    return encode_frames(path, frames(), width=width, height=height)


# Class c of write_class_clip: a bright square of colour CLASS_COLOURS[c] moving along
# CLASS_DIRECTIONS[c] (rows, columns per frame) over a grey field.
CLASS_COLOURS = ((230, 40, 40), (40, 230, 40), (40, 40, 230))
CLASS_DIRECTIONS = ((1, 0), (-1, 0), (0, 1))


def write_class_clip(
    path: Path, label: int, seed: int, num_frames: int = 12, size: tuple[int, int] = (40, 48)
) -> Path:
    """A small H.264 video ``size = (H, W)`` of class ``label`` of three (colour and motion
    tell the classes apart); ``seed`` places the square and shades the field."""
    rng = np.random.default_rng(seed)
    height, width = size
    y, x = int(rng.integers(8, height - 16)), int(rng.integers(8, width - 16))
    dy, dx = CLASS_DIRECTIONS[label]

    def frames():
        for t in range(num_frames):
            image = np.full((height, width, 3), 110 + int(rng.integers(0, 20)), dtype=np.uint8)
            top = min(max(y + dy * t, 0), height - 10)
            left = min(max(x + dx * t, 0), width - 10)
            image[top : top + 10, left : left + 10] = CLASS_COLOURS[label]
            yield image

    return encode_frames(path, frames(), width=width, height=height)


def corrupt_packets(path: Path, start: float, end: float, seed: int = 0) -> Path:
    """Overwrite, in place, the packets of the frames shown in ``[start, end)`` seconds with
    noise: the container stays readable, those frames do not decode."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        spans = [
            (packet.pos, packet.size)
            for packet in container.demux(stream)
            if packet.size and start <= float(packet.pts * packet.time_base) < end
        ]
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(seed)
    for position, size in spans:
        data[position : position + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path
