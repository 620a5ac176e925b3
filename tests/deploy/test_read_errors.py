"""What inference reports as an unreadable input, and what it lets through as a bug.

A damaged input (not a video, empty, cut short, noise in place of its frames, a corrupt frame
image, missing) is reported with its reason and the other inputs go on; an error that does not
come from reading the input (a model or a transform that fails) propagates with its traceback.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from deploy_media import MEAN, STD, tiny_checkpoint

from tcm.cli.main import main
from tcm.deploy import Predictor
from video_files import corrupt_packets, write_moving_square


@pytest.fixture(scope="module")
def predictor(checkpoint_path) -> Predictor:
    return Predictor(checkpoint_path)


@pytest.fixture(scope="module")
def inputs(media, tmp_path_factory) -> dict[str, Path]:
    """A good video, and damaged inputs by the reason they are reported with."""
    folder = tmp_path_factory.mktemp("damaged")
    good = write_moving_square(folder / "good.mp4")
    cut = folder / "cut.mp4"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    noise = corrupt_packets(write_moving_square(folder / "noise.mp4"), 0.0, 1e9)
    empty = folder / "empty.mp4"
    empty.write_bytes(b"")
    frames = folder / "frames"
    frames.mkdir()
    for index, source in enumerate(sorted(media["frames"].iterdir())):
        data = source.read_bytes()
        (frames / source.name).write_bytes(data[:40] if index == 2 else data)
    return {
        "good": good,
        "not a video": media["bad"],
        "empty": empty,
        "truncated": cut,
        "noise": noise,
        "unreadable frame": frames,
        "missing": folder / "missing.mp4",
    }


def test_damaged_inputs_are_reported_and_the_others_go_on(predictor, inputs):
    names = list(inputs)
    results = list(predictor.predict_many(inputs.values(), topk=2, batch_size=2))
    assert [r.path for r in results] == [str(p) for p in inputs.values()]
    by_name = dict(zip(names, results))
    assert by_name.pop("good").ok
    noise = by_name.pop("noise")
    assert noise.error == "truncated" and "noise.mp4" in noise.message
    for name, result in by_name.items():
        assert result.error == name, (name, result)
        assert str(inputs[name]) in result.message


def test_a_folder_the_system_refuses_is_reported_as_unreadable(
    predictor, inputs, media, monkeypatch
):
    # Injected: this suite may run as root, for whom no permission is refused.
    refused, real_scandir = str(media["frames"]), os.scandir

    def scandir(path="."):
        if os.fspath(path) == refused:
            raise PermissionError(errno.EACCES, "Permission denied", refused)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    results = list(predictor.predict_many([media["frames"], inputs["good"]]))
    assert results[0].error == "unreadable" and "Permission denied" in results[0].message
    assert results[1].ok


def test_a_failing_model_is_not_an_unreadable_input(predictor, inputs, monkeypatch):
    def forward(clips):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(predictor.model, "forward", forward)
    with pytest.raises(RuntimeError, match="mat1 and mat2"):
        list(predictor.predict_many([inputs["good"], inputs["not a video"]]))


@pytest.mark.parametrize(
    ("target", "error"),
    [
        ("tcm.deploy.predictor.to_model_input", RuntimeError("expected a float tensor")),
        ("tcm.deploy.inputs.find_frame_template", KeyError("template")),
        ("tcm.data.video_reader.VideoReader.get_frames", ValueError("negative frame index -1")),
        ("tcm.data.frame_folder.FrameFolderReader.get_frames", OSError("no errno: a bug")),
    ],
    ids=["prepare", "template", "video frames", "folder frames"],
)
def test_a_bug_while_reading_is_not_an_unreadable_input(
    predictor, inputs, media, monkeypatch, target, error
):
    def failing(*args, **kwargs):
        raise error

    monkeypatch.setattr(target, failing)
    with pytest.raises(type(error)) as caught:
        list(predictor.predict_many([inputs["good"], media["frames"]]))
    assert caught.value is error


def predict(*args) -> int:
    return main(["predict", *map(str, args)])


def test_cli_predict_lets_a_bug_through(checkpoint_path, inputs, monkeypatch, capsys):
    def forward(clips):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(Predictor, "predict_clips", lambda self, clips: forward(clips))
    with pytest.raises(RuntimeError, match="illegal memory access"):
        predict(inputs["good"], "--checkpoint", checkpoint_path)
    assert "could not be read" not in capsys.readouterr().err


def test_windows_report_a_damaged_video_and_go_on(checkpoint_path, inputs, capsys):
    status = predict(
        inputs["truncated"],
        inputs["good"],
        "--checkpoint",
        checkpoint_path,
        "--window",
        "1",
        "--no-progress",
    )
    assert status == 1
    captured = capsys.readouterr()
    assert f"tcm predict: {inputs['truncated']}: not a video" in captured.err
    assert "1 of 2 inputs gave no result" in captured.err
    assert captured.out.startswith(f"{inputs['good']}: ")


def test_windows_let_a_bug_through(checkpoint_path, inputs, monkeypatch, capsys):
    def failing(*args, **kwargs):
        raise RuntimeError("the size of tensor a (4) must match the size of tensor b (8)")

    monkeypatch.setattr("tcm.deploy.timeline.WindowRun", failing)
    with pytest.raises(RuntimeError, match="must match the size"):
        predict(inputs["good"], "--checkpoint", checkpoint_path, "--window", "1", "--no-progress")
    assert "gave no result" not in capsys.readouterr().err


def test_frames_smaller_than_the_crop_are_reported_and_the_others_go_on(inputs, tmp_path):
    # No resize: a 40x48 video cannot give the model's 64x64 crop.
    checkpoint = tiny_checkpoint(
        data={"num_segments": 4, "resize": None, "input_size": 64, "mean": MEAN, "std": STD}
    )
    small = write_moving_square(tmp_path / "small.mp4", height=40, width=48)
    large = write_moving_square(tmp_path / "large.mp4", height=80, width=96)
    first, second = Predictor(checkpoint).predict_many([small, large])
    assert first.error == "frames smaller than the crop" and "small.mp4" in first.message
    assert second.ok
