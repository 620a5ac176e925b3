"""Official annotation formats, list files, and ``tcm prepare``."""

from __future__ import annotations

import json
import random

import pytest

from tcm.cli.main import main
from tcm.data.annotations import VideoRecord, read_classes, read_list, write_list
from tcm.data.official_formats import (
    parse_hmdb51,
    parse_kinetics400,
    parse_sthv1,
    parse_sthv2,
    parse_ucf101,
)

SS_NAMES = [
    "Pushing something from right to left",
    "Approaching something with your camera",
    "Pushing something from left to right",
    "Putting something on a surface",
    "Holding something next to something",
]


def _sthv1_files(folder):
    (folder / "something-something-v1-labels.csv").write_text("\n".join(SS_NAMES) + "\n")
    (folder / "something-something-v1-train.csv").write_text(
        "100;Putting something on a surface\n101;Pushing something from left to right\n"
        "102;Approaching something with your camera\n"
    )
    (folder / "something-something-v1-validation.csv").write_text(
        "200;Holding something next to something\n201;Pushing something from right to left\n"
    )


def test_list_round_trip_with_spaces(tmp_path):
    records = [
        VideoRecord("arm wrestling/abc_000001_000011.mp4", 3),
        VideoRecord("12345", 7, 47),
        VideoRecord("v_x/folder 2", 0, 10),
    ]
    write_list(tmp_path / "list.txt", records)
    assert read_list(tmp_path / "list.txt") == records
    assert read_list(tmp_path / "list.txt")[1].line == 2


def test_list_rejects_lines_without_label(tmp_path):
    (tmp_path / "bad.txt").write_text("video.mp4\n")
    with pytest.raises(ValueError, match=r"bad.txt:1"):
        read_list(tmp_path / "bad.txt")


def test_byte_order_marks_duplicates_and_undecodable_files(tmp_path):
    (tmp_path / "list.txt").write_bytes(b"\xef\xbb\xbfa.mp4 0\nb.mp4 1\n")
    assert [r.path for r in read_list(tmp_path / "list.txt")] == ["a.mp4", "b.mp4"]
    (tmp_path / "classes.txt").write_bytes(b"\xef\xbb\xbfpush\npull\n")
    assert read_classes(tmp_path / "classes.txt") == ["push", "pull"]
    (tmp_path / "classes.txt").write_text("push\npull\n\npush\n")
    with pytest.raises(ValueError, match=r"classes.txt:4: class 'push' is listed twice"):
        read_classes(tmp_path / "classes.txt")
    (tmp_path / "list.txt").write_bytes(b"a.mp4 0\n\xff.mp4 1\n")
    with pytest.raises(ValueError, match=r"list.txt: not a UTF-8 list file \(line 2"):
        read_list(tmp_path / "list.txt")
    with pytest.raises(ValueError, match="is a folder"):
        read_list(tmp_path)


def test_sthv1_unsorted_labels_give_alphabetical_classes(tmp_path):
    _sthv1_files(tmp_path)
    parsed = parse_sthv1(tmp_path)
    assert parsed.classes == sorted(SS_NAMES)
    train = {a.key: parsed.classes[a.label] for a in parsed.splits["train"]}
    assert train == {
        "100": "Putting something on a surface",
        "101": "Pushing something from left to right",
        "102": "Approaching something with your camera",
    }
    assert [a.key for a in parsed.splits["val"]] == ["200", "201"]


def test_sthv2_templates_and_placeholders(tmp_path):
    labels = {name: str(i) for i, name in enumerate(SS_NAMES)}
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    train = [
        {
            "id": "78687",
            "label": "holding potato next to vicks vaporub bottle",
            "template": "Holding [something] next to [something]",
            "placeholders": ["potato", "vicks vaporub bottle"],
        },
        {
            "id": "42326",
            "label": "pushing a pen from left to right",
            "template": "Pushing [something] from left to right",
            "placeholders": ["a pen"],
        },
    ]
    val = [
        {
            "id": "1",
            "label": "x",
            "template": "Putting [something] on a surface",
            "placeholders": ["x"],
        }
    ]
    (tmp_path / "train.json").write_text(json.dumps(train))
    (tmp_path / "validation.json").write_text(json.dumps(val))
    parsed = parse_sthv2(tmp_path)
    assert parsed.classes == sorted(SS_NAMES)
    names = [parsed.classes[a.label] for a in parsed.splits["train"]]
    assert names == ["Holding something next to something", "Pushing something from left to right"]
    assert "78687.webm" in parsed.splits["train"][0].candidates
    assert parsed.classes[parsed.splits["val"][0].label] == "Putting something on a surface"


