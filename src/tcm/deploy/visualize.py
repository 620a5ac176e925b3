"""What TCM sees, drawn: its displacement fields, their confidence, and TAM's temporal attention.

For one input, the model runs once on the clip its test preprocessing makes, and
:func:`~tcm.deploy.tcm_maps.collect_tcm_maps` records MTDM's fields and TAM's attention.

The figure has one row per sampled frame: the frame as the model sees it (centre crop), the
fast field (colour: hue = direction as on the colour wheel, brightness = magnitude; or arrows
on a coarse grid; or both), its confidence, the slow field and its confidence; and below, the
attention over time (mean over channels with the 10-90 % spread, and every channel).

Example:
    >>> from tcm.deploy import visualize
    >>> visualize("best.pt", "clip.mp4", "tcm.png")          # doctest: +SKIP
    VisualizationResult(path=PosixPath('tcm.png'), ...)
"""

from __future__ import annotations

import io
import logging
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tcm.deploy.inputs import read_clip, sampled_frame_indices, to_model_input
from tcm.deploy.predictor import Predictor
from tcm.deploy.tcm_maps import TCMMaps, collect_tcm_maps
from tcm.utils.files import check_output_file

logger = logging.getLogger(__name__)

FLOW_MODES = ("color", "arrows", "both")


def flow_to_rgb(flow: np.ndarray, max_magnitude: float) -> np.ndarray:
    """Colour-code a displacement field: hue = direction, brightness = magnitude.

    Args:
        flow: ``(2, H, W)`` ``(dx, dy)`` with ``dy`` pointing down (image coordinates).
        max_magnitude: magnitude shown at full brightness.

    Returns:
        ``(H, W, 3)`` float RGB in ``[0, 1]``.
    """
    from matplotlib.colors import hsv_to_rgb

    dx, dy = flow
    angle = np.arctan2(-dy, dx)  # counter-clockwise from "right", as seen on screen
    hue = (angle / (2 * math.pi)) % 1.0
    value = np.clip(np.hypot(dx, dy) / max(max_magnitude, 1e-6), 0.0, 1.0)
    return hsv_to_rgb(np.stack([hue, np.ones_like(hue), value], axis=-1))


def colour_wheel(size: int = 101) -> np.ndarray:
    """``(size, size, 4)`` RGBA legend of :func:`flow_to_rgb` (transparent outside the disc)."""
    coords = np.linspace(-1.0, 1.0, size)
    dx, dy = np.meshgrid(coords, coords)  # dy grows downwards, as in images
    rgb = flow_to_rgb(np.stack([dx, dy]), 1.0)
    alpha = (np.hypot(dx, dy) <= 1.0).astype(float)
    return np.concatenate([rgb, alpha[..., None]], axis=-1)


def _upsample(maps: torch.Tensor, size: int) -> np.ndarray:
    """``(T, c, h, w)`` -> ``(T, c, size, size)`` bilinear, as numpy."""
    return F.interpolate(maps, size=(size, size), mode="bilinear", align_corners=False).numpy()


@dataclass
class _Panels:
    """Everything a figure shows, as numpy arrays at frame resolution."""

    frames: np.ndarray  # (T, S, S, 3) uint8
    flows: dict[str, np.ndarray]  # tempo -> (T, 2, S, S) pixels
    coarse: dict[str, np.ndarray]  # tempo -> (T, 2, h, w) pixels
    confidence: dict[str, np.ndarray]  # tempo -> (T, S, S)
    attention: np.ndarray  # (T, C)
    max_magnitude: float


