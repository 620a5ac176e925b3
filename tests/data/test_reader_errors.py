"""Readers wrap every failure of PyAV, PIL and the file system into BadVideoError.

Callers that go on past bad inputs (the datasets' skip policy, ``tcm check-data``,
``tcm predict``) catch BadVideoError alone; these failures are injected where a file made here
cannot produce them (this suite may run as root, for whom no permission is refused).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from tcm.data.bad_video import BAD_FRAME, TRUNCATED, UNREADABLE, BadVideoError
from tcm.data.frame_folder import FrameFolderReader
from tcm.data.media import open_media
from tcm.data.video_reader import VideoReader
from video_files import write_video


@pytest.fixture
def frames(tmp_path) -> Path:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((60, 80, 3), 40 * i, np.uint8)).save(
            folder / f"img_{i + 1:05d}.jpg"
        )
    return folder


def refuse(monkeypatch, path: Path, function: str) -> None:
    """Make ``os.<function>`` (``stat`` or ``scandir``) refuse ``path`` as the system would."""
    real = getattr(os, function)

    def refusing(target, *args, **kwargs):
        if os.fspath(target) == str(path):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(target, *args, **kwargs)

    monkeypatch.setattr(os, function, refusing)


def test_a_video_the_system_refuses_is_unreadable(tmp_path, monkeypatch):
    path = write_video(tmp_path / "clip.mp4", num_frames=4)
    refuse(monkeypatch, path, "stat")
    with pytest.raises(BadVideoError) as caught:
        open_media(path)
    assert caught.value.reason == UNREADABLE and "Permission denied" in str(caught.value)


@pytest.mark.parametrize("function", ["stat", "scandir"])
def test_a_frame_folder_the_system_refuses_is_unreadable(frames, monkeypatch, function):
    refuse(monkeypatch, frames, function)
    with pytest.raises(BadVideoError) as caught:
        FrameFolderReader(frames)  # counts the frames on disk
    assert caught.value.reason == UNREADABLE and str(frames) in str(caught.value)


def test_an_oversized_frame_is_an_unreadable_frame(frames, monkeypatch):
    # PIL refuses images of more than twice MAX_IMAGE_PIXELS with DecompressionBombError, which
    # is not an OSError.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    reader = FrameFolderReader(frames)
    with pytest.raises(BadVideoError) as caught:
        reader.get_frames([0])
    assert caught.value.reason == BAD_FRAME and "img_00001.jpg" in str(caught.value)


def test_a_failed_seek_while_opening_is_a_truncated_video(tmp_path, monkeypatch):
    path = write_video(tmp_path / "clip.mp4", num_frames=4)

    def failing_seek(self):
        raise av.error.InvalidDataError(errno.EINVAL, "Invalid data found when processing input")

    monkeypatch.setattr(VideoReader, "_seek_to_start", failing_seek)
    with pytest.raises(BadVideoError) as caught:
        VideoReader(path)
    assert caught.value.reason == TRUNCATED and "seek" in str(caught.value)
