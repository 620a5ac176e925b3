"""The dataset: shapes, views, reproducibility, bad-sample policies, ``tcm check-data``."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from torch.utils.data import DataLoader

from tcm.cli.main import main
from tcm.data import (
    BadVideoError,
    Preprocessing,
    SkipReport,
    StorageOptions,
    VideoRecord,
    build_dataset,
    collate_clips,
    write_list,
)

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SMALL = Preprocessing(input_size=32, resize=(48, 64), mean=MEAN, std=STD)


@pytest.fixture(scope="module")
def real_records():
    return [
        VideoRecord("videos/kinetics_arm_wrestling.mp4", 0),
        VideoRecord("videos/xvid_320x240.avi", 1),
        VideoRecord("frames/clip_320x240", 2, 10),
    ]


def test_real_files_train_and_test_shapes(shared_data, real_records):
    train = build_dataset(
        real_records, shared_data, Preprocessing(mean=MEAN, std=STD), train=True, num_classes=3
    )
    for i in range(3):
        clip, label = train[i]
        assert clip.shape == (8, 3, 224, 224) and clip.dtype == torch.float32 and label == i
        assert torch.isfinite(clip).all()
    test = build_dataset(
        real_records,
        shared_data,
        Preprocessing(num_clips=2, num_crops=3, resize=256, mean=MEAN, std=STD),
        train=False,
    )
    clip, _ = test[0]
    assert clip.shape == (2 * 3 * 8, 3, 224, 224)
    single = build_dataset(
        real_records,
        shared_data,
        Preprocessing(num_clips=2, resize=256, mean=MEAN, std=STD),
        train=False,
    )
    views = clip.view(6, 8, 3, 224, 224)
    torch.testing.assert_close(
        views[4], single[0][0].view(2, 8, 3, 224, 224)[1]
    )  # clip 1, centre crop


def test_uint8_output(shared_data, real_records):
    dataset = build_dataset(
        real_records, shared_data, Preprocessing(num_segments=4), train=False, uint8=True
    )
    clip, _ = dataset[2]
    assert clip.dtype == torch.uint8 and clip.shape == (4, 3, 224, 224)
    normalised = build_dataset(
        real_records, shared_data, Preprocessing(num_segments=4, mean=MEAN, std=STD), train=False
    )[2][0]
    torch.testing.assert_close(
        normalised,
        (clip.float() / 255 - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1),
    )


@pytest.fixture()
def synthetic_root(tmp_path, synthetic_videos):
    for name, path in synthetic_videos.items():
        shutil.copy(path, tmp_path / f"{name}{path.suffix}")
    return tmp_path


def _good_records():
    return [
        VideoRecord("h264.mp4", 0),
        VideoRecord("vp9.webm", 1),
        VideoRecord("mjpeg.avi", 2),
        VideoRecord("vfr.mp4", 3),
        VideoRecord("gray.mp4", 0),
        VideoRecord("short.mp4", 1),
    ]


def test_augmentation_is_a_function_of_seed_epoch_index(synthetic_root):
    records = _good_records()
    dataset = build_dataset(
        records, synthetic_root, SMALL, train=True, num_classes=4, storage=StorageOptions(seed=7)
    )
    first = [dataset[i][0] for i in range(len(records))]
    again = build_dataset(
        records, synthetic_root, SMALL, train=True, num_classes=4, storage=StorageOptions(seed=7)
    )
    for i in reversed(range(len(records))):  # order does not matter
        torch.testing.assert_close(again[i][0], first[i], rtol=0, atol=0)
    dataset.set_epoch(1)
    assert any(not torch.equal(dataset[i][0], first[i]) for i in range(len(records)))
    dataset.set_epoch(0)
    loader = DataLoader(dataset, batch_size=3, num_workers=2, collate_fn=collate_clips)
    clips = torch.cat([batch[0] for batch in loader])
    torch.testing.assert_close(clips, torch.stack(first), rtol=0, atol=0)


def test_set_epoch_reaches_persistent_workers(synthetic_root):
    dataset = build_dataset(
        _good_records()[:2], synthetic_root, SMALL, train=True, storage=StorageOptions(seed=1)
    )
    loader = DataLoader(
        dataset, batch_size=2, num_workers=1, persistent_workers=True, collate_fn=collate_clips
    )
    seen = []
    for epoch in range(2):
        dataset.set_epoch(epoch)
        seen.append(next(iter(loader))[0])
        dataset_epoch = torch.stack([dataset[i][0] for i in range(2)])
        torch.testing.assert_close(seen[-1], dataset_epoch, rtol=0, atol=0)
    assert not torch.equal(seen[0], seen[1])


def _bad_root(root):
    (root / "empty.mp4").touch()
    (root / "notes.mp4").write_text("not a video\n" * 10)
    data = (root / "h264.mp4").read_bytes()
    (root / "cut.mp4").write_bytes(data[: len(data) // 2])
    frames = root / "frames"
    frames.mkdir()
    from PIL import Image

    for i in (1, 2, 4):
        Image.new("RGB", (64, 48), (i * 40, 0, 0)).save(frames / f"img_{i:05d}.jpg")
    return [
        VideoRecord("empty.mp4", 0),
        VideoRecord("notes.mp4", 1),
        VideoRecord("cut.mp4", 2),
        VideoRecord("absent.mp4", 3),
        VideoRecord("frames", 0, 4),
        VideoRecord("short.mp4", 9),
    ]


EXPECTED_REASONS = {
    "empty.mp4": "empty",
    "notes.mp4": "not a video",
    "cut.mp4": "truncated",
    "absent.mp4": "missing",
    "frames": "missing frame",
    "short.mp4": "label out of range",
}


def test_skip_policy_with_workers_reports_every_bad_sample(synthetic_root, caplog):
    records = _good_records()[:5] + _bad_root(synthetic_root)
    dataset = build_dataset(
        records,
        synthetic_root,
        SMALL,
        train=True,
        num_classes=4,
        storage=StorageOptions(bad_sample_policy="skip"),
    )
    loader = DataLoader(
        dataset,
        batch_size=4,
        num_workers=2,
        shuffle=True,
        collate_fn=collate_clips,
        pin_memory=False,
    )
    report = SkipReport()
    total = 0
    for batch in loader:
        clips, labels = batch
        assert clips.shape[1:] == (8, 3, 32, 32) and ((labels >= 0) & (labels < 4)).all()
        total += len(labels)
        report.update(batch)
    assert total == len(records)
    assert {e.path: e.reason for e in report.entries} == EXPECTED_REASONS
    assert report.count >= len(EXPECTED_REASONS)
    assert "samples skipped" in report.summary()


def test_raise_policy_names_file_and_reason(synthetic_root):
    records = _bad_root(synthetic_root)
    with pytest.raises(BadVideoError, match=r"short.mp4: label out of range .*line"):
        build_dataset(
            [VideoRecord("short.mp4", 9, line=6)], synthetic_root, SMALL, train=True, num_classes=4
        )
    dataset = build_dataset(records[:5], synthetic_root, SMALL, train=False, num_classes=4)
    for i, record in enumerate(records[:5]):
        with pytest.raises(BadVideoError) as info:
            dataset[i]
        assert info.value.reason == EXPECTED_REASONS[record.path]
        assert record.path in str(info.value)


def test_raise_policy_in_a_worker_keeps_the_error_class(synthetic_root):
    records = _bad_root(synthetic_root)
    dataset = build_dataset(records[:1], synthetic_root, SMALL, train=True)
    loader = DataLoader(dataset, batch_size=1, num_workers=1, collate_fn=collate_clips)
    with pytest.raises(BadVideoError, match=r"empty.mp4: empty"):
        next(iter(loader))


def test_skip_policy_gives_up_when_everything_is_bad(synthetic_root):
    records = _bad_root(synthetic_root)[:4]
    dataset = build_dataset(
        records,
        synthetic_root,
        SMALL,
        train=True,
        storage=StorageOptions(bad_sample_policy="skip", max_retries=3),
    )
    with pytest.raises(BadVideoError, match="bad samples in a row"):
        dataset[0]


def test_check_data_command(synthetic_root, tmp_path, capsys):
    records = _good_records()[:4] + _bad_root(synthetic_root)
    list_file = tmp_path / "lists" / "train.txt"
    list_file.parent.mkdir()
    write_list(list_file, records)
    (list_file.parent / "classes.txt").write_text("a\nb\nc\nd\n")
    good = tmp_path / "good.txt"
    args = [
        "check-data",
        str(list_file),
        "--root",
        str(synthetic_root),
        "--workers",
        "1",
        "--no-progress",
    ]
    assert main([*args, "--good-list", str(good)]) == 1
    printed = capsys.readouterr().out
    for path, reason in EXPECTED_REASONS.items():
        assert f"{path}: {reason}" in printed
    assert "10 entries checked, 6 bad" in printed
    assert good.read_text().split("\n")[:4] == [r.to_line() for r in records[:4]]
    assert main([*args, "--json"]) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {line["path"]: line["reason"] for line in lines[:-1]} == EXPECTED_REASONS
    assert lines[-1]["bad"] == 6
    assert (
        main(
            [
                "check-data",
                str(good),
                "--root",
                str(synthetic_root),
                "--workers",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
