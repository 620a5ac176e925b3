"""Long videos end to end: a video of known segments (3 s moving left, 3 s moving up, from the
synthetic generator) recovered by a model trained here, a corrupt stretch skipped, a file read
as a stream, and what ``tcm predict --window`` writes (JSON lines, the timeline picture)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from deploy_media import MEAN, STD

import tcm
from tcm.checkpoint import atomic_save, make_checkpoint
from tcm.cli.main import main
from tcm.data.synth import (
    NOISE_STD,
    ObjectTrack,
    clip_rng,
    draw_object,
    random_look,
    render_background,
    write_video,
)
from tcm.data.transforms import center_crop, normalize, resize
from tcm.deploy import LongVideoPredictor, Predictor, Timeline, render_timeline
from video_files import corrupt_packets

CLASSES = ["moving left", "moving up"]
FPS = 12
SEGMENT_FRAMES = 36  # a segment of the long videos: 3 s of one class
SIZE = 40
SPEED = 1.5  # pixels per frame
DATA = {
    "num_segments": 4,
    "sampling": "segments",
    "resize": [36, 36],
    "input_size": 32,
    "mean": MEAN,
    "std": STD,
}
MODEL = {
    "name": "tcm_tsm_resnet10",
    "kwargs": {"widths": [8, 16, 32, 64], "stem_width": 8, "patch_size": 5},
}
WINDOW_FRAMES = 12
WINDOW, STRIDE = WINDOW_FRAMES / FPS, 0.25  # seconds
CLIPS, STEPS = 200, 800  # training: segments per class, optimiser steps


def _render(name: str, seed: int, index: int) -> np.ndarray:
    """``(SEGMENT_FRAMES, SIZE, SIZE, 3)`` uint8: three shapes of the synthetic generator
    crossing one of its backgrounds leftwards or upwards at ``SPEED``, each re-entering on the
    other side when it has left the frame (so that every window of the segment shows the
    motion, with no cut)."""
    rng = clip_rng(seed, name, index)
    video = np.repeat(render_background(rng, SIZE)[None], SEGMENT_FRAMES, axis=0)
    radius = rng.uniform(0.1, 0.14) * SIZE
    span = SIZE + 2 * radius
    start, across = rng.uniform(0, span), rng.uniform(0.25, 0.75, size=3) * SIZE
    for shape in range(3):
        offset = start + shape * span / 3 - SPEED * np.arange(SEGMENT_FRAMES)
        along = np.mod(offset, span) - radius  # (F,) decreasing, wrapping around
        other = np.full(SEGMENT_FRAMES, across[shape])
        xy = (along, other) if name == "moving left" else (other, along)
        track = ObjectTrack(
            np.stack(xy, axis=1), np.full(SEGMENT_FRAMES, radius), np.ones(SEGMENT_FRAMES)
        )
        draw_object(video, track, random_look(rng))
    video += rng.normal(0.0, NOISE_STD, size=video.shape).astype(np.float32)
    return np.round(np.clip(video, 0.0, 1.0) * 255.0).astype(np.uint8)


def _prepare(frames: np.ndarray) -> torch.Tensor:
    """As the checkpoint's test pipeline: ``(F, S, S, 3)`` -> uint8 ``(F, 3, 32, 32)``."""
    clip = torch.from_numpy(frames).permute(0, 3, 1, 2)
    return center_crop(resize(clip, tuple(DATA["resize"])), DATA["input_size"]).contiguous()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A TSM + TCM ResNet-10 (widths 8..64, 4 frames of 32x32) trained for about a minute to
    tell windows of 1 s moving left from windows moving up: windows drawn anywhere in segments
    of 3 s (as the windows of the long videos), a random frame per segment (TSN training),
    half of them across a cut, half of them transposed. With 400 steps the windows a cut
    splits 1 : 3 were read on either side of 0.5 depending on float rounding alone (two of six
    runs: seeds 0 and 1, fused, eager and pure-PyTorch batch norms); with 800 all six read
    them right."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads cost more than they bring
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    clips = torch.stack(
        [_prepare(_render(name, 1, i)) for name in CLASSES for i in range(CLIPS)]
    )  # (2 * CLIPS, SEGMENT_FRAMES, 3, 32, 32)
    labels = torch.arange(len(CLASSES)).repeat_interleave(CLIPS)
    segments = DATA["num_segments"]
    tick = WINDOW_FRAMES // segments
    model = tcm.create_model(
        MODEL["name"], len(CLASSES), segments, dropout=0.0, **MODEL["kwargs"]
    ).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, STEPS)
    for _ in range(STEPS):
        x, y = [], []
        for _ in range(16):
            # Frames of a window: a random frame per segment, from a random start in a clip.
            first, second = rng.integers(len(clips), size=2)
            frames = rng.integers(0, SEGMENT_FRAMES - WINDOW_FRAMES + 1)
            frames += np.arange(segments) * tick + rng.integers(0, tick, size=segments)
            # One window in two spans a cut to another clip after 1 or 3 of its frames, as at
            # a change of class in the long videos (what the tests measure to one stride); it
            # shows the class of the majority.
            cut = int(rng.choice([1, 3])) if rng.random() < 0.5 else segments
            x.append(torch.cat([clips[first, frames[:cut]], clips[second, frames[cut:]]]))
            y.append(labels[first] if cut > segments // 2 else labels[second])
        x, y = normalize(torch.stack(x), MEAN, STD), torch.stack(y)
        # Transposed (x and y swapped), a clip moving left moves up and the other way round:
        # the same scene in both classes, so that only the motion tells them apart.
        swap = torch.from_numpy(rng.random(16) < 0.5)
        x = torch.where(swap[:, None, None, None, None], x.transpose(-1, -2), x)
        loss = F.cross_entropy(model(x), torch.where(swap, 1 - y, y))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    torch.set_num_threads(threads)
    checkpoint = make_checkpoint(
        model.eval().state_dict(),
        model_name=MODEL["name"],
        num_classes=len(CLASSES),
        num_segments=segments,
        model_kwargs=MODEL["kwargs"],
        classes=CLASSES,
        data=DATA,
    )
    return atomic_save(checkpoint, tmp_path_factory.mktemp("trained") / "left_up.pt")


def write_long_video(path: Path, classes: list[str], seed: int = 2) -> Path:
    """A 3 s segment of each of ``classes`` in turn (unseen in training), as one H.264 video."""
    clips = [_render(name, seed, index) for index, name in enumerate(classes)]
    write_video(path, np.concatenate(clips), fps=FPS)
    return path


@pytest.fixture(scope="module")
def left_then_up(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("long")
    return write_long_video(folder / "left_then_up.mp4", CLASSES)


def test_known_segments_are_recovered_within_one_stride(checkpoint, left_then_up):
    long = LongVideoPredictor(Predictor(checkpoint), window=str(WINDOW), stride=str(STRIDE))
    timeline = long.run(left_then_up)
    assert timeline.duration == pytest.approx(6.0)
    assert len(timeline.windows) == (6.0 - WINDOW) / STRIDE + 1
    for window in timeline.windows:  # windows inside one segment: its class
        if window.end <= 3.0 or window.start >= 3.0:
            expected = CLASSES[0] if window.end <= 3.0 else CLASSES[1]
            assert window.top(timeline.classes, 1)[0].label == expected, window
    segments = timeline.segments(threshold=0.5)
    assert [s.label for s in segments] == CLASSES
    assert segments[0].start == 0.0 and segments[1].end == pytest.approx(6.0)
    assert abs(segments[0].end - 3.0) <= STRIDE
    assert segments[0].end == segments[1].start
    assert min(s.probability for s in segments) > 0.8
    fast = np.array([w.tempo[0] for w in timeline.windows])
    assert timeline.tempo_stage == "layer2" and np.all(fast > 0)


def test_batching_does_not_change_the_results(checkpoint, left_then_up):
    predictor = Predictor(checkpoint)
    window = f"{WINDOW_FRAMES}f"  # the same windows, given in frames
    one = LongVideoPredictor(predictor, window, "3f", batch_size=1).run(left_then_up)
    five = LongVideoPredictor(predictor, window, "3f", batch_size=5).run(left_then_up)
    assert len(one.windows) == len(five.windows) == 21
    np.testing.assert_allclose(one.probabilities(), five.probabilities(), atol=1e-5)
    assert [w.start for w in one.windows] == [w.start for w in five.windows]


def predict(*args) -> int:
    """``tcm predict ARGS`` (paths given as they are)."""
    return main(["predict", *map(str, args)])


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_json_has_a_line_per_window_then_the_segments(checkpoint, left_then_up, capsys):
    status = predict(
        left_then_up,
        "--checkpoint",
        checkpoint,
        "--window",
        WINDOW,
        "--stride",
        STRIDE,
        "--topk",
        "2",
        "--json",
        "--no-progress",
    )
    assert status == 0
    records = _json_lines(capsys.readouterr().out)
    windows = [r for r in records if r["type"] == "window"]
    segments = [r for r in records if r["type"] == "segment"]
    assert len(windows) + len(segments) == len(records) and len(windows) == 21
    assert records[-len(segments) :] == segments  # segments come last
    for k, window in enumerate(windows):
        assert set(window) == {"type", "path", "start", "end", "classes", "probabilities", "tempo"}
        assert window["path"] == str(left_then_up)
        assert (window["start"], window["end"]) == pytest.approx((k * STRIDE, k * STRIDE + WINDOW))
        assert len(window["classes"]) == 2 and set(window["classes"]) == set(CLASSES)
        assert window["probabilities"][0] >= window["probabilities"][1]
        assert sum(window["probabilities"]) == pytest.approx(1.0, abs=1e-4)
        assert set(window["tempo"]) == {"fast", "slow"}
    assert [s["label"] for s in segments] == CLASSES
    assert set(segments[0]) == {
        "type",
        "path",
        "start",
        "end",
        "label",
        "index",
        "probability",
        "windows",
    }


def test_a_corrupt_stretch_is_reported_and_skipped(checkpoint, tmp_path, capsys):
    path = write_long_video(tmp_path / "damaged.mp4", [*CLASSES, CLASSES[0]], seed=3)
    corrupt_packets(path, 4.0, 4.6)
    status = predict(
        path,
        "--checkpoint",
        checkpoint,
        "--window",
        f"{WINDOW_FRAMES}f",
        "--json",
        "--stride",
        "0.25",
        "--no-progress",
    )
    captured = capsys.readouterr()
    assert status == 0  # not fatal
    records = _json_lines(captured.out)
    (skipped,) = [r for r in records if r["type"] == "skipped"]
    assert 3.5 <= skipped["start"] <= 4.0 + 1e-6 and 4.6 - 1e-6 <= skipped["end"] <= 5.5
    assert "unreadable" in skipped["reason"] and skipped["frames"] >= 1
    windows = [r for r in records if r["type"] == "window"]
    assert skipped["windows"] == 33 - len(windows) > 0
    for window in windows:  # no classified window overlaps the stretch
        assert window["end"] <= skipped["start"] + 1e-6 or window["start"] >= skipped["end"] - 1e-6
    segments = [r for r in records if r["type"] == "segment"]
    assert segments[0]["label"] == segments[-1]["label"] == "moving left"
    assert abs(segments[0]["end"] - 3.0) <= STRIDE
    assert f"{path}: skipped" in captured.err and "unreadable" in captured.err


def test_stream_mode_prints_the_top_class_as_it_goes(checkpoint, left_then_up, capsys):
    status = predict(
        left_then_up, "--checkpoint", checkpoint, "--stream", "--window", WINDOW, "--stride", "0.5"
    )
    assert status == 0
    out = capsys.readouterr().out.splitlines()
    live = [line.split() for line in out[:11]]  # one line per window: "END s LABEL P%"
    assert [float(words[0]) for words in live] == [WINDOW + 0.5 * k for k in range(11)]
    assert all(words[1] == "s" and words[-1].endswith("%") for words in live)
    assert " ".join(live[0][2:-1]) == "moving left" and " ".join(live[-1][2:-1]) == "moving up"
    assert out[11].startswith(f"{left_then_up}: 6.00 s, 11 windows")
    assert "moving left" in out[12] and "moving up" in out[13]


def test_timeline_picture_is_written(checkpoint, left_then_up, tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "pictures" / "timeline.png"
    status = predict(
        left_then_up,
        "--checkpoint",
        checkpoint,
        "--timeline",
        out,
        "--window",
        WINDOW,
        "--stride",
        "0.25",
        "--no-progress",
    )
    assert status == 0
    assert f"wrote {out}" in capsys.readouterr().err
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width > 800 and image.height > 400


def test_timeline_figure_has_a_tempo_panel_only_with_tcm(checkpoint, left_then_up):
    timeline = LongVideoPredictor(Predictor(checkpoint), str(WINDOW), "0.5").run(left_then_up)
    assert len(timeline.thumbnails) == len(timeline.windows)  # few windows: one each
    assert len(render_timeline(timeline).axes) == 3  # strip, probabilities, tempo
    without = Timeline(
        timeline.source, timeline.classes, timeline.fps, timeline.window, timeline.stride
    )
    without.windows = [w.__class__(w.k, w.start, w.end, w.probabilities) for w in timeline.windows]
    without.duration = timeline.duration
    assert len(render_timeline(without).axes) == 2


def test_window_options_need_window_mode(checkpoint, left_then_up, capsys):
    status = predict(left_then_up, "--checkpoint", checkpoint, "--stride", "1")
    assert status == 2
    assert "--stride needs window mode" in capsys.readouterr().err
    status = predict(left_then_up, left_then_up, "--checkpoint", checkpoint, "--timeline", "x.png")
    assert status == 2
    assert "--timeline draws one video" in capsys.readouterr().err


def test_an_unreadable_input_is_named_and_the_others_go_on(
    checkpoint, left_then_up, tmp_path, capsys
):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    status = predict(
        bad, left_then_up, "--checkpoint", checkpoint, "--window", WINDOW, "--no-progress"
    )
    assert status == 1
    captured = capsys.readouterr()
    assert f"tcm predict: {bad}: not a video" in captured.err
    assert "1 of 2 inputs gave no result" in captured.err
    assert captured.out.startswith(f"{left_then_up}: 6.00 s")
