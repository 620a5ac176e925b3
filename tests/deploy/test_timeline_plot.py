"""The timeline picture: which classes are drawn, gaps where windows were skipped, the file."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from tcm.deploy.timeline_plot import (
    STRIP_LENGTH,
    render_timeline,
    shown_classes,
    write_timeline,
)
from tcm.deploy.timeline_records import BadStretch, Timeline, WindowPrediction
from tcm.errors import OutputError

pytest.importorskip("matplotlib")

CLASSES = ["walk", "run", "jump", "sit", "wave"]


def _timeline(*, tempo: bool = True, skip: tuple[int, ...] = (4, 5)) -> Timeline:
    """Windows of 1 s every 0.5 s: "walk" for three, then "run"; ``skip`` windows are missing."""
    windows = []
    for k in range(10):
        if k in skip:
            continue
        p = np.full(len(CLASSES), 0.02, np.float32)
        p[0 if k < 3 else 1] = 0.9
        p[4] = 0.4 if k == 2 else 0.02  # "wave" peaks below the threshold once
        windows.append(
            WindowPrediction(k, k * 0.5, k * 0.5 + 1.0, p, (1.0 + k, 0.5) if tempo else None)
        )
    thumbnails = [(t * 0.25, np.full((8, 8, 3), t, np.uint8)) for t in range(40)]
    return Timeline(
        source="videos/match.mp4",
        classes=CLASSES,
        fps=25.0,
        window=1.0,
        stride=0.5,
        duration=5.5,
        windows=windows,
        stretches=[BadStretch(2.0, 3.0, "unreadable frames", 25, 2)] if skip else [],
        thumbnails=thumbnails,
        tempo_stage="layer2" if tempo else None,
    )


def test_segment_classes_come_first_then_the_highest_peaks():
    timeline = _timeline()
    assert [s.label for s in timeline.segments(0.5)] == ["walk", "run", "run"]
    assert shown_classes(timeline, 0.5, limit=3) == [1, 0, 4]  # "run" covers more than "walk"
    assert shown_classes(timeline, 0.5, limit=1) == [1, 0]  # at least those with segments
    assert shown_classes(timeline, 0.95, limit=2) == [0, 1]  # no segment: peaks, stable order


def test_the_figure_breaks_lines_at_skipped_windows_and_shows_the_tempo():
    figure = render_timeline(_timeline(), threshold=0.5, max_classes=3)
    strip, probabilities, tempo = figure.axes
    assert strip.get_title(loc="left") == "match.mp4"
    assert len(strip.images) == STRIP_LENGTH  # 40 thumbnails thinned out
    labels = [line.get_label() for line in probabilities.get_lines()[:3]]
    assert labels == ["run", "walk", "wave"]
    run = probabilities.get_lines()[0]
    times, values = run.get_xdata(), run.get_ydata()
    assert len(times) == 8 + 1  # the gap where windows 4 and 5 are missing is a NaN point
    assert math.isnan(values[4]) and times[3] < times[4] < times[5]
    assert probabilities.get_xlim() == (0.0, 5.5)
    fast = tempo.get_lines()[0]
    assert np.nanmax(fast.get_ydata()) == 10.0
    assert "layer2" in tempo.get_title(loc="left")


def test_without_tempo_there_are_two_rows():
    figure = render_timeline(_timeline(tempo=False, skip=()))
    assert len(figure.axes) == 2
    assert not any(math.isnan(y) for y in figure.axes[1].get_lines()[0].get_ydata())


def test_write_timeline_writes_a_picture_of_the_figure(tmp_path):
    out = write_timeline(_timeline(), tmp_path / "plots" / "timeline.png")
    assert out == tmp_path / "plots" / "timeline.png"
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width == 1200  # 12 in at 100 dpi
    assert write_timeline(_timeline(), tmp_path / "timeline.svg").read_text().startswith("<?xml")
    with pytest.raises(OutputError, match="must be a"):
        write_timeline(_timeline(), tmp_path / "timeline.txt")
    assert not (tmp_path / "timeline.txt").exists()
