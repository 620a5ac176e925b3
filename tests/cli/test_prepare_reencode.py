"""``tcm prepare --reencode`` as users run it into trouble: a full or read-only disk, a folder
made with other settings or holding damaged files, two runs at once, a folder inside the data
root, and a source whose first frame is not at time 0."""

from __future__ import annotations

import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_bad_inputs import digest, refused

from tcm.cli.main import main
from tcm.data.annotations import read_list
from tcm.data.reencode import SETTINGS_FILE
from tcm.data.video_reader import VideoReader
from video_files import write_class_clip

CLASS = "arm wrestling"


def kinetics_layout(tmp_path: Path, sources: list[Path], top: str = "train") -> dict[str, Path]:
    """A Kinetics-400 annotation folder and data root holding ``sources`` as the training
    clips ``v000``, ``v001``, ... of one class, under ``root/top/<class>/``."""
    annotations, root = tmp_path / "annotations", tmp_path / "k400"
    annotations.mkdir()
    rows = []
    for i, source in enumerate(sources):
        target = root / top / CLASS / f"v{i:03d}_000000_000010.mp4"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        rows.append(f"{CLASS},v{i:03d},0,10,train\n")
    header = "label,youtube_id,time_start,time_end,split\n"
    (annotations / "train.csv").write_text(header + "".join(rows))
    (annotations / "validate.csv").write_text(header)
    return {"annotations": annotations, "root": root}


def prepare_args(layout: dict[str, Path], out: Path, *extra) -> list[str]:
    argv = ["prepare", "kinetics400", "--annotations", layout["annotations"], "--root"]
    return [str(a) for a in [*argv, layout["root"], "--out", out, "--no-progress", *extra]]


@pytest.fixture(scope="module")
def small_clips(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("clips")
    paths = [folder / f"clip{i}.mp4" for i in range(4)]
    for i, path in enumerate(paths):
        write_class_clip(path, i % 3, seed=i)
    return paths


def copy_name(i: int) -> str:
    return f"train/{CLASS}/v{i:03d}_000000_000010.mp4"


def test_a_full_disk_stops_at_the_first_error_and_keeps_what_finished(
    small_clips, shared_dir, tmp_path
):
    # Two small clips, then a Kinetics clip whose copy (about 1 MB) exceeds the largest file the
    # system lets the command write (RLIMIT_FSIZE: the write fails with EFBIG), then one more.
    big = shared_dir / "data" / "videos" / "kinetics_arm_wrestling.mp4"
    layout = kinetics_layout(tmp_path, [*small_clips[:2], big, small_clips[2]])
    fast, lists = tmp_path / "fast", tmp_path / "lists"
    argv = prepare_args(layout, lists, "--reencode", fast, "--workers", "1")

    def small_files_only():
        resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))

    command = [sys.executable, "-m", "tcm.cli.main", *argv]
    stopped = subprocess.run(
        command, capture_output=True, text=True, preexec_fn=small_files_only, check=False
    )
    assert stopped.returncode == 2, stopped.stderr
    (line,) = [line for line in stopped.stderr.splitlines() if "error" in line]
    assert line.startswith("tcm prepare: error: ") and "File too large" in line
    assert "v002_000000_000010.mp4" in line and "re-encoding stopped" in line
    assert "Traceback" not in stopped.stderr
    made = sorted(str(p.relative_to(fast)) for p in fast.rglob("*.mp4*"))
    assert made == [copy_name(0), copy_name(1)]  # no half-written file, nothing after the error
    assert not (lists / "train.txt").exists()  # no list naming only some of the videos
    kept = {name: (fast / name).stat().st_mtime_ns for name in made}
    assert main(argv) == 0  # with room again: the run continues
    assert {name: (fast / name).stat().st_mtime_ns for name in made} == kept
    assert [r.path for r in read_list(lists / "train.txt")] == [copy_name(i) for i in range(4)]


def test_a_read_only_folder_is_refused_before_any_work(
    small_clips, read_only_dir, tmp_path, capsys
):
    layout = kinetics_layout(tmp_path, small_clips[:1])
    argv = prepare_args(layout, tmp_path / "lists", "--reencode", read_only_dir / "fast")
    refused(capsys, argv, "read_only", "not writable", "--reencode folder")
    assert not (tmp_path / "lists").exists()


