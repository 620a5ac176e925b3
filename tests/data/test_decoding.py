"""Decoding real and synthetic videos and frame folders; bad input raises clear errors."""

from __future__ import annotations

import shutil
from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image

from tcm.data.bad_video import BadVideoError
from tcm.data.frame_folder import FrameFolderReader
from tcm.data.media import open_media
from tcm.data.video_reader import VideoReader
from video_files import frame_indices_of, write_textured_video, write_video


def _decode_all(path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


# -- real files ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "frames", "size"),
    [("kinetics_arm_wrestling.mp4", 280, (256, 340)), ("xvid_320x240.avi", 164, (240, 320))],
)
def test_real_video_matches_full_decode(shared_data, name, frames, size):
    path = shared_data / "videos" / name
    reference = _decode_all(path)
    with VideoReader(path) as reader:
        assert reader.num_frames == len(reference) == frames
        assert reader.size == size
        indices = [17, 3, 100, 150, frames - 1, 3]
        got = reader.get_frames(indices)
    assert got.shape == (len(indices), *size, 3) and got.dtype == np.uint8
    for row, index in zip(got, indices):
        np.testing.assert_array_equal(row, reference[index])


@pytest.mark.parametrize("threads", [1, 2])
def test_real_mp4_random_segment_samples_match_full_decode(shared_data, threads):
    from tcm.data.sampling import SegmentSampler

    path = shared_data / "videos" / "kinetics_arm_wrestling.mp4"
    reference = _decode_all(path)
    rng = np.random.default_rng(threads)
    for _ in range(8):
        indices = SegmentSampler(8)(len(reference), train=True, rng=rng)[0]
        with VideoReader(path, threads=threads) as reader:
            got = reader.get_frames(indices)
        for row, index in zip(got, indices):
            np.testing.assert_array_equal(row, reference[index])


def test_real_mp4_seeks_instead_of_decoding_everything(shared_data):
    path = shared_data / "videos" / "kinetics_arm_wrestling.mp4"
    reference = _decode_all(path)
    with VideoReader(path) as reader:
        got = reader.get_frames([200, 270])
        decoded = reader.frames_decoded
    np.testing.assert_array_equal(got[0], reference[200])
    np.testing.assert_array_equal(got[1], reference[270])
    assert decoded < 60, f"decoded {decoded} frames for 2, expected seeking to key frames"


def test_real_mp4_stops_after_last_needed_frame(shared_data):
    with VideoReader(shared_data / "videos" / "kinetics_arm_wrestling.mp4") as reader:
        reader.get_frames([0, 10, 20])
        assert reader.frames_decoded < 40


def test_real_frame_folder(shared_data):
    folder = shared_data / "frames" / "clip_320x240"
    reader = FrameFolderReader(folder, template="img_{:05d}.jpg", start_index=1)
    assert reader.num_frames == 10
    got = reader.get_frames([0, 9, 4])
    assert got.shape == (3, 240, 320, 3)
    expected = np.asarray(Image.open(folder / "img_00010.jpg").convert("RGB"))
    np.testing.assert_array_equal(got[1], expected)


def test_frame_folder_zero_based_and_printf_template(shared_data, tmp_path):
    source = shared_data / "frames" / "clip_320x240"
    for i in range(1, 11):
        shutil.copy(source / f"img_{i:05d}.jpg", tmp_path / f"frame{i - 1:04d}.jpg")
    reader = FrameFolderReader(tmp_path, num_frames=10, template="frame%04d.jpg", start_index=0)
    np.testing.assert_array_equal(
        reader.get_frames([9])[0], np.asarray(Image.open(source / "img_00010.jpg").convert("RGB"))
    )


def test_frame_folder_repeats_grey_frames_and_rejects_mixed_sizes(tmp_path):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (12, 16), dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "img_00001.png")
    colour = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    Image.fromarray(colour).save(tmp_path / "img_00002.png")
    reader = FrameFolderReader(tmp_path, num_frames=2, template="img_{:05d}.png")
    got = reader.get_frames([1, 0, 1, 0])
    assert got.shape == (4, 12, 16, 3) and got.flags.writeable
    np.testing.assert_array_equal(got[0], colour)
    np.testing.assert_array_equal(got[2], colour)
    np.testing.assert_array_equal(got[1], np.repeat(grey[..., None], 3, axis=2))
    np.testing.assert_array_equal(got[3], got[1])
    Image.fromarray(colour[:8]).save(tmp_path / "img_00002.png")
    with pytest.raises(BadVideoError, match="different sizes"):
        reader.get_frames([0, 1])


# -- synthetic files -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["h264", "vp9", "mjpeg", "faststart"])
def test_synthetic_codecs(synthetic_videos, name):
    with VideoReader(synthetic_videos[name]) as reader:
        assert reader.num_frames == 24
        indices = [23, 0, 5, 12, 12, 18]
        assert frame_indices_of(reader.get_frames(indices)) == indices


