"""``tcm check-data``'s checks: every entry decoded, each bad one reported with its reason."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tcm.data.annotations import VideoRecord
from tcm.data.bad_video import (
    BAD_LABEL,
    EMPTY,
    MISSING,
    MISSING_FRAME,
    NOT_A_VIDEO,
    TOO_FEW_FRAMES,
)
from tcm.data.checks import CheckResult, check_record, check_records
from tcm.data.storage_options import StorageOptions
from video_files import write_video


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("check_data")
    write_video(root / "good.mp4", num_frames=10)
    (root / "empty.mp4").write_bytes(b"")
    (root / "text.mp4").write_text("not a video")
    for name, count in (("frames", 5), ("gap", 5)):
        (root / name).mkdir()
        for i in range(1, count + 1):
            Image.fromarray(np.full((8, 8, 3), 20 * i, np.uint8)).save(
                root / name / f"img_{i:05d}.jpg"
            )
    (root / "gap" / "img_00003.jpg").unlink()
    return root


def test_a_good_video_and_frame_folder_pass_with_their_frame_counts(root):
    video = check_record(VideoRecord("good.mp4", 1, line=1), root, num_classes=2)
    assert video == CheckResult(1, "good.mp4", True, 10)
    frames = check_record(VideoRecord("frames", 0, 5, line=2), root)
    assert (frames.ok, frames.num_frames, frames.reason) == (True, 5, "")


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (VideoRecord("nowhere.mp4", 0), MISSING),
        (VideoRecord("empty.mp4", 0), EMPTY),
        (VideoRecord("text.mp4", 0), NOT_A_VIDEO),
        (VideoRecord("good.mp4", 5), BAD_LABEL),
        (VideoRecord("good.mp4", 0, 30), TOO_FEW_FRAMES),
        (VideoRecord("frames", 0, 9), TOO_FEW_FRAMES),
        (VideoRecord("gap", 0, 5), MISSING_FRAME),
    ],
)
@pytest.mark.parametrize("quick", [False, True], ids=["thorough", "quick"])
def test_each_bad_entry_is_reported_with_its_reason_and_never_raises(root, record, reason, quick):
    result = check_record(record, root, num_classes=2, quick=quick)
    assert not result.ok and result.reason == reason and result.num_frames == 0
    assert result.path == record.path and str(root / record.path) in result.message


def test_the_quick_check_passes_good_entries_with_their_frame_counts(root):
    video = check_record(VideoRecord("good.mp4", 1, line=1), root, quick=True, segments=3)
    assert video == CheckResult(1, "good.mp4", True, 10)
    frames = check_record(VideoRecord("frames", 0, 5), root, quick=True, segments=2)
    assert (frames.ok, frames.num_frames) == (True, 5)
    # Two segments of the 5 frames sample frames 1 and 3 (0-based): the gap at frame 3
    # (1-based, 2 0-based) lies between them, and only the thorough check finds it.
    gap = VideoRecord("gap", 0, 5)
    assert check_record(gap, root, quick=True, segments=2).ok
    assert check_record(gap, root).reason == MISSING_FRAME


def test_records_are_checked_in_order_with_the_frame_layout_given(root, tmp_path):
    (tmp_path / "zero_based").mkdir()
    for i in range(3):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "zero_based" / f"{i}.png")
    records = [VideoRecord("zero_based", 0, 3, line=1), VideoRecord("zero_based", 0, 4, line=2)]
    results = check_records(
        records, tmp_path, storage=StorageOptions(frame_template="{}.png", frame_start_index=0)
    )
    assert [(r.line, r.ok, r.num_frames) for r in results] == [(1, True, 3), (2, False, 0)]
    assert results[1].to_dict() == {
        "line": 2,
        "path": "zero_based",
        "ok": False,
        "num_frames": 0,
        "reason": TOO_FEW_FRAMES,
        "message": results[1].message,
    }


def test_tcm_check_data_quick(root, tmp_path, capsys):
    from tcm.cli.main import main

    listing = tmp_path / "list.txt"
    listing.write_text("good.mp4 0\ntext.mp4 1\nframes 5 0\n")
    argv = ["check-data", str(listing), "--root", str(root), "--quick", "--workers", "2"]
    assert main([*argv, "--no-progress"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{listing}:2: ") and NOT_A_VIDEO in out[0]
    assert out[-1] == f"3 entries checked, 1 bad ({NOT_A_VIDEO}: 1)"
