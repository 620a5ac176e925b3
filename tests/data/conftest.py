"""Fixtures of the data tests: tiny videos written with PyAV (the real files: ``shared_data``
in the top conftest)."""

from __future__ import annotations

from pathlib import Path

import pytest

from video_files import write_video


@pytest.fixture(scope="session")
def synthetic_videos(tmp_path_factory) -> dict[str, Path]:
    """Videos of 24 frames (unless named otherwise) in several codecs and containers."""
    folder = tmp_path_factory.mktemp("videos")
    vfr = [0, 40, 80, 200, 240, 500, 520, 540, 900, 1000, 1040, 1500]
    return {
        "h264": write_video(folder / "h264.mp4", gop=6),
        "vp9": write_video(
            folder / "vp9.webm",
            codec="libvpx-vp9",
            options={"deadline": "realtime", "cpu-used": "8"},
        ),
        "mjpeg": write_video(folder / "mjpeg.avi", codec="mjpeg", pix_fmt="yuvj420p"),
        "vfr": write_video(folder / "vfr.mp4", num_frames=len(vfr), timestamps_ms=vfr),
        "gray": write_video(folder / "gray.mp4", pix_fmt="gray"),
        "short": write_video(folder / "short.mp4", num_frames=3),
        "faststart": write_video(
            folder / "faststart.mp4", container_options={"movflags": "faststart"}
        ),
    }
