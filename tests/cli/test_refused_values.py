"""Values that used to be taken and gave a wrong result or a late failure: refused in one line
before any work, with the range or the reason."""

from __future__ import annotations

import pytest
from test_bad_inputs import _write_checkpoint, refused

from tcm.cli.main import main


@pytest.fixture(scope="module")
def checkpoint(tiny_set, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.pt"
    _write_checkpoint(tiny_set, path)  # 4 frames per clip
    return path


def test_export_tolerances_must_be_numbers_of_zero_or_more(checkpoint, tmp_path, capsys):
    out = tmp_path / "model.ts"
    argv = ["export", "--checkpoint", checkpoint, "--format", "torchscript", "--out", out]
    refused(capsys, [*argv, "--atol", "nan"], "--atol must be a number of 0 or more, got nan")
    refused(capsys, [*argv, "--atol", "-1"], "--atol must be a number of 0 or more")
    refused(capsys, [*argv, "--rtol", "inf"], "--rtol")
    assert not out.exists()  # refused before writing


def test_synth_frame_rate_and_quality_in_range(tmp_path, capsys):
    argv = ["synth", "--out", tmp_path / "set", "--no-progress"]
    for fps in ("0", "-5"):
        refused(capsys, [*argv, "--fps", fps], f"fps must be at least 1, got {fps}")
    refused(capsys, [*argv, "--crf", "99"], "crf must lie in [0, 51]")
    assert not (tmp_path / "set").exists()


def test_convert_labels_listed_twice_are_refused_before_converting(tmp_path, capsys):
    import torch

    source = tmp_path / "reference.pth"
    torch.save({"state_dict": {}}, source)
    labels = tmp_path / "labels.txt"
    labels.write_text("pushing\npulling\npushing\n")
    argv = ["convert", source, tmp_path / "out.pt", "--labels", labels]
    refused(capsys, argv, "labels.txt:3", "'pushing' is listed twice")
    assert not (tmp_path / "out.pt").exists()


def test_windows_that_cannot_serve_the_model_or_the_timeline(tiny_set, checkpoint, capsys):
    video = tiny_set.root / "val_0_0.mp4"  # 12 frames at 12 fps
    predict = ["predict", video, "--checkpoint", checkpoint, "--no-progress"]
    refused(capsys, [*predict, "--window", "1f"], "window of 1 frames", "the 4 the model samples")
    refused(capsys, [*predict, "--window", "0.2"], "window of 0.2 s", "at 12 fps", "at least 4f")
    refused(capsys, [*predict, "--window", "1", "--stride", "2"], "stride of 2 s is longer")
    refused(capsys, [*predict, "--window", "6f", "--stride", "1"], "stride of 1 s", "6 frames")
    assert main([str(a) for a in [*predict, "--window", "6f", "--stride", "6f"]]) == 0