def test_kinetics_csv(tmp_path):
    header = "label,youtube_id,time_start,time_end,split\n"
    (tmp_path / "train.csv").write_text(
        header
        + "zumba,aaa,10,20,train\n"
        + '"arm wrestling",bbb,0,10,train\n'
        + "abseiling,ccc,5,15,train\n"
    )
    (tmp_path / "validate.csv").write_text(header + "arm wrestling,ddd,30,40,val\n")
    parsed = parse_kinetics400(tmp_path)
    assert parsed.classes == ["abseiling", "arm wrestling", "zumba"]
    entry = parsed.splits["train"][1]
    assert entry.key == "bbb_000000_000010" and entry.label == 1
    assert "arm wrestling/bbb_000000_000010.mp4" in entry.candidates
    assert "arm_wrestling/bbb_000000_000010.mp4" in entry.candidates
    assert parsed.splits["val"][0].key == "ddd_000030_000040"
    # split folders of the downloaders first, then the root; class folders, then flat
    val = list(parsed.splits["val"][0].candidates)
    assert val.index("val/arm wrestling/ddd_000030_000040.mp4") < val.index(
        "validate/arm_wrestling/ddd_000030_000040.mp4"
    )
    assert "videos_val/ddd_000030_000040.mp4" in val and "ddd_000030_000040.mp4" in val
    assert not any(c.startswith(("train/", "videos_train/")) for c in val)


