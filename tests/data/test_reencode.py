"""Re-encoding videos for fast random access: same frames in the same order and at the same
times, key frames every ``gop`` frames, resumable, failures reported per file."""

from __future__ import annotations

import av
import numpy as np
import pytest

from tcm.data.bad_video import BadVideoError
from tcm.data.reencode import reencode_all, reencode_video, reencoded_size
from tcm.data.video_reader import VideoReader
from video_files import frame_indices_of


def _key_frames(path) -> list[int]:
    """Positions (in presentation order) of the key frames of ``path``."""
    with av.open(str(path)) as container:
        packets = [p for p in container.demux(video=0) if p.size]
    order = sorted(p.pts for p in packets)
    return sorted(order.index(p.pts) for p in packets if p.is_keyframe)


def _seconds(reader: VideoReader) -> list:
    stamps = reader.timestamps
    return [(stamp - stamps[0]) * reader.time_base for stamp in stamps]


@pytest.mark.parametrize(
    ("name", "codec"),
    [("h264", "libx264"), ("vfr", "libx264"), ("mjpeg", "libx264"), ("gray", "mpeg4")],
)
def test_same_frames_in_the_same_order_at_the_same_times(synthetic_videos, tmp_path, name, codec):
    source, target = synthetic_videos[name], tmp_path / f"{name}.mp4"
    count = reencode_video(source, target, gop=4, codec=codec)
    with VideoReader(source) as original, VideoReader(target) as copy:
        assert count == copy.num_frames == original.num_frames
        assert copy.size == original.size  # already below the short side: not resized
        frames = range(copy.num_frames)
        expected, got = original.get_frames(frames), copy.get_frames(frames)
        assert frame_indices_of(got) == frame_indices_of(expected)
        assert np.abs(got.astype(int) - expected).mean() < 2
        if original.timestamps is not None:
            assert _seconds(copy) == _seconds(original)
        if name != "vfr":  # the rate of a variable-rate file depends on its last frame's length
            assert copy.frame_rate == original.frame_rate
    keys = _key_frames(target)
    assert keys[0] == 0 and max(np.diff([*keys, count])) <= 4  # MPEG-4 may add key frames
    assert not list(tmp_path.glob("*.partial"))


def test_shrinks_to_the_short_side_never_enlarges(synthetic_videos, tmp_path):
    assert reencoded_size(720, 1280, 256) == (256, 456)
    assert reencoded_size(1280, 720, 320) == (568, 320)
    assert reencoded_size(241, 321, 256) == (240, 320)  # even sides for 4:2:0
    reencode_video(synthetic_videos["h264"], tmp_path / "small.mp4", short_side=32)
    with VideoReader(tmp_path / "small.mp4") as copy:
        assert copy.size == (32, 42)
        assert frame_indices_of(copy.get_frames([0, 23])) == [0, 23]


def test_unreadable_source_leaves_no_file(tmp_path):
    (tmp_path / "notes.mp4").write_text("not a video\n" * 20)
    with pytest.raises(BadVideoError, match=r"notes\.mp4: not a video"):
        reencode_video(tmp_path / "notes.mp4", tmp_path / "out" / "notes.mp4")
    assert not list((tmp_path / "out").iterdir())


def test_reencode_all_reports_failures_per_file_and_resumes(synthetic_videos, tmp_path):
    root, out = tmp_path / "videos", tmp_path / "fast"
    (root / "a").mkdir(parents=True)
    (root / "a" / "one.mp4").write_bytes(synthetic_videos["h264"].read_bytes())
    (root / "a" / "two.avi").write_bytes(synthetic_videos["mjpeg"].read_bytes())
    (root / "a" / "two.mkv").write_bytes(synthetic_videos["h264"].read_bytes())  # same output
    (root / "a" / "bad.mp4").write_text("not a video\n" * 20)
    (out / "a").mkdir(parents=True)
    (out / "a" / "one.mp4.partial").write_bytes(b"left by a killed run")
    videos = ["a/one.mp4", "a/bad.mp4", "a/two.avi", "a/missing.mp4", "a/two.mkv"]

    results = reencode_all(videos, root, out, workers=2, progress=False, gop=8)
    assert [r.output for r in results] == [
        "a/one.mp4",
        "a/bad.mp4",
        "a/two.mp4",
        "a/missing.mp4",
        "a/two.mp4",
    ]
    assert [r.num_frames for r in results] == [24, 0, 24, 0, 0]
    errors = [r.error for r in results]
    assert not errors[0] and not errors[2]
    assert "bad.mp4: not a video" in errors[1]
    assert "missing.mp4: missing" in errors[3]
    assert "two.mkv: same output a/two.mp4 as a/two.avi" in errors[4]
    assert sorted(p.name for p in (out / "a").iterdir()) == ["one.mp4", "two.mp4"]
    with VideoReader(out / "a" / "two.mp4") as copy:
        assert frame_indices_of(copy.get_frames([0, 9, 23])) == [0, 9, 23]

    done = (out / "a" / "one.mp4").stat().st_mtime_ns
    again = reencode_all(videos[:1], root, out, workers=1, progress=False)
    assert again[0].num_frames == 0 and not again[0].error  # already there: skipped
    assert (out / "a" / "one.mp4").stat().st_mtime_ns == done


def test_real_clip_keeps_its_280_frames_and_samples_fast(shared_data, tmp_path):
    from tcm.data.sampling import SegmentSampler

    source, target = shared_data / "videos" / "kinetics_arm_wrestling.mp4", tmp_path / "k.mp4"
    assert reencode_video(source, target) == 280
    assert _key_frames(target) == list(range(0, 280, 8))
    indices = SegmentSampler(8)(280, train=True, rng=np.random.default_rng(0))[0]
    with VideoReader(source) as original, VideoReader(target) as copy:
        assert copy.size == (256, 340) and copy.frame_rate == original.frame_rate == 28
        assert _seconds(copy) == _seconds(original)
        expected = original.get_frames(indices).astype(np.float64)
        got = copy.get_frames(indices).astype(np.float64)
        assert copy.frames_decoded <= 8 * 8 < original.frames_decoded
    psnr = 10 * np.log10(255**2 / np.mean((got - expected) ** 2))
    assert psnr > 33, f"re-encoded frames differ from the originals: PSNR {psnr:.1f} dB"
