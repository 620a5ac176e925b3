"""Fixtures of the deployment tests (helpers in ``deploy_media``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from deploy_media import tiny_checkpoint

from tcm.checkpoint import atomic_save
from video_files import write_moving_square


@pytest.fixture(scope="session")
def checkpoint_path(tmp_path_factory) -> Path:
    return atomic_save(tiny_checkpoint(), tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> dict[str, Path]:
    """Good videos, a frame folder, and a bad file, all in one folder (``media["folder"]``)."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("media")
    out = {
        "folder": folder,
        "video_a": write_moving_square(folder / "a_square.mp4"),
        "video_b": write_moving_square(folder / "b_square_fast.mp4", step=5, num_frames=12),
    }
    bad = folder / "c_broken.mp4"
    bad.write_bytes(b"this is not a video file")
    out["bad"] = bad
    frames = folder / "d_frames"
    frames.mkdir()
    for i in range(6):
        image = np.full((60, 80, 3), 30 * i, dtype=np.uint8)
        Image.fromarray(image).save(frames / f"{i:06d}.jpg")
    out["frames"] = frames
    (folder / "notes.txt").write_text("not media; ignored when a folder is expanded")
    return out