def test_ucf101_one_based_index(tmp_path):
    (tmp_path / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 Archery\n3 YoYo\n")
    (tmp_path / "trainlist02.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\nYoYo/v_YoYo_g01_c01.avi 3\n"
    )
    (tmp_path / "testlist02.txt").write_text("Archery/v_Archery_g01_c01.avi\n")
    parsed = parse_ucf101(tmp_path, split=2)
    assert parsed.classes == ["ApplyEyeMakeup", "Archery", "YoYo"]
    assert [a.label for a in parsed.splits["train"]] == [0, 2]
    assert [a.label for a in parsed.splits["val"]] == [1]
    (tmp_path / "trainlist02.txt").write_text("YoYo/v_YoYo_g01_c01.avi 1\n")
    with pytest.raises(ValueError, match="does not match"):
        parse_ucf101(tmp_path, split=2)


def test_hmdb51_flags(tmp_path):
    (tmp_path / "wave_test_split1.txt").write_text("w1.avi 1\nw2.avi 2\nw3.avi 0\n")
    (tmp_path / "clap_test_split1.txt").write_text("c1.avi 2 \nc2.avi 1\n")
    (tmp_path / "clap_test_split2.txt").write_text("c1.avi 1\n")
    parsed = parse_hmdb51(tmp_path, split=1)
    assert parsed.classes == ["clap", "wave"]
    assert sorted((a.key, a.label) for a in parsed.splits["train"]) == [
        ("clap/c2.avi", 0),
        ("wave/w1.avi", 1),
    ]
    assert sorted(a.key for a in parsed.splits["val"]) == ["clap/c1.avi", "wave/w2.avi"]


def test_prepare_sthv1_counts_frames_and_reports_missing(tmp_path, capsys):
    annotations, root, out = tmp_path / "ann", tmp_path / "frames", tmp_path / "lists"
    annotations.mkdir()
    _sthv1_files(annotations)
    for clip_id, frames in (("100", 3), ("101", 5), ("200", 2)):
        (root / clip_id).mkdir(parents=True)
        for i in range(1, frames + 1):
            (root / clip_id / f"{i:05d}.jpg").write_bytes(b"")
    status = main(
        [
            "prepare",
            "sthv1",
            "--annotations",
            str(annotations),
            "--root",
            str(root),
            "--out",
            str(out),
        ]
    )
    assert status == 0
    classes = read_classes(out / "classes.txt")
    assert classes == sorted(SS_NAMES)
    train = read_list(out / "train.txt")
    assert [(r.path, r.num_frames, classes[r.label]) for r in train] == [
        ("100", 3, "Putting something on a surface"),
        ("101", 5, "Pushing something from left to right"),
    ]
    printed = capsys.readouterr().out
    assert "1 of 3 entries have no media" in printed and "102" in printed
    assert (out / "missing_train.txt").read_text() == "102\n"
    assert [r.path for r in read_list(out / "val.txt")] == ["200"]


def test_prepare_ucf101_videos_and_extraction(tmp_path, synthetic_videos, capsys):
    annotations, root, out = tmp_path / "ann", tmp_path / "videos", tmp_path / "lists"
    annotations.mkdir()
    (annotations / "classInd.txt").write_text("1 Archery\n2 YoYo\n")
    (annotations / "trainlist01.txt").write_text(
        "Archery/v_Archery_g01_c01.avi 1\nYoYo/v_YoYo_g01_c01.avi 2\n"
    )
    (annotations / "testlist01.txt").write_text("YoYo/v_YoYo_g02_c01.avi\n")
    for relative in ("Archery/v_Archery_g01_c01.avi", "YoYo/v_YoYo_g02_c01.avi"):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(synthetic_videos["mjpeg"].read_bytes())
    args = [
        "prepare",
        "ucf101",
        "--annotations",
        str(annotations),
        "--root",
        str(root),
        "--out",
        str(out),
    ]
    assert main(args) == 0
    assert read_list(out / "train.txt") == [VideoRecord("Archery/v_Archery_g01_c01.avi", 0)]
    assert "YoYo/v_YoYo_g01_c01.avi" in capsys.readouterr().out
    frames = tmp_path / "extracted"
    args += [
        "--extract-frames",
        str(frames),
        "--workers",
        "1",
        "--no-progress",
        "--short-side",
        "32",
    ]
    assert main(args) == 0
    assert read_list(out / "val.txt") == [VideoRecord("YoYo/v_YoYo_g02_c01", 1, 24)]
    assert (frames / "YoYo/v_YoYo_g02_c01/img_00024.jpg").is_file()


def test_prepare_ucf101_reencode_lists_the_new_files_and_reports_failures(
    tmp_path, synthetic_videos, capsys
):
    from tcm.data.video_reader import VideoReader

    annotations, root, out = tmp_path / "ann", tmp_path / "videos", tmp_path / "lists"
    annotations.mkdir()
    (annotations / "classInd.txt").write_text("1 Archery\n2 YoYo\n")
    (annotations / "trainlist01.txt").write_text(
        "Archery/v_Archery_g01_c01.avi 1\nYoYo/v_YoYo_g01_c01.avi 2\n"
    )
    (annotations / "testlist01.txt").write_text("YoYo/v_YoYo_g02_c01.avi\n")
    for relative in ("Archery/v_Archery_g01_c01.avi", "YoYo/v_YoYo_g02_c01.avi"):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(synthetic_videos["mjpeg"].read_bytes())
    (root / "YoYo/v_YoYo_g01_c01.avi").write_text("not a video\n" * 20)
    fast = tmp_path / "fast"
    args = ["prepare", "ucf101", "--annotations", str(annotations), "--root", str(root)]
    args += ["--out", str(out), "--workers", "1", "--no-progress"]
    assert main([*args, "--reencode", str(fast), "--gop", "4", "--short-side", "32"]) == 0
    printed = capsys.readouterr().out
    assert "train: 1 videos could not be rewritten" in printed and "v_YoYo_g01_c01.avi" in printed
    assert "v_YoYo_g01_c01.avi: not a video" in (out / "failed_train.txt").read_text()
    assert read_list(out / "train.txt") == [VideoRecord("Archery/v_Archery_g01_c01.mp4", 0)]
    assert read_list(out / "val.txt") == [VideoRecord("YoYo/v_YoYo_g02_c01.mp4", 1)]
    with VideoReader(fast / "YoYo/v_YoYo_g02_c01.mp4") as copy:
        assert copy.num_frames == 24 and copy.size == (32, 42)
    assert main([*args, "--reencode", str(root)]) == 2  # over the originals
    assert "other than --root" in capsys.readouterr().err


def test_mirror_classes_whatever_the_order():
    from tcm.data.transforms import mirror_classes

    names = [
        *SS_NAMES,
        "Turning the camera left while filming something",
        "Pulling it right out",
        "upright",
    ]
    for seed in range(3):
        shuffled = names[:]
        random.Random(seed).shuffle(shuffled)
        mirror = mirror_classes(shuffled)
        by_name = {shuffled[i]: (shuffled[m] if m >= 0 else None) for i, m in enumerate(mirror)}
        assert (
            by_name["Pushing something from right to left"]
            == "Pushing something from left to right"
        )
        assert (
            by_name["Pushing something from left to right"]
            == "Pushing something from right to left"
        )
        assert by_name["Turning the camera left while filming something"] is None  # no mirror class
        assert by_name["Pulling it right out"] is None
        assert by_name["upright"] == "upright"
        assert (
            by_name["Holding something next to something"] == "Holding something next to something"
        )


def test_mirror_classes_on_real_something_something_names(shared_data):
    from tcm.data.transforms import mirror_classes

    names = read_classes(shared_data / "labels" / "something_something.txt")
    mirror = mirror_classes(names)
    pairs = {(names[i], names[m]) for i, m in enumerate(mirror) if m not in (i, -1)}
    assert len(pairs) == 6
    assert (
        "Turning the camera left while filming something",
        "Turning the camera right while filming something",
    ) in pairs
    unflippable = [names[i] for i, m in enumerate(mirror) if m == -1]
    assert unflippable == [
        "Plugging something into something but pulling it right out as you remove your hand"
    ]
