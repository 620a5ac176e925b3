"""Frame extraction: every frame as a JPEG named by the template, whole folders or none."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tcm.data.bad_video import NOT_A_VIDEO, BadVideoError
from tcm.data.extract import ExtractResult, extract_all, extract_frames
from tcm.data.frame_folder import FrameFolderReader
from tcm.data.video_reader import VideoReader
from video_files import frame_indices_of, write_video


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("extract_videos")
    (root / "a").mkdir()
    write_video(root / "a" / "clip.mp4", num_frames=12, height=48, width=64)
    write_video(root / "short.mp4", num_frames=4, height=48, width=64)
    (root / "broken.mp4").write_text("not a video")
    return root


def test_every_frame_is_written_under_the_template_and_reads_back(videos, tmp_path):
    folder = tmp_path / "clip"
    count = extract_frames(videos / "a" / "clip.mp4", folder, template="{:03d}.jpg", start_index=0)
    assert count == 12
    assert sorted(p.name for p in folder.iterdir()) == [f"{i:03d}.jpg" for i in range(12)]
    assert not (tmp_path / "clip.partial").exists()
    with Image.open(folder / "000.jpg") as image:
        assert image.size == (64, 48)
    reader = FrameFolderReader(folder, template="{:03d}.jpg", start_index=0)
    frames = reader.get_frames(range(12))
    assert frame_indices_of(frames) == list(range(12))  # in order, none lost
    with VideoReader(videos / "a" / "clip.mp4") as video:
        decoded = video.get_frames(range(12))
    assert np.abs(frames.astype(int) - decoded.astype(int)).mean() < 3  # JPEG's loss only


def test_short_side_resizes_keeping_the_aspect_ratio(videos, tmp_path):
    extract_frames(videos / "short.mp4", tmp_path / "small", short_side=24)
    with Image.open(tmp_path / "small" / "img_00001.jpg") as image:
        assert image.size == (32, 24)


def test_a_bad_video_raises_and_leaves_no_folder(videos, tmp_path):
    with pytest.raises(BadVideoError) as caught:
        extract_frames(videos / "broken.mp4", tmp_path / "broken")
    assert caught.value.reason == NOT_A_VIDEO
    assert list(tmp_path.iterdir()) == []


def test_extract_all_reports_each_video_in_order_and_skips_finished_folders(videos, tmp_path):
    out = tmp_path / "frames"
    (out / "short").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(out / "short" / "img_00001.jpg")
    names = ["a/clip.mp4", "broken.mp4", "short.mp4"]
    results = extract_all(names, videos, out, workers=1, progress=False)
    assert [(r.video, r.folder, r.num_frames) for r in results] == [
        ("a/clip.mp4", "a/clip", 12),
        ("broken.mp4", "broken", 0),
        ("short.mp4", "short", 1),  # already there: counted, not extracted again
    ]
    assert results[0] == ExtractResult("a/clip.mp4", "a/clip", 12)
    assert "not a video" in results[1].error and not (out / "broken").exists()
    assert len(list((out / "a" / "clip").iterdir())) == 12
    assert len(list((out / "short").iterdir())) == 1