def _panels(frames: torch.Tensor, maps: TCMMaps) -> _Panels:
    size = frames.shape[-1]
    flows, coarse, confidence = {}, {}, {}
    for tempo in ("fast", "slow"):
        pixels = maps.displacement_pixels(tempo)  # (T, 2, h, w)
        coarse[tempo] = pixels.numpy()
        flows[tempo] = _upsample(pixels, size)
        confidence[tempo] = _upsample(maps.confidence(tempo)[:, None], size)[:, 0]
    magnitudes = np.concatenate(
        [np.hypot(*f.transpose(1, 0, 2, 3)).ravel() for f in flows.values()]
    )
    max_magnitude = float(max(np.percentile(magnitudes, 99), 1.0))
    return _Panels(
        frames=frames.permute(0, 2, 3, 1).numpy(),
        flows=flows,
        coarse=coarse,
        confidence=confidence,
        attention=maps.attention.numpy(),
        max_magnitude=max_magnitude,
    )


def _arrow_grid(panels: _Panels) -> tuple[int, float]:
    """Grid step (feature cells) and arrow scale: about 10 arrows per side, the longest
    arrow at most 0.9 grid spacings long (scale 1 draws displacements at true length)."""
    h, w = next(iter(panels.coarse.values())).shape[-2:]
    step = max(1, round(max(h, w) / 10))
    spacing = step * panels.frames.shape[1] / w  # pixels between arrows
    return step, min(1.0, 0.9 * spacing / panels.max_magnitude)