@pytest.fixture(scope="module")
def b_frame_video(tmp_path_factory):
    """60 frames of moving texture, key frames at 0, 24, 48, reference and non-reference
    B-frames: the decoded frames and the full decode to compare them with."""
    path = write_textured_video(tmp_path_factory.mktemp("bframes") / "bframes.mp4")
    return path, _decode_all(path)


@pytest.mark.parametrize("threads", [1, 2])
def test_frames_with_b_frames_match_full_decode(b_frame_video, threads):
    path, reference = b_frame_video
    rng = np.random.default_rng(threads)
    selections = [[i] for i in range(len(reference))]
    selections += [rng.choice(len(reference), size, replace=False) for size in (2, 3, 5, 8) * 6]
    for indices in selections:
        with VideoReader(path, threads=threads) as reader:
            got = reader.get_frames(indices)
        for row, index in zip(got, indices):
            np.testing.assert_array_equal(row, reference[index], err_msg=f"frame {index}")


def test_b_frames_nobody_needs_are_not_decoded(b_frame_video):
    path, reference = b_frame_video
    with VideoReader(path) as reader:
        np.testing.assert_array_equal(reader.get_frames([22])[0], reference[22])
        assert reader.frames_decoded < 22  # non-reference B-frames before 22 were dropped


def test_h264_seek_with_short_gop(synthetic_videos):
    with VideoReader(synthetic_videos["h264"]) as reader:
        assert frame_indices_of(reader.get_frames([20, 21])) == [20, 21]
        assert reader.frames_decoded <= 8  # from the key frame at 18, not from 0


def test_variable_frame_rate(synthetic_videos):
    with VideoReader(synthetic_videos["vfr"]) as reader:
        assert reader.num_frames == 12
        assert frame_indices_of(reader.get_frames(range(12))) == list(range(12))


def test_grayscale_video_gives_rgb(synthetic_videos):
    with VideoReader(synthetic_videos["gray"]) as reader:
        frames = reader.get_frames([0, 10, 20])
    assert frames.shape == (3, 48, 64, 3)
    assert (frames[..., 0] == frames[..., 1]).all() and (frames[..., 1] == frames[..., 2]).all()
    levels = frames[:, :, 32:].mean(axis=(1, 2, 3))
    assert levels[0] < levels[1] < levels[2]


def test_frame_beyond_end_is_reported(synthetic_videos):
    with (
        VideoReader(synthetic_videos["short"]) as reader,
        pytest.raises(BadVideoError, match="fewer frames"),
    ):
        reader.get_frames([0, 5])


def test_list_claiming_more_frames_than_the_video(synthetic_videos):
    with pytest.raises(BadVideoError, match="fewer frames than claimed"):
        open_media(synthetic_videos["short"], num_frames=10)


# -- bad input -------------------------------------------------------------------------------


def _reason(path, **kwargs) -> BadVideoError:
    with pytest.raises(BadVideoError) as info, open_media(path, **kwargs) as reader:
        reader.get_frames(range(reader.num_frames))
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)
    return info.value


def test_missing_file(tmp_path):
    assert _reason(tmp_path / "nope.mp4").reason == "missing"


def test_zero_byte_file(tmp_path):
    (tmp_path / "empty.mp4").touch()
    assert _reason(tmp_path / "empty.mp4").reason == "empty"


def test_text_file_named_mp4(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 20)
    assert _reason(path).reason == "not a video"


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", ["h264", "faststart", "mjpeg", "vp9"])
def test_truncated_file(synthetic_videos, tmp_path, name, threads):
    data = synthetic_videos[name].read_bytes()
    path = tmp_path / synthetic_videos[name].name
    path.write_bytes(data[: len(data) // 2])
    # detected without a frame count from a list
    assert _reason(path, threads=threads).reason == "truncated"


def test_no_video_stream(tmp_path):
    path = tmp_path / "sound.wav"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 800), dtype=np.int16), format="s16", layout="mono"
        )
        frame.sample_rate, frame.pts, frame.time_base = 8000, 0, Fraction(1, 8000)
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    assert _reason(path).reason == "no video stream"


def test_frame_folder_with_missing_frame(shared_data, tmp_path):
    for i in (1, 2, 4, 5):
        shutil.copy(shared_data / "frames" / "clip_320x240" / f"img_{i:05d}.jpg", tmp_path)
    error = _reason(tmp_path, num_frames=5)
    assert error.reason == "missing frame" and "img_00003.jpg" in str(error)


def test_frame_folder_with_fewer_frames_than_claimed(shared_data):
    error = _reason(shared_data / "frames" / "clip_320x240", num_frames=12)
    assert error.reason == "fewer frames than claimed" and "10 on disk" in str(error)


def test_frame_folder_with_corrupt_frame(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "img_00001.jpg")
    (tmp_path / "img_00002.jpg").write_bytes(b"garbage")
    assert _reason(tmp_path, num_frames=2).reason == "unreadable frame"


def test_video_written_by_fixture_helper_roundtrip(tmp_path):
    path = write_video(tmp_path / "tiny.mp4", num_frames=5)
    with VideoReader(path) as reader:
        assert frame_indices_of(reader.get_frames([4, 0])) == [4, 0]
