"""The timeline picture of a long video: what happens when, and at what tempo.

From top to bottom, on one time axis (seconds):

- a strip of thumbnails (the middle sampled frame of evenly spread windows);
- the probabilities of the leading classes at each window's centre (lines), the merged
  segments as bands of their class's colour, the stretches that could not be decoded hatched
  in grey, and the segment threshold dashed;
- with a TCM model, the mean magnitude of its fast (frame ``t`` to ``t+1``) and slow (frame
  ``0`` to ``t+1``) displacement fields per window, in input pixels.

Example:
    >>> timeline = LongVideoPredictor(predictor, "2.0", "0.5").run("match.mp4")  # doctest: +SKIP
    >>> render_timeline(timeline, threshold=0.5).savefig("timeline.png")         # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from tcm.deploy.timeline_records import Timeline
from tcm.utils.files import check_output_file

logger = logging.getLogger(__name__)

#: Thumbnails drawn along the time axis, at most.
STRIP_LENGTH = 16
#: Extensions of the pictures :func:`write_timeline` writes.
PICTURE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg", ".webp")


def shown_classes(timeline: Timeline, threshold: float, limit: int = 5) -> list[int]:
    """Class indices to draw: those of the segments (longest total first), then those with the
    highest peak probability, ``limit`` in all (more if more classes have segments)."""
    covered: dict[int, float] = {}
    for segment in timeline.segments(threshold):
        covered[segment.index] = covered.get(segment.index, 0.0) + segment.end - segment.start
    order = sorted(covered, key=lambda i: -covered[i])
    probabilities = timeline.probabilities()
    if probabilities.size:
        for index in np.argsort(-probabilities.max(axis=0), kind="stable"):
            if len(order) >= limit:
                break
            if int(index) not in covered:
                order.append(int(index))
    return order


def _series(timeline: Timeline, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Window centres and ``values`` ``(num_windows, ...)``, with a NaN row wherever windows
    are missing (skipped), so that lines break there."""
    times, rows = [], []
    previous = None
    for window, row in zip(timeline.windows, values):
        if previous is not None and window.k != previous + 1:
            times.append((times[-1] + window.centre) / 2)
            rows.append(np.full_like(row, np.nan, dtype=np.float64))
        times.append(window.centre)
        rows.append(row)
        previous = window.k
    return np.asarray(times), np.asarray(rows, dtype=np.float64)


def _draw_strip(ax, timeline: Timeline, end: float) -> None:
    items = timeline.thumbnails
    if len(items) > STRIP_LENGTH:
        items = [items[i] for i in np.linspace(0, len(items) - 1, STRIP_LENGTH).round().astype(int)]
    width = end / max(len(items), 1)
    for seconds, image in items:
        left = min(max(seconds - width / 2, 0.0), end - width)
        ax.imshow(image, extent=(left, left + width, 0, 1), aspect="auto", interpolation="nearest")
    ax.set_xlim(0, end)
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    ax.tick_params(labelbottom=False)
    ax.set_title(f"{Path(timeline.source).name}", fontsize=10, loc="left")


def _draw_probabilities(ax, timeline: Timeline, threshold: float, classes: list[int]) -> dict:
    from matplotlib import colormaps

    palette = colormaps["tab10"]
    colours = {index: palette(rank % 10) for rank, index in enumerate(classes)}
    times, probabilities = _series(timeline, timeline.probabilities())
    for index in classes:
        ax.plot(
            times,
            probabilities[:, index] if len(times) else [],
            color=colours[index],
            lw=1.4,
            label=timeline.classes[index],
        )
    for segment in timeline.segments(threshold):
        colour = colours.get(segment.index, "0.6")
        ax.axvspan(segment.start, segment.end, color=colour, alpha=0.18, lw=0)
        ax.axvline(segment.start, color=colour, lw=0.6, alpha=0.6)
    for stretch in timeline.stretches:
        ax.axvspan(stretch.start, stretch.end, facecolor="0.85", edgecolor="0.4", hatch="///", lw=0)
        ax.text(
            (stretch.start + stretch.end) / 2,
            0.5,
            "unreadable",
            rotation=90,
            ha="center",
            va="center",
            fontsize=7,
            color="0.25",
        )
    ax.axhline(threshold, color="0.3", lw=0.8, ls="--")
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("probability")
    ax.grid(alpha=0.3)
    if classes:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.005, 1.0), frameon=False)
    ax.set_title(
        f"{len(timeline.windows)} windows of {timeline.window:g} s every {timeline.stride:g} s; "
        f"bands: segments at probability >= {threshold:g}",
        fontsize=9,
        loc="left",
    )
    return colours


def _draw_tempo(ax, timeline: Timeline) -> None:
    values = np.array([w.tempo for w in timeline.windows], dtype=np.float64)  # (n, 2)
    times, values = _series(timeline, values)
    ax.plot(times, values[:, 0], color="tab:red", lw=1.3, label="fast (t \u2192 t+1)")
    ax.plot(times, values[:, 1], color="tab:blue", lw=1.3, label="slow (0 \u2192 t+1)")
    for stretch in timeline.stretches:
        ax.axvspan(stretch.start, stretch.end, facecolor="0.85", edgecolor="0.4", hatch="///", lw=0)
    ax.set_ylabel("field (px)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.005, 1.0), frameon=False)
    ax.set_title(
        f"mean displacement of TCM after {timeline.tempo_stage} (the module's tempo)",
        fontsize=9,
        loc="left",
    )


def render_timeline(timeline: Timeline, *, threshold: float = 0.5, max_classes: int = 5):
    """The timeline figure (see the module docstring).

    Args:
        timeline: from :class:`~tcm.deploy.timeline.LongVideoPredictor`.
        threshold: probability threshold of the segments.
        max_classes: classes drawn as lines (at least those with segments).

    Returns:
        A matplotlib ``Figure`` (Agg).
    """
    from matplotlib.figure import Figure

    tempo = timeline.tempo_stage is not None and any(w.tempo for w in timeline.windows)
    end = max(timeline.duration, max((w.end for w in timeline.windows), default=0.0), 1e-3)
    strip = min(len(timeline.thumbnails), STRIP_LENGTH)
    width = 12.0
    strip_height = (0.78 * width / strip) if strip else 0.3
    heights = [max(strip_height, 0.3), 2.6] + ([1.4] if tempo else [])
    figure = Figure(figsize=(width, sum(heights) + 1.0), dpi=100, layout="constrained")
    axes = figure.subplots(len(heights), 1, sharex=True, height_ratios=heights)
    _draw_strip(axes[0], timeline, end)
    _draw_probabilities(
        axes[1], timeline, threshold, shown_classes(timeline, threshold, max_classes)
    )
    if tempo:
        _draw_tempo(axes[2], timeline)
    axes[-1].set_xlabel("time (s)")
    axes[-1].set_xlim(0, end)
    return figure


def write_timeline(
    timeline: Timeline, out: str | os.PathLike, *, threshold: float = 0.5, max_classes: int = 5
) -> Path:
    """Render :func:`render_timeline` into ``out`` (``.png``, or another of
    :data:`PICTURE_SUFFIXES`); returns the path."""
    out = check_output_file(out, "timeline picture", suffixes=PICTURE_SUFFIXES)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure = render_timeline(timeline, threshold=threshold, max_classes=max_classes)
    figure.savefig(out)
    logger.debug("wrote %s", out)
    return out