def _draw_flow(ax, panels: _Panels, tempo: str, t: int, mode: str, stride: float) -> None:
    size = panels.frames.shape[1]
    if mode in ("color", "both"):
        ax.imshow(flow_to_rgb(panels.flows[tempo][t], panels.max_magnitude))
    else:
        ax.imshow(panels.frames[t], alpha=0.45)
    if mode in ("arrows", "both"):
        dx, dy = panels.coarse[tempo][t]  # (h, w) pixels
        h, w = dx.shape
        step, scale = _arrow_grid(panels)
        ys, xs = np.mgrid[step // 2 : h : step, step // 2 : w : step]
        u, v = dx[ys, xs], dy[ys, xs]
        keep = np.hypot(u, v) >= 0.05 * panels.max_magnitude
        ax.quiver(
            (xs[keep] + 0.5) * stride,
            (ys[keep] + 0.5) * stride,
            u[keep] * scale,
            v[keep] * scale,
            angles="xy",
            scale_units="xy",
            scale=1.0,
            color="white" if mode == "both" else "black",
            edgecolor="black" if mode == "both" else "white",
            linewidth=0.4,
            width=0.012,
            headwidth=3.5,
        )
    ax.set_xlim(0, size)
    ax.set_ylim(size, 0)


def _hide_ticks(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


_COLUMNS = (
    ("frame", None),
    ("fast field  t \u2192 t+1", "fast"),
    ("fast confidence", "fast"),
    ("slow field  0 \u2192 t+1", "slow"),
    ("slow confidence", "slow"),
)


def _draw_row(axes, panels: _Panels, maps: TCMMaps, t: int, mode: str, label: str) -> None:
    """One frame's row: frame, fast field, fast confidence, slow field, slow confidence."""
    for column, (ax, (_, tempo)) in enumerate(zip(axes, _COLUMNS)):
        _hide_ticks(ax)
        if column == 0:
            ax.imshow(panels.frames[t])
            ax.set_ylabel(label, fontsize=9)
        elif column in (1, 3):
            _draw_flow(ax, panels, tempo, t, mode, maps.stride)
        else:
            ax.imshow(panels.confidence[tempo][t], cmap="magma", vmin=0.0, vmax=1.0)


def _draw_attention(ax_line, ax_map, panels: _Panels, current: int | None = None) -> None:
    attention = panels.attention  # (T, C)
    frames = np.arange(attention.shape[0])
    low, high = np.percentile(attention, [10, 90], axis=1)
    ax_line.fill_between(frames, low, high, color="tab:blue", alpha=0.25, label="10-90 %")
    ax_line.plot(frames, attention.mean(axis=1), "o-", color="tab:blue", label="mean")
    span_low, span_high = float(low.min()), float(high.max())
    pad = max(0.05 - (span_high - span_low) / 2, 0.0) + 0.01
    ax_line.set_ylim(max(0.0, span_low - pad), min(1.0, span_high + pad))
    ax_line.ticklabel_format(axis="y", useOffset=False)
    ax_line.set_xticks(frames)
    ax_line.set_xlabel("frame t")
    ax_line.set_ylabel("attention")
    ax_line.set_title("TAM temporal attention (over channels)", fontsize=9)
    ax_line.legend(fontsize=7, loc="best")
    ax_line.grid(alpha=0.3)
    order = np.argsort(attention.mean(axis=0))
    ax_map.imshow(
        attention[:, order].T, aspect="auto", cmap="viridis", vmin=0, vmax=1, origin="lower"
    )
    ax_map.set_xticks(frames)
    ax_map.set_xlabel("frame t")
    ax_map.set_ylabel(f"channel ({attention.shape[1]}, sorted)")
    ax_map.set_yticks([])
    ax_map.set_title("attention per channel", fontsize=9)
    if current is not None:
        ax_line.axvline(current, color="tab:red", lw=1.5)
        ax_map.axvline(current, color="tab:red", lw=1.5)


def _draw_wheel(ax, panels: _Panels, mode: str) -> None:
    ax.imshow(colour_wheel(), extent=(-1, 1, 1, -1))
    text = f"hue: direction\nfull brightness: {panels.max_magnitude:.1f} px"
    _, scale = _arrow_grid(panels)
    if mode != "color" and scale < 1.0:
        text += f"\narrows drawn x{scale:.2g}"
    ax.set_title(text, fontsize=8)
    ax.axis("off")


def _caption(maps: TCMMaps, title: str, size: int) -> str:
    h = maps.fields.shape[-1]
    return (
        f"{title}\nTCM after {maps.stage}: {h}x{h} features, {maps.stride:g} px per cell; "
        f"fields in pixels of the {size}x{size} input (radius {maps.radius} cells = "
        f"{maps.radius * maps.stride:g} px); last row repeats the previous pair"
    )


def render_figure(
    frames: torch.Tensor,
    maps: TCMMaps,
    *,
    flow: str = "both",
    title: str = "",
    frame_labels: list[str] | None = None,
):
    """The full figure: one row per frame, attention below.

    Args:
        frames: uint8 ``(T, 3, S, S)`` frames the model saw.
        maps: from :func:`collect_tcm_maps`.
        flow: ``"color"``, ``"arrows"`` or ``"both"``.
        title: first line of the caption (input and prediction).
        frame_labels: row labels (default ``t=0``, ``t=1``, ...).

    Returns:
        A matplotlib ``Figure`` (Agg).
    """
    from matplotlib.figure import Figure

    if flow not in FLOW_MODES:
        raise ValueError(f"flow must be one of {FLOW_MODES}, got {flow!r}")
    panels = _panels(frames, maps)
    count = panels.frames.shape[0]
    labels = frame_labels or [f"t={t}" for t in range(count)]
    figure = Figure(figsize=(11.5, 2.25 * count + 3.2), dpi=100, layout="constrained")
    grid = figure.add_gridspec(count + 1, 5, height_ratios=[1.0] * count + [1.35])
    for t in range(count):
        axes = [figure.add_subplot(grid[t, c]) for c in range(5)]
        _draw_row(axes, panels, maps, t, flow, labels[t])
        if t == 0:
            for ax, (name, _) in zip(axes, _COLUMNS):
                ax.set_title(name, fontsize=10)
        if t == count - 1:
            for column in (2, 4):
                figure.colorbar(axes[column].images[-1], ax=axes[column], fraction=0.046)
    _draw_wheel(figure.add_subplot(grid[count, 0]), panels, flow)
    _draw_attention(
        figure.add_subplot(grid[count, 1:3]), figure.add_subplot(grid[count, 3:5]), panels
    )
    figure.suptitle(_caption(maps, title, panels.frames.shape[1]), fontsize=10)
    return figure


def render_gif_frames(
    frames: torch.Tensor,
    maps: TCMMaps,
    *,
    flow: str = "both",
    title: str = "",
    frame_labels: list[str] | None = None,
) -> list:
    """One PIL image per sampled frame: its row of panels and the attention, frame marked."""
    from matplotlib.figure import Figure
    from PIL import Image

    if flow not in FLOW_MODES:
        raise ValueError(f"flow must be one of {FLOW_MODES}, got {flow!r}")
    panels = _panels(frames, maps)
    count = panels.frames.shape[0]
    labels = frame_labels or [f"t={t}" for t in range(count)]
    images = []
    for t in range(count):
        figure = Figure(figsize=(11.5, 5.6), dpi=90, layout="constrained")
        grid = figure.add_gridspec(2, 5, height_ratios=[1.0, 0.9])
        axes = [figure.add_subplot(grid[0, c]) for c in range(5)]
        _draw_row(axes, panels, maps, t, flow, labels[t])
        for ax, (name, _) in zip(axes, _COLUMNS):
            ax.set_title(name, fontsize=9)
        _draw_wheel(figure.add_subplot(grid[1, 0]), panels, flow)
        _draw_attention(
            figure.add_subplot(grid[1, 1:3]), figure.add_subplot(grid[1, 3:5]), panels, t
        )
        figure.suptitle(_caption(maps, title, panels.frames.shape[1]), fontsize=9)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        buffer.seek(0)
        with Image.open(buffer) as image:
            images.append(image.convert("RGB").quantize(colors=255))
    return images


@dataclass
class VisualizationResult:
    """Outcome of :func:`visualize`: the file written and what it shows."""

    path: Path
    maps: TCMMaps
    top_label: str
    top_probability: float


def visualize(
    checkpoint: str | os.PathLike | dict | Predictor,
    input_path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    flow: str = "both",
    stage: str | None = None,
    device: str = "cpu",
    gif_frame_ms: int = 600,
    allow_modules: Iterable[str] = (),
) -> VisualizationResult:
    """Draw TCM's fields and attention for one input into ``out`` (``.png`` or ``.gif``).

    Args:
        checkpoint: a project checkpoint (path or dict), or a :class:`Predictor`.
        input_path: a video file or a frame folder.
        out: image to write; the suffix chooses PNG (every frame in one figure) or GIF (one
            frame per sampled frame).
        flow: ``"color"`` (HSV colour wheel), ``"arrows"`` (on a coarse grid over the dimmed
            frame) or ``"both"``.
        stage: which TCM layer, for models with several (default: the first).
        device: where the model runs.
        gif_frame_ms: display time of a GIF frame.
        allow_modules: modules a user's backbone may be imported from
            (:mod:`tcm.models.from_checkpoint`).

    Returns:
        A :class:`VisualizationResult`.
    """
    out = check_output_file(out, "output", suffixes=(".png", ".gif"))
    suffix = out.suffix.lower()
    if isinstance(checkpoint, Predictor):
        predictor = checkpoint
    else:
        predictor = Predictor(checkpoint, device, allow_modules=allow_modules)
    prep = predictor.preprocessing
    uint8_clip = read_clip(input_path, prep)  # (V*T, 3, S, S)
    clip = to_model_input(uint8_clip, prep)
    maps = collect_tcm_maps(predictor.model, clip, stage)
    probabilities = maps.logits.softmax(dim=0)
    best = int(probabilities.argmax())
    label, probability = predictor.classes[best], float(probabilities[best])
    indices = sampled_frame_indices(input_path, prep)[0]
    frame_labels = [f"t={t}  (frame {int(i)})" for t, i in enumerate(indices)]
    title = f"{Path(input_path).name}: {label} ({probability:.1%})"
    frames = uint8_clip[: prep.num_segments]
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".png":
        figure = render_figure(frames, maps, flow=flow, title=title, frame_labels=frame_labels)
        figure.savefig(out)
    else:
        images = render_gif_frames(frames, maps, flow=flow, title=title, frame_labels=frame_labels)
        images[0].save(out, save_all=True, append_images=images[1:], duration=gif_frame_ms, loop=0)
    logger.info("wrote %s", out)
    return VisualizationResult(out, maps, label, probability)
