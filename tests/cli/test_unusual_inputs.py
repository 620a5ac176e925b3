"""Inputs that are not what the commands expect: a named pipe, 16-bit PNG frames, frames named
otherwise than the template, a device tcm does not run on."""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pytest
from PIL import Image
from test_bad_inputs import _write_checkpoint, refused

import tcm.data.video_stream
from tcm.cli.main import main
from tcm.data.frame_folder import FrameFolderReader


@pytest.fixture(scope="module")
def checkpoint(tiny_set, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.pt"
    _write_checkpoint(tiny_set, path)
    return path


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "camera.pipe"
    os.mkfifo(path)
    return path


def test_a_named_pipe_never_hangs(tiny_set, checkpoint, fifo, capsys, monkeypatch):
    predict = ["predict", str(fifo), "--checkpoint", str(checkpoint), "--no-progress"]
    for extra in ([], ["--window", "2"]):
        assert main([*predict, *extra]) == 1
        assert (
            "camera.pipe: not a video (a named pipe, not a regular file" in capsys.readouterr().err
        )
    # As a live source, it waits for a writer as long as any stream, then gives up.
    monkeypatch.setattr(tcm.data.video_stream, "LIVE_TIMEOUT_S", 0.5)
    assert main([*predict, "--stream"]) == 1
    assert "camera.pipe: cannot open the stream (a named pipe: no data within 0.5 s)" in (
        capsys.readouterr().err
    )


def test_a_named_pipe_someone_writes_to_is_a_stream(tiny_set, checkpoint, fifo, capsys):
    video = (tiny_set.root / "val_0_0.mp4").read_bytes()

    def write():
        with open(fifo, "wb") as pipe:
            pipe.write(video)

    writer = threading.Thread(target=write)
    writer.start()
    argv = ["predict", str(fifo), "--checkpoint", str(checkpoint), "--stream", "--window", "8f"]
    assert main([*argv, "--stride", "4f", "--json"]) == 0
    writer.join(timeout=10)
    windows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [w["end"] for w in windows if w["type"] == "window"] == [0.6667, 1.0]  # 8 and 12 frames


def write_png16(folder, count: int = 8) -> None:
    """Frames of 16-bit grey (mode ``I;16``), a ramp over the full 0..65535 range."""
    folder.mkdir()
    ramp = np.linspace(0, 65535, 40 * 48).reshape(40, 48).astype(np.uint16)
    for i in range(count):
        Image.fromarray(ramp).save(folder / f"img_{i + 1:05d}.png")
    assert Image.open(folder / "img_00001.png").mode == "I;16"


def test_16_bit_png_frames_are_scaled_not_clipped(tiny_set, checkpoint, tmp_path, capsys):
    write_png16(tmp_path / "deep")
    frames = FrameFolderReader(tmp_path / "deep", template="img_{:05d}.png").get_frames([0])
    assert frames.dtype == np.uint8 and frames.shape == (1, 40, 48, 3)
    assert frames.min() == 0 and frames.max() == 255 and abs(frames.mean() - 127.5) < 1
    assert (frames == 255).mean() < 0.01  # clipped, 99% of them were white
    listing = tmp_path / "list.txt"
    listing.write_text("deep 8 0\n")
    argv = ["check-data", str(listing), "--root", str(tmp_path), "--workers", "1", "--no-progress"]
    assert main([*argv, "--frame-template", "img_{:05d}.png"]) == 0
    assert "1 entries checked, 0 bad" in capsys.readouterr().out
    predict = ["predict", str(tmp_path / "deep"), "--checkpoint", str(checkpoint), "--json"]
    assert main(predict) == 0
    assert json.loads(capsys.readouterr().out)["top"]


def test_frames_named_otherwise_than_the_template_are_said_so(tmp_path, capsys):
    write_png16(tmp_path / "deep")
    listing = tmp_path / "list.txt"
    listing.write_text("deep 8 0\n")
    argv = ["check-data", str(listing), "--root", str(tmp_path), "--workers", "1", "--no-progress"]
    assert main(argv) == 1  # the default template names .jpg files
    line = capsys.readouterr().out.splitlines()[0]
    assert "img_00001.jpg absent" in line and "matches none of the 8 .png images" in line
    assert "img_00001.png" in line and "8 on disk, 8 claimed" not in line


def test_devices_tcm_does_not_run_on(tiny_set, checkpoint, capsys):
    video = tiny_set.root / "val_0_0.mp4"
    for device in ("mps", "xpu", "meta"):
        argv = ["predict", video, "--checkpoint", checkpoint, "--device", device]
        refused(capsys, argv, f"--device '{device}'", "cpu or cuda")


def test_a_folder_of_videos_with_images_beside_them_predicts_every_video(
    tiny_set, checkpoint, tmp_path, capsys, caplog
):
    folder = tmp_path / "videos"
    folder.mkdir()
    videos = sorted(tiny_set.root.glob("val_*.mp4"))[:5]
    for k, video in enumerate(videos):
        (folder / video.name).write_bytes(video.read_bytes())
        Image.new("RGB", (40, 48), (k * 40, 0, 0)).save(folder / f"p{k + 1}.jpg")
    argv = ["predict", str(folder), "--checkpoint", str(checkpoint), "--no-progress", "--json"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    predicted = [json.loads(line)["path"] for line in out.splitlines()]
    assert predicted == [str(folder / video.name) for video in videos]
    said = [r.getMessage() for r in caplog.records if "images left out" in r.getMessage()]
    assert said == [
        f"{folder} holds 5 video files and 5 images: the videos are predicted, the images left "
        "out (put frames in a folder of their own to predict them)"
    ]
    # Many videos and one cover image: the videos, not a failed frame folder.
    (folder / "cover.jpg").write_bytes((folder / "p1.jpg").read_bytes())
    for name in ("p1.jpg", "p2.jpg", "p3.jpg", "p4.jpg", "p5.jpg"):
        (folder / name).unlink()
    assert main(argv) == 0
    assert len(capsys.readouterr().out.splitlines()) == 5
    # Frames alone in a folder are still one clip.
    frames = tmp_path / "frames"
    frames.mkdir()
    for k in range(8):
        Image.new("RGB", (40, 48), (k * 30, 0, 0)).save(frames / f"img_{k + 1:05d}.jpg")
    assert main(["predict", str(frames), *argv[2:]]) == 0
    assert [json.loads(x)["path"] for x in capsys.readouterr().out.splitlines()] == [str(frames)]


def test_a_still_image_is_a_one_frame_clip_whatever_its_name_and_mode(checkpoint, tmp_path, capsys):
    still = tmp_path / "still.jpg"
    Image.new("RGB", (48, 40), (200, 30, 30)).save(still)
    renamed = tmp_path / "still.mp4"
    renamed.write_bytes(still.read_bytes())
    probabilities = []
    for path in (still, renamed):
        for window in ([], ["--window", "2"]):
            argv = ["predict", str(path), "--checkpoint", str(checkpoint), "--no-progress"]
            assert main([*argv, "--json", *window]) == 0, capsys.readouterr().err
            first = json.loads(capsys.readouterr().out.splitlines()[0])
            if window:
                assert (first["type"], first["start"], first["end"]) == ("window", 0.0, 0.04)
                probabilities.append(first["probabilities"][0])
            else:
                probabilities.append(first["top"][0]["probability"])
    assert probabilities == pytest.approx([probabilities[0]] * 4, abs=1e-6)


def test_predictor_refuses_topk_below_one_as_the_command_does(checkpoint, tiny_set, capsys):
    import tcm

    video = tiny_set.root / "val_0_0.mp4"
    predictor = tcm.Predictor(checkpoint, device="cpu")
    for topk in (0, -1):
        with pytest.raises(
            ValueError, match=f"topk must be a positive number of classes, got {topk}"
        ):
            predictor.predict(video, topk=topk)
        with pytest.raises(ValueError, match="topk must be a positive"):
            list(predictor.predict_many([video], topk=topk))
        refused(capsys, ["predict", video, "--checkpoint", checkpoint, "--topk", topk], "--topk")
    assert len(predictor.predict(video, topk=1).top) == 1
