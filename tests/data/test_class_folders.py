"""Class folders -> lists (:mod:`tcm.data.class_folders`, ``tcm prepare folder``): a split
that depends only on each file's own name, both layouts, frame folders, and what is reported."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from tcm.cli.main import main
from tcm.data.annotations import read_classes, read_list
from tcm.data.class_folders import EMPTY_CLASS, NOT_MEDIA, TOO_SMALL, UNREADABLE, scan_class_folders
from video_files import write_class_clip

CLASSES = ("jump", "run", "wave")


def class_folders(root: Path, per_class: int = 10, names=CLASSES) -> Path:
    for label, name in enumerate(names):
        (root / name).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            write_class_clip(root / name / f"clip_{k:02d}.mp4", label % 3, k, num_frames=4)
    return root


def sides(scan) -> dict[str, str]:
    return {r.path: split for split, records in scan.splits.items() for r in records}


def test_split_is_per_class_stable_and_fixed_by_each_name(tmp_path):
    root = class_folders(tmp_path / "clips")
    scan = scan_class_folders(root, val_fraction=0.3, seed=0, check=False)
    assert scan.classes == list(CLASSES) and scan.layout == "class folders"
    assert not scan.problems
    first = sides(scan)
    assert len(first) == 30
    for label, name in enumerate(CLASSES):  # every class on both sides, labels by sorted name
        for split in ("train", "val"):
            assert any(r.label == label and r.path.startswith(name) for r in scan.splits[split])
    assert sides(scan_class_folders(root, val_fraction=0.3, seed=0, check=False)) == first
    # New files never move the old ones.
    for k in range(10, 25):
        write_class_clip(root / "run" / f"clip_{k:02d}.mp4", 1, k, num_frames=4)
    grown = sides(scan_class_folders(root, val_fraction=0.3, seed=0, check=False))
    assert {path: grown[path] for path in first} == first
    share = sum(side == "val" for side in grown.values()) / len(grown)
    assert 0.1 < share < 0.5
    assert sides(scan_class_folders(root, val_fraction=0.3, seed=1, check=False)) != grown


def test_test_fraction_and_tiny_classes(tmp_path):
    root = class_folders(tmp_path / "clips", per_class=12)
    (root / "solo").mkdir()
    write_class_clip(root / "solo" / "only.mp4", 0, 0, num_frames=4)
    scan = scan_class_folders(root, val_fraction=0.2, test_fraction=0.2, check=False)
    assert set(scan.splits) == {"train", "val", "test"}
    solo = scan.classes.index("solo")
    assert [r.path for r in scan.splits["train"] if r.label == solo] == ["solo/only.mp4"]
    assert [(p.path, p.kind) for p in scan.problems] == [("solo", TOO_SMALL)]
    # Two clips and a 1 % share still give each side one clip.
    pair = class_folders(tmp_path / "pair", per_class=2, names=("a",))
    scan = scan_class_folders(pair, val_fraction=0.01, check=False)
    assert len(scan.splits["train"]) == len(scan.splits["val"]) == 1


def test_problems_named_hidden_files_and_link_loops_ignored(tmp_path):
    root = class_folders(tmp_path / "clips", per_class=4)
    (root / "run" / "broken.mp4").write_bytes(b"not a video at all" * 20)
    (root / "run" / "notes.txt").write_text("labels by hand")
    (root / "jump" / ".DS_Store").write_bytes(b"\0" * 10)
    (root / ".cache").mkdir()
    (root / "nothing").mkdir()
    os.symlink("..", root / "wave" / "back_up")
    os.symlink(".", root / "wave" / "here")
    frames = root / "wave" / "frames_clip"
    frames.mkdir()
    for i in range(1, 7):
        Image.new("RGB", (48, 40), (i * 30, 0, 0)).save(frames / f"img_{i:05d}.jpg")
    scan = scan_class_folders(root, val_fraction=0.25)
    found = {(p.path, p.kind) for p in scan.problems}
    assert found == {
        ("run/broken.mp4", UNREADABLE),
        ("run/notes.txt", NOT_MEDIA),
        ("nothing", EMPTY_CLASS),
    }
    assert scan.classes == list(CLASSES)
    records = {r.path: r for records in scan.splits.values() for r in records}
    assert records["wave/frames_clip"].num_frames == 6
    assert len(records) == 13  # 12 videos and the frame folder, nothing twice through the links


def test_split_folders_used_as_they_are(tmp_path):
    root = tmp_path / "clips"
    class_folders(root / "train", per_class=3)
    class_folders(root / "val", per_class=1, names=("jump", "run"))
    scan = scan_class_folders(root, check=False)
    assert scan.layout == "split folders" and scan.classes == list(CLASSES)
    assert len(scan.splits["train"]) == 9
    assert [r.path for r in scan.splits["val"]] == ["val/jump/clip_00.mp4", "val/run/clip_00.mp4"]


def test_command_writes_lists_the_datasets_read(tmp_path, capsys):
    root = class_folders(tmp_path / "clips", per_class=5)
    (root / "run" / "notes.txt").write_text("x")
    out = tmp_path / "lists"
    argv = ["prepare", "folder", "--root", root, "--out", out, "--val-fraction", "0.4"]
    assert main([str(a) for a in argv]) == 0
    printed = capsys.readouterr().out
    assert "run/notes.txt" in printed and (out / "skipped.txt").is_file()
    assert read_classes(out / "classes.txt") == list(CLASSES)
    train, val = read_list(out / "train.txt"), read_list(out / "val.txt")
    assert len(train) + len(val) == 15 and val
    assert all((root / r.path).is_file() for r in train + val)
    assert main([str(a) for a in argv]) == 0  # the same lists again
    assert read_list(out / "val.txt") == val


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["prepare", "ucf101", "--root", "{root}", "--out", "{out}"], "--annotations"),
        (["prepare", "folder", "--root", "{root}/missing", "--out", "{out}"], "missing"),
        (
            ["prepare", "folder", "--root", "{root}", "--out", "{out}", "--val-fraction", "1.5"],
            "--val-fraction",
        ),
    ],
)
def test_bad_arguments_one_line(tmp_path, capsys, argv, needle):
    root = class_folders(tmp_path / "clips", per_class=2, names=("a",))
    argv = [a.format(root=root, out=tmp_path / "lists") for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
