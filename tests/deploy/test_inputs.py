"""What a path given to inference holds, and how it becomes the model's input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tcm.data import Preprocessing, build_dataset
from tcm.data.annotations import VideoRecord
from tcm.data.bad_video import EMPTY, MISSING, NOT_A_VIDEO, BadVideoError
from tcm.data.transforms import normalize
from tcm.deploy.inputs import (
    expand_inputs,
    find_frame_template,
    is_frame_folder,
    read_clip,
    sampled_frame_indices,
    to_model_input,
)
from video_files import write_moving_square

PREP = Preprocessing(num_segments=4, resize=[36, 48], input_size=32)


def _frames(folder, names):
    folder.mkdir(parents=True)
    for value, name in enumerate(names):
        Image.fromarray(np.full((12, 16, 3), 30 * value, np.uint8)).save(folder / name)
    return folder


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["img_00001.jpg", "img_00002.jpg"], ("img_{:05d}.jpg", 1)),
        (["000000.png", "000001.png"], ("{:06d}.png", 0)),
        (["frame7.jpg", "frame8.jpg"], ("frame{:d}.jpg", 7)),
        (["cam2_{x}_0010.jpg"], ("cam2_{{x}}_{:04d}.jpg", 10)),  # braces kept, last number
    ],
)
def test_the_frame_template_is_found_from_the_first_name(tmp_path, names, expected):
    folder = _frames(tmp_path / "f", names)
    template, start = find_frame_template(folder)
    assert (template, start) == expected
    assert template.format(start) == sorted(names)[0]


def test_a_folder_without_numbered_images_is_a_bad_input(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no image")
    with pytest.raises(BadVideoError) as caught:
        find_frame_template(tmp_path / "empty")
    assert caught.value.reason == EMPTY
    _frames(tmp_path / "unnumbered", ["cover.jpg"])
    with pytest.raises(BadVideoError) as caught:
        find_frame_template(tmp_path / "unnumbered")
    assert caught.value.reason == NOT_A_VIDEO and "cover.jpg" in str(caught.value)


def test_folders_expand_to_their_videos_and_frame_folders_sorted(tmp_path):
    root = tmp_path / "inputs"
    root.mkdir()
    write_moving_square(root / "b.mp4", num_frames=4)
    (root / "sub").mkdir()
    write_moving_square(root / "sub" / "a.MKV", num_frames=4)
    _frames(root / "sub" / "frames", ["0001.jpg", "0002.jpg"])
    _frames(root / "sub" / "frames" / "nested", ["0001.jpg"])  # inside a frame folder: not apart
    (root / "notes.txt").write_text("ignored")
    assert is_frame_folder(root / "sub" / "frames") and not is_frame_folder(root / "sub")
    assert not is_frame_folder(root / "b.mp4")
    missing = tmp_path / "missing.mp4"
    assert expand_inputs([root, missing, root / "b.mp4"]) == [
        root / "b.mp4",
        root / "sub" / "a.MKV",
        root / "sub" / "frames",
        missing,  # kept, to be reported
        root / "b.mp4",
    ]
    (tmp_path / "nothing").mkdir()
    assert expand_inputs([tmp_path / "nothing"]) == []


def test_read_clip_is_the_test_pipeline_in_uint8(tmp_path):
    video = write_moving_square(tmp_path / "clip.mp4", num_frames=16)
    clip = read_clip(video, PREP)
    assert clip.dtype == torch.uint8 and clip.shape == (4, 3, 32, 32)  # (V*T, 3, S, S)
    dataset = build_dataset([VideoRecord(str(video), 0)], ".", PREP, train=False, uint8=True)
    assert torch.equal(clip, dataset[0][0])
    assert sampled_frame_indices(video, PREP).tolist() == [[2, 6, 10, 14]]
    three = Preprocessing(num_segments=4, resize=[36, 48], input_size=32, num_clips=2, num_crops=3)
    assert read_clip(video, three).shape == (2 * 3 * 4, 3, 32, 32)
    assert sampled_frame_indices(video, three).shape == (2, 4)


def test_read_clip_of_a_frame_folder_finds_its_names(tmp_path):
    folder = _frames(tmp_path / "frames", [f"{i:03d}.png" for i in range(8)])
    clip = read_clip(folder, PREP)
    assert clip.shape == (4, 3, 32, 32)
    levels = clip.float().mean(dim=(1, 2, 3))  # frame i is 30 * i grey
    expected = [30 * i for i in sampled_frame_indices(folder, PREP)[0]]
    assert levels.tolist() == pytest.approx(expected, abs=1)


def test_read_clip_names_a_missing_input(tmp_path):
    with pytest.raises(BadVideoError) as caught:
        read_clip(tmp_path / "gone.mp4", PREP)
    assert caught.value.reason == MISSING and "no such file or folder" in str(caught.value)


def test_model_input_is_the_normalised_clip():
    frames = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    out = to_model_input(frames, PREP)
    assert out.dtype == torch.float32
    assert torch.equal(out, normalize(frames, PREP.mean, PREP.std))
    expected = (frames[0, 1].float() / 255 - PREP.mean[1]) / PREP.std[1]
    assert torch.allclose(out[0, 1], expected, atol=1e-5)
