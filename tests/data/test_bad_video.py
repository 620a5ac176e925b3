"""The one check of a media path, and what a bad input's error is."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from tcm.data.bad_video import (
    EMPTY,
    MISSING,
    NOT_A_VIDEO,
    UNREADABLE,
    BadVideoError,
    check_media_path,
)
from tcm.data.transforms import CropOutsideFrameError, center_crop
from tcm.errors import TcmError


def test_a_regular_non_empty_file_passes(tmp_path):
    (tmp_path / "clip.mp4").write_bytes(b"\x00" * 16)
    assert check_media_path(tmp_path / "clip.mp4") is None


@pytest.mark.parametrize(
    ("make", "options", "reason", "detail"),
    [
        (lambda p: None, {}, MISSING, "no such file"),
        (lambda p: None, {"folders": True}, MISSING, "no such file or folder"),
        (lambda p: p.mkdir(), {}, NOT_A_VIDEO, "a folder, not a video file"),
        (lambda p: p.write_bytes(b""), {}, EMPTY, "zero bytes"),
        (lambda p: p.write_bytes(b""), {"live": True}, EMPTY, "zero bytes"),
        (os.mkfifo, {}, NOT_A_VIDEO, "a named pipe, not a regular file"),
        (os.mkfifo, {"hint": "; try again"}, NOT_A_VIDEO, "a named pipe, not a regular file; try"),
    ],
)
def test_each_unusable_path_gets_its_reason(tmp_path, make, options, reason, detail):
    path = tmp_path / "input"
    make(path)
    with pytest.raises(BadVideoError) as caught:
        check_media_path(path, **options)
    assert caught.value.reason == reason and caught.value.path == str(path)
    assert caught.value.detail.startswith(detail)


def test_folders_and_live_sources_pass_when_allowed(tmp_path):
    assert check_media_path(tmp_path, folders=True) is None
    assert check_media_path("rtsp://camera.local/stream", live=True) is None
    os.mkfifo(tmp_path / "pipe")
    assert check_media_path(tmp_path / "pipe", live=True) == "a named pipe"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any folder")
def test_a_folder_that_may_not_be_searched_is_unreadable(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        with pytest.raises(BadVideoError) as caught:
            check_media_path(locked / "clip.mp4")
    finally:
        locked.chmod(0o755)
    assert caught.value.reason == UNREADABLE


def test_input_errors_are_tcm_errors_and_value_errors():
    error = BadVideoError("a.mp4", EMPTY, "zero bytes")
    assert isinstance(error, TcmError) and isinstance(error, ValueError)
    assert str(error) == "a.mp4: empty (zero bytes)"
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.path, copy.reason, copy.detail) == ("a.mp4", EMPTY, "zero bytes")
    with pytest.raises(CropOutsideFrameError) as caught:
        center_crop(torch.zeros(1, 3, 8, 8), 16)
    assert isinstance(caught.value, TcmError) and isinstance(caught.value, ValueError)
