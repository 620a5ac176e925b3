"""Decoding a clip's key-frame stretches in parallel threads (``VideoReader(threads=N)``): the
same frames, bit for bit, and the same work as one decoder, errors as clear, fork-safe."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

import tcm.data.video_reader as video_reader
from tcm.data.bad_video import TRUNCATED, BadVideoError
from tcm.data.frame_folder import FrameFolderReader
from tcm.data.sampling import SegmentSampler
from tcm.data.video_reader import VideoReader
from video_files import write_textured_video


def _selections(num_frames: int, seed: int, count: int) -> list[list[int]]:
    """Training samples of 8 segments, then unsorted lists with repeats."""
    rng = np.random.default_rng(seed)
    sampler = SegmentSampler(8)
    chosen = [sampler(num_frames, train=True, rng=rng)[0].tolist() for _ in range(count)]
    chosen += [rng.integers(0, num_frames, size).tolist() for size in (3, 8, 12) * 2]
    return [*chosen, [num_frames - 1, 0, num_frames - 1, 0], [5, 5, 5]]


def _assert_same_as_one_decoder(path: Path, selections: list[list[int]]) -> None:
    """Readers of 2 and 3 decoders give the frames and the decoded-frame count of one; the
    extra decoders did some of the work."""
    readers = {threads: VideoReader(path, threads=threads) for threads in (1, 2, 3)}
    try:
        for indices in selections:
            expected = readers[1].get_frames(indices)
            for threads in (2, 3):
                got = readers[threads].get_frames(indices)
                assert got.dtype == expected.dtype and got.shape == expected.shape
                assert np.array_equal(got, expected), f"{threads} threads, frames {indices}"
        counts = {threads: reader.frames_decoded for threads, reader in readers.items()}
        assert counts[2] == counts[1] == counts[3]
        assert readers[3]._decoders[2].decoded > 0  # the third decoder had work
    finally:
        for reader in readers.values():
            reader.close()


def test_real_mp4_same_frames_with_parallel_decoders(shared_data):
    path = shared_data / "videos" / "kinetics_arm_wrestling.mp4"
    _assert_same_as_one_decoder(path, _selections(280, seed=7, count=16))


@pytest.fixture(scope="module")
def short_gop_video(tmp_path_factory) -> Path:
    """60 frames, a key frame every 6, B-frames (reference and not): many short runs."""
    return write_textured_video(tmp_path_factory.mktemp("gop6") / "gop6.mp4", gop=6)


@pytest.fixture(scope="module")
def gop12_video(tmp_path_factory) -> Path:
    """60 frames, key frames at 0, 12, 24, 36, 48, B-frames."""
    return write_textured_video(tmp_path_factory.mktemp("gop12") / "gop12.mp4", gop=12)


def test_short_gops_and_b_frames_same_frames_with_parallel_decoders(short_gop_video):
    with av.open(str(short_gop_video)) as container:
        reference = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    selections = _selections(len(reference), seed=3, count=12)
    with VideoReader(short_gop_video, threads=3) as reader:
        for indices in selections:
            got = reader.get_frames(indices)
            for row, index in zip(got, indices):
                np.testing.assert_array_equal(row, reference[index], err_msg=f"frame {index}")
    _assert_same_as_one_decoder(short_gop_video, selections)


def test_parallel_decoders_count_the_sequential_plans_frames(gop12_video):
    indices = [2, 10, 30, 40, 50]
    with VideoReader(gop12_video) as reader:
        runs = reader._plan(indices)
        assert [run[0] for run in runs] == [0, 24, 36, 48]  # key frames where a run starts
        reader.get_frames(indices)
        sequential = reader.frames_decoded
    with VideoReader(gop12_video, threads=2) as reader:
        reader.get_frames(indices)
        per_decoder = [decoder.decoded for decoder in reader._decoders]
        single = [decoder.stream.codec_context.thread_count for decoder in reader._decoders]
    assert len(per_decoder) == 2 and min(per_decoder) > 0
    assert sum(per_decoder) == sequential
    assert single == [1, 1]  # no frame threads: each decoder is one thread


def test_one_run_or_one_thread_decodes_in_the_calling_thread(gop12_video, monkeypatch):
    def no_pool(threads):
        raise AssertionError("the thread pool was used")

    monkeypatch.setattr(video_reader, "thread_pool", no_pool)
    with VideoReader(gop12_video, threads=4) as reader:
        reader.get_frames([1, 5, 11])  # one run from the key frame at 0
        assert len(reader._decoders) == 1
        reader.get_frames([1, 50])  # runs of 2 and 3 frames: less than opening the file again
        assert all(decoder is None for decoder in reader._decoders[1:])
    with VideoReader(gop12_video, threads=1) as reader:
        reader.get_frames([1, 30, 50])


def test_threads_zero_means_one_decoder_per_core(gop12_video):
    with VideoReader(gop12_video, threads=0) as reader:
        assert reader.threads == (os.cpu_count() or 1)
    with pytest.raises(ValueError, match="threads"):
        VideoReader(gop12_video, threads=-1)


def test_avi_with_threads_reads_sequentially(tmp_path):
    from video_files import frame_indices_of, write_video

    path = write_video(tmp_path / "clip.avi", codec="mjpeg", pix_fmt="yuvj420p")
    with VideoReader(path, threads=2) as reader:
        assert frame_indices_of(reader.get_frames([20, 3, 11])) == [20, 3, 11]
        assert len(reader._decoders) == 1


def _corrupt_from(path: Path, first_frame: int, target: Path) -> Path:
    """A copy of ``path`` whose packets of frames ``first_frame`` on hold random bytes."""
    data = bytearray(path.read_bytes())
    with av.open(str(path)) as container:
        packets = [(p.pts, p.pos, p.size) for p in container.demux(video=0) if p.size]
    start = sorted(pts for pts, _, _ in packets)[first_frame]
    rng = np.random.default_rng(0)
    for pts, pos, size in packets:
        if pts >= start:
            data[pos : pos + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    target.write_bytes(bytes(data))
    return target


def test_corrupt_frames_raise_bad_video_error_from_a_decoder_thread(gop12_video, tmp_path):
    path = _corrupt_from(gop12_video, 49, tmp_path / "corrupt.mp4")  # after the key frame 48
    indices = [10, 40, 50]  # runs from 0, 36, 48: the two short ones go to the second decoder
    errors = []
    for threads in (1, 2):
        with VideoReader(path, threads=threads) as reader:
            assert [run[0] for run in reader._plan(indices)] == [0, 36, 48]
            with pytest.raises(BadVideoError) as caught:
                reader.get_frames(indices)
            errors.append(caught.value)
            good = reader.get_frames([10, 40])  # still usable
            assert reader._decoders[-1].decoded > 0
        if threads == 1:
            expected = good
    assert np.array_equal(good, expected)
    assert errors[1].reason == errors[0].reason == TRUNCATED
    assert str(errors[1]) == str(errors[0]) and str(path) in str(errors[1])


def test_a_file_gone_before_the_extra_decoder_opens_it(gop12_video, tmp_path):
    path = tmp_path / "clip.mp4"
    path.write_bytes(gop12_video.read_bytes())
    with VideoReader(path, threads=2) as reader:
        path.unlink()
        with pytest.raises(BadVideoError) as caught:
            reader.get_frames([10, 50])
    assert caught.value.reason == TRUNCATED and str(path) in str(caught.value)


def test_timestamp_mismatch_in_a_decoder_thread_falls_back_to_counting(gop12_video, monkeypatch):
    with VideoReader(gop12_video) as reader:
        expected = reader.get_frames([50, 10, 30])
    frames = VideoReader._frames

    def mismatching(self, decoder, start, wanted):
        if threading.current_thread() is not threading.main_thread():
            raise video_reader._TimestampMismatch
        return frames(self, decoder, start, wanted)

    monkeypatch.setattr(VideoReader, "_frames", mismatching)
    with VideoReader(gop12_video, threads=2) as reader:
        assert np.array_equal(reader.get_frames([50, 10, 30]), expected)
        assert reader.timestamps is None  # now reading sequentially


def _status_of_child(pid: int, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    raise AssertionError("the forked child hung")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_reader_and_thread_pool_usable_after_fork(gop12_video):
    indices = [[10, 40, 50], [3, 27, 59]]
    with VideoReader(gop12_video) as reader:
        expected = [reader.get_frames(chosen) for chosen in indices]
    reader = VideoReader(gop12_video, threads=2)
    assert np.array_equal(reader.get_frames(indices[0]), expected[0])  # pool and decoder made
    pid = os.fork()
    if pid == 0:  # the child: the inherited pool has no threads, a new one must be made
        code = 1
        try:
            ok = np.array_equal(reader.get_frames(indices[1]), expected[1])
            with VideoReader(gop12_video, threads=2) as fresh:
                ok = ok and np.array_equal(fresh.get_frames(indices[0]), expected[0])
            code = 0 if ok else 2
        finally:
            os._exit(code)
    try:
        assert _status_of_child(pid) == 0
        assert np.array_equal(reader.get_frames(indices[1]), expected[1])
    finally:
        reader.close()


def _open_files_of(path: Path) -> int:
    """Descriptors of this process open on ``path``."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor is gone
            count += os.readlink(f"/proc/self/fd/{fd}") == str(path)
    return count


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
def test_close_closes_the_extra_decoders(gop12_video):
    path = gop12_video.resolve()
    reader = VideoReader(path, threads=3)
    reader.get_frames([10, 30, 50])
    assert _open_files_of(path) == 3
    reader.close()
    assert _open_files_of(path) == 0


# -- frame folders ---------------------------------------------------------------------------


@pytest.fixture
def frame_folder(tmp_path):
    rng = np.random.default_rng(3)
    for number in range(1, 13):
        image = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
        Image.fromarray(image).save(tmp_path / f"img_{number:05d}.jpg", quality=90)
    return tmp_path


def test_frame_folder_same_frames_with_parallel_threads(frame_folder):
    readers = {t: FrameFolderReader(frame_folder, threads=t) for t in (1, 2, 3, 0)}
    assert readers[0].threads == os.cpu_count()
    for indices in _selections(12, 4, 4):
        expected = readers[1].get_frames(indices)
        for threads in (2, 3, 0):
            np.testing.assert_array_equal(readers[threads].get_frames(indices), expected)


def test_frame_folder_missing_frame_in_a_thread_names_the_file(frame_folder):
    (frame_folder / "img_00011.jpg").unlink()
    reader = FrameFolderReader(frame_folder, num_frames=12, threads=2)
    with pytest.raises(BadVideoError, match=r"img_00011\.jpg absent") as caught:
        reader.get_frames([0, 2, 4, 10])  # frame 10 falls to the second thread
    assert caught.value.path == str(frame_folder)