def test_other_settings_are_refused_and_damaged_files_made_again(small_clips, tmp_path, capsys):
    layout = kinetics_layout(tmp_path, small_clips)
    fast, lists = tmp_path / "fast", tmp_path / "lists"
    argv = prepare_args(layout, lists, "--reencode", fast, "--workers", "2")
    assert main(argv) == 0
    before = digest(fast)
    for option in (["--gop", "4"], ["--crf", "30"], ["--short-side", "32"]):
        refused(capsys, [*argv, *option], str(fast), "gop 8, crf 20, short side 256", SETTINGS_FILE)
    assert digest(fast) == before
    truncated, text = fast / copy_name(1), fast / copy_name(2)
    truncated.write_bytes(truncated.read_bytes()[:1500])
    text.write_text("not a video\n")
    untouched = (fast / copy_name(0)).stat().st_mtime_ns
    capsys.readouterr()
    assert main(argv) == 0
    for name in (copy_name(1), copy_name(2)):
        with VideoReader(fast / name) as copy:
            assert copy.num_frames == 12 and copy.get_frames([11]).shape == (1, 40, 48, 3)
    assert (fast / copy_name(0)).stat().st_mtime_ns == untouched
    # Files of the videos without a record of their settings are not trusted either.
    (fast / SETTINGS_FILE).unlink()
    refused(capsys, argv, str(fast), "no record of the settings")
    for option, needle in [("--crf", "--crf must lie in [0, 51]"), ("--short-side", "at least 32")]:
        refused(capsys, [*argv, option, "99" if option == "--crf" else "1"], needle)


HOLD = """
import sys
from tcm.data.reencode import ReencodeFolder, ReencodeSettings
with ReencodeFolder(sys.argv[1], ReencodeSettings()):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_a_second_run_into_the_same_folder_is_refused(small_clips, tmp_path, capsys):
    layout = kinetics_layout(tmp_path, small_clips[:1])
    fast = tmp_path / "fast"
    argv = prepare_args(layout, tmp_path / "lists", "--reencode", fast)
    other = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(fast)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert other.stdout.readline() == b"held\n"
        refused(capsys, argv, str(fast), "in use by another re-encoding", f"pid {other.pid}")
    finally:
        other.communicate(b"")
    assert main(argv) == 0
    assert not list(fast.glob(".tcm-reencode.lock"))


def test_copies_inside_the_data_root_never_replace_the_originals(small_clips, tmp_path, capsys):
    # Originals directly under the root in class folders; the copies in root/train, where a
    # Kinetics layout would look first.
    layout = kinetics_layout(tmp_path, small_clips[:2], top="")
    root, lists = layout["root"], tmp_path / "lists"
    copies = root / "train"
    assert main(prepare_args(layout, lists, "--reencode", copies)) == 0
    assert (copies / copy_name(0).removeprefix("train/")).is_file()
    assert main(prepare_args(layout, tmp_path / "again")) == 0
    originals = [f"{CLASS}/v{i:03d}_000000_000010.mp4" for i in range(2)]
    assert [r.path for r in read_list(tmp_path / "again" / "train.txt")] == originals
    # Nor may the copies go into a folder that holds originals.
    refused(capsys, prepare_args(layout, lists, "--reencode", root / CLASS), "lies in")


def test_timestamps_of_a_source_that_starts_late_are_kept(shared_dir, tmp_path):
    # The first frame of this XviD AVI is shown at 0.04 s (its packets say so; its decoder does
    # not report them in order).
    source = shared_dir / "data" / "videos" / "xvid_320x240.avi"
    layout = kinetics_layout(tmp_path, [source])
    fast = tmp_path / "fast"
    assert main(prepare_args(layout, tmp_path / "lists", "--reencode", fast, "--gop", "4")) == 0
    with VideoReader(source) as original, VideoReader(fast / copy_name(0)) as copy:
        shown = [stamp * original.time_base for stamp in original.presentation_timestamps]
        assert shown[0] > 0 and copy.num_frames == original.num_frames == len(shown)
        assert [stamp * copy.time_base for stamp in copy.timestamps] == shown
