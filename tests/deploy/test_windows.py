"""Sliding windows: lengths, the plan, the streaming decoder, the frame buffer, segments."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from deploy_media import tiny_checkpoint

from tcm.data.bad_video import BadVideoError
from tcm.data.video_stream import DecodedFrame, Gap, VideoStream
from tcm.deploy import Predictor, Preprocessing, read_clip
from tcm.deploy.timeline import LongVideoPredictor, _Thumbnails
from tcm.deploy.timeline_records import WindowPrediction, merge_segments
from tcm.deploy.window_plan import Span, WindowPlan, count_windows
from tcm.deploy.windows import FramePreparer, WindowAssembler, WindowClip
from video_files import corrupt_packets, write_moving_square

PREP = Preprocessing(num_segments=4, resize=[36, 48], input_size=32)


def test_span_parses_seconds_and_frames():
    assert Span.parse("2.0") == Span(2.0, "s") == Span.parse("2s") == Span.parse(" 2 ")
    assert Span.parse(".5") == Span(0.5, "s")
    assert Span.parse("64f") == Span(64.0, "f")
    assert Span.parse("64f").to_frames(fps=30.0) == 64
    assert Span.parse("2.5").to_frames(fps=30.0) == 75
    assert Span.parse("0.01").to_frames(fps=25.0) == 1  # never less than a frame
    assert Span.parse("2").scaled(0.25) == Span(0.5, "s")
    assert Span.parse("10f").scaled(0.25) == Span(2.0, "f")  # whole frames
    for bad in ("", "two", "-1", "0", "2.5f", "3x", "1e3"):
        with pytest.raises(ValueError, match=r"length of video|positive|whole"):
            Span.parse(bad)


def test_plan_samples_each_window_like_a_test_clip():
    plan = WindowPlan.build(Span.parse("2.0"), Span.parse("0.5"), fps=25.0, prep=Preprocessing(8))
    assert (plan.window, plan.stride) == (50, 12)
    assert plan.offsets.tolist() == [[3, 9, 15, 21, 28, 34, 40, 46]]
    assert plan.indices(2).tolist() == [[27, 33, 39, 45, 52, 58, 64, 70]]
    assert count_windows(plan, 49) == 0
    assert count_windows(plan, 50) == 1
    assert count_windows(plan, 86) == 4  # starts 0, 12, 24, 36


@pytest.mark.parametrize(
    ("window", "stride", "segments", "clips"), [(50, 12, 8, 1), (12, 5, 4, 2), (7, 9, 4, 1)]
)
def test_plan_knows_which_frames_windows_need(window, stride, segments, clips):
    prep = Preprocessing(segments, num_clips=clips)
    plan = WindowPlan.build(Span(window, "f"), Span(stride, "f"), fps=10.0, prep=prep)
    sampled = {int(i) for k in range(40) for i in plan.indices(k).reshape(-1)}
    assert [plan.needed(i) for i in range(30 * stride)] == [
        i in sampled for i in range(30 * stride)
    ]


def test_a_video_shorter_than_a_window_is_one_window():
    plan = WindowPlan.build(
        Span.parse("4.0"), Span.parse("1.0"), fps=12.0, prep=PREP, num_frames=30
    )
    assert plan.window == 30
    assert plan.offsets.tolist() == [[3, 11, 18, 26]]


def test_a_window_of_the_whole_video_is_the_test_clip(tmp_path):
    """Decoding, sampling, resizing and cropping as `read_clip` does, to the pixel."""
    path = write_moving_square(tmp_path / "clip.mp4", num_frames=20)
    plan = WindowPlan.build(Span(20, "f"), Span(5, "f"), fps=12.0, prep=PREP)
    assembler = WindowAssembler(plan, FramePreparer(PREP))
    with VideoStream(path) as stream:
        assert (stream.fps, stream.num_frames) == (12.0, 20)
        done = [window for item in stream for window in assembler.push(item)]
    assert len(done) == 1 and isinstance(done[0], WindowClip)
    assert torch.equal(done[0].clip, read_clip(path, PREP))


def test_three_crops_and_two_clips_keep_the_view_order(tmp_path):
    path = write_moving_square(tmp_path / "clip.mp4", num_frames=16)
    prep = Preprocessing(num_segments=4, resize=48, input_size=32, num_clips=2, num_crops=3)
    plan = WindowPlan.build(Span(16, "f"), Span(4, "f"), fps=12.0, prep=prep)
    assembler = WindowAssembler(plan, FramePreparer(prep))
    with VideoStream(path) as stream:
        (window,) = [w for item in stream for w in assembler.push(item)]
    assert window.clip.shape == (2 * 3 * 4, 3, 32, 32)
    assert torch.equal(window.clip, read_clip(path, prep))


def test_the_buffer_holds_only_what_pending_windows_sample():
    """Frames are fed one by one: at most the frames of one window are held, whatever the
    length, and windows come out as soon as their last frame is in."""
    plan = WindowPlan.build(Span(24, "f"), Span(6, "f"), fps=12.0, prep=PREP)
    calls = []

    def prepare(frame):
        calls.append(frame)
        return torch.full((1, 3, 2, 2), frame, dtype=torch.int32)  # the frame's index

    assembler = WindowAssembler(plan, prepare)
    completed = []
    for index in range(600):
        for window in assembler.push(DecodedFrame(index, index)):
            assert window.stop - 1 == index  # handed out at its last frame
            assert window.clip[:, 0, 0, 0].tolist() == plan.indices(window.k)[0].tolist()
            completed.append(window.k)
    assert completed == list(range(count_windows(plan, 600)))
    sampled_per_window = len(set(plan.offsets.reshape(-1).tolist()))
    assert assembler.peak_frames <= min(
        plan.window, plan.window // plan.stride * sampled_per_window
    )
    assert len(calls) == sum(plan.needed(i) for i in range(600))  # nothing else converted


def test_windows_over_a_gap_are_skipped_and_the_others_kept():
    plan = WindowPlan.build(Span(8, "f"), Span(4, "f"), fps=8.0, prep=PREP)
    assembler = WindowAssembler(plan, lambda f: torch.zeros(1, 3, 2, 2, dtype=torch.uint8))
    items = [DecodedFrame(i, None) for i in range(20)]
    items += [Gap(20, 23, "unreadable frames")]
    items += [DecodedFrame(i, None) for i in range(23, 48)]
    done = [w for item in items for w in assembler.push(item)]
    assert [w.k for w in done] == list(range(11))
    skipped = [w.k for w in done if not isinstance(w, WindowClip)]
    assert skipped == [4, 5]  # [16, 24) and [20, 28) overlap [20, 23); [12, 20) does not
    assert all(w.reason == "unreadable frames" for w in done if w.k in skipped)


def test_stream_reports_a_corrupt_stretch_as_a_gap(tmp_path):
    path = write_moving_square(tmp_path / "clip.mp4", num_frames=60, step=1)
    corrupt_packets(path, 2.0, 2.5)  # frames 24 to 29 at 12 fps
    with VideoStream(path) as stream:
        items = list(stream)
    covered = []
    for item in items:
        covered += range(item.start, item.stop) if isinstance(item, Gap) else [item.index]
    assert covered == list(range(60))  # every grid index once, in order
    gaps = [item for item in items if isinstance(item, Gap)]
    assert gaps and all("unreadable frames" in gap.reason for gap in gaps)
    assert gaps[0].start == 24 and gaps[-1].stop <= 36


def test_stream_names_a_bad_source(tmp_path):
    with pytest.raises(BadVideoError, match="missing"):
        VideoStream(tmp_path / "absent.mp4")
    (tmp_path / "text.mp4").write_text("not a video")
    with pytest.raises(BadVideoError, match="not a video"):
        VideoStream(tmp_path / "text.mp4")
    with pytest.raises(BadVideoError, match="a folder"):
        VideoStream(tmp_path)


def _window(k: int, probabilities, stride=0.5, length=2.0) -> WindowPrediction:
    return WindowPrediction(k, k * stride, k * stride + length, np.asarray(probabilities, "f4"))


def test_segments_meet_half_way_and_reach_the_ends():
    classes = ["a", "b"]
    windows = [_window(k, [0.9, 0.1]) for k in range(4)]
    windows += [_window(k, [0.2, 0.8]) for k in range(4, 7)]
    segments = merge_segments(windows, classes, threshold=0.5, stride=0.5)
    assert [(s.label, s.start, s.end, s.windows) for s in segments] == [
        ("a", 0.0, 2.75, 4),  # window 0 starts the video; centres 1.0..2.5, then half a stride
        ("b", 2.75, 5.0, 3),  # the last window (4.0 + 2.0) ends the video
    ]
    assert segments[0].probability == pytest.approx(0.9)
    assert segments[1].probability == pytest.approx(0.8)


def test_segments_break_below_the_threshold_and_at_skipped_windows():
    classes = ["a", "b"]
    windows = [_window(0, [0.9, 0.1]), _window(1, [0.55, 0.45]), _window(2, [0.9, 0.1])]
    windows += [_window(4, [0.9, 0.1]), _window(5, [0.9, 0.1])]  # window 3 was skipped
    segments = merge_segments(windows, classes, threshold=0.6, stride=0.5)
    assert [(s.start, s.end, s.windows) for s in segments] == [
        (0.0, 1.25, 1),
        (1.75, 2.25, 1),
        (2.75, 4.5, 2),
    ]
    assert merge_segments([], classes, stride=0.5) == []


def test_thumbnails_stay_few_and_evenly_spread():
    strip = _Thumbnails(capacity=8)
    for k in range(1000):
        strip.offer(float(k), lambda k=k: np.full((2, 2, 3), k % 256, np.uint8))
    times = [t for t, _ in strip.items]
    assert 4 <= len(times) <= 8
    assert len(set(np.diff(times))) == 1  # evenly spread
    assert times[0] == 0.0 and times[-1] > 500


def test_long_video_predictor_matches_the_single_clip_prediction(tmp_path):
    """One window over a whole short video gives `Predictor.predict`'s probabilities, and the
    TCM tempo is the mean field magnitude of that clip."""
    path = write_moving_square(tmp_path / "clip.mp4", num_frames=24, step=2)
    predictor = Predictor(tiny_checkpoint())
    long = LongVideoPredictor(predictor, window="24f", stride="6f")
    timeline = long.run(path)
    (window,) = timeline.windows
    expected = predictor.predict(path, topk=3).top
    assert [s.label for s in window.top(timeline.classes, 3)] == [s.label for s in expected]
    assert window.top(timeline.classes, 1)[0].probability == pytest.approx(
        expected[0].probability, abs=1e-6
    )
    assert (window.start, window.end) == (0.0, 2.0)
    assert timeline.tempo_stage == "layer2"
    from tcm.deploy.tcm_maps import collect_tcm_maps

    maps = collect_tcm_maps(predictor.model, predictor.load(path))
    fast = maps.displacement_pixels("fast")[:-1].norm(dim=1).mean().item()
    slow = maps.displacement_pixels("slow")[:-1].norm(dim=1).mean().item()
    assert window.tempo == pytest.approx((fast, slow), rel=1e-4)


def _write_variable_rate_video(path):
    """10 s: 25 frames at 5 fps, then 150 at 30 fps (a phone's variable frame rate); each
    frame's grey level tells when it is shown: ``20 + 20 * seconds``."""
    from video_files import encode_frames

    times_ms = [200 * n for n in range(25)] + [5000 + round(1000 * n / 30) for n in range(150)]
    frames = (np.full((48, 64, 3), 20 + 20 * t / 1000, dtype=np.uint8) for t in times_ms)
    return encode_frames(path, frames, width=64, height=48, fps=30, timestamps_ms=times_ms)


def test_windows_of_a_variable_frame_rate_video_hold_the_frames_of_their_times(tmp_path):
    path = _write_variable_rate_video(tmp_path / "vfr.mp4")
    plan_prep = Preprocessing(num_segments=8, resize=[36, 48], input_size=32)
    with VideoStream(path) as stream:
        assert 16 < stream.fps < 18  # the average rate: 175 frames in about 10 s
        plan = WindowPlan.build(Span.parse("2"), Span.parse("1"), fps=stream.fps, prep=plan_prep)
        assembler = WindowAssembler(plan, FramePreparer(plan_prep))
        done = [window for item in stream for window in assembler.push(item)]
    assert len(done) == 9  # starts 0, 1, ..., 8 s
    for window in done:
        start, end = plan.seconds(window.start), plan.seconds(window.stop)
        shown = (window.clip.float().mean(dim=(1, 2, 3)) - 20) / 20  # (T,) seconds
        # Each sampled frame is the one on screen at its time: shown within the window, or
        # held from up to one 5 fps frame (0.2 s) before it.
        assert shown.min() >= start - 0.25 and shown.max() <= end + 0.05, (start, end, shown)
        assert shown.max() >= start + 1.0  # the window's later frames, not its first ones
    middle = next(w for w in done if plan.seconds(w.start) > 4.9)  # across the rate change
    shown = (middle.clip.float().mean(dim=(1, 2, 3)) - 20) / 20
    assert shown.min() >= plan.seconds(middle.start) - 0.25


def test_predict_times_the_windows_of_a_variable_frame_rate_video_in_seconds(tmp_path, capsys):
    import json

    import torch as torch_

    from tcm.cli.main import main

    path = _write_variable_rate_video(tmp_path / "vfr.mp4")
    checkpoint = tmp_path / "model.pt"
    torch_.save(tiny_checkpoint(), checkpoint)
    argv = ["predict", str(path), "--checkpoint", str(checkpoint), "--window", "2"]
    assert main([*argv, "--stride", "1", "--json", "--no-progress"]) == 0
    windows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    windows = [w for w in windows if w["type"] == "window"]
    assert [round(w["start"]) for w in windows] == list(range(9))
    assert all(abs(w["end"] - w["start"] - 2.0) < 0.07 for w in windows)
    assert abs(windows[-1]["end"] - 10.0) < 0.1  # the video's 10 s, not its frame count at 30 fps
