"""Drawing a synthetic clip: background, textured shapes on their tracks, shake and noise.

Frames are ``(F, S, S, 3)``: uint8 RGB once rendered (float 0..1 while drawing).
"""

from __future__ import annotations

import colorsys
import zlib
from dataclasses import dataclass

import numpy as np

from tcm.data.synth.motion import CLASS_SPECS, ObjectTrack, bouncing_path, scaled_uniform

#: Distractors: radius and path length over the clip (any direction, bouncing).
DISTRACTOR_RADIUS = (0.035, 0.06)
DISTRACTOR_TRAVEL = (0.1, 1.2)
#: Standard deviation of the per-pixel sensor noise (0..1 intensities).
NOISE_STD = 0.012

SHAPES = ("disc", "square", "triangle", "diamond", "hexagon", "ring")


@dataclass
class ObjectLook:
    """Appearance of an object, constant through a clip.

    Attributes:
        shape: one of :data:`SHAPES`.
        colour: ``(3,)`` RGB in ``[0, 1]``.
        angle: orientation in radians.
        texture: ``(4,)`` stripes on the object in its own coordinates (so they move and scale
            with it): frequency along u and v (cycles per radius), phase, amplitude.
    """

    shape: str
    colour: np.ndarray
    angle: float
    texture: np.ndarray


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def _upsample(grid: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upsampling of a ``(g, g, C)`` grid to ``(size, size, C)``."""
    cells = grid.shape[0]
    coords = np.linspace(0.0, cells - 1.0, size)
    low = np.minimum(np.floor(coords).astype(np.int64), cells - 2)
    weight = (coords - low)[:, None]
    rows = grid[low] * (1 - weight[:, :, None]) + grid[low + 1] * weight[:, :, None]  # (n, g, C)
    return rows[:, low] * (1 - weight[None]) + rows[:, low + 1] * weight[None]  # (n, n, C)


def _random_colour(rng: np.random.Generator, saturation, value) -> np.ndarray:
    """``(3,)`` RGB of a uniform hue with saturation and value drawn from the given ranges."""
    hue = rng.uniform()
    return np.array(colorsys.hsv_to_rgb(hue, rng.uniform(*saturation), rng.uniform(*value)))


def render_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A textured random background ``(size, size, 3)`` float32 in ``[0, 1]``.

    Two muted colours blended by smooth noise, plus stripes of random orientation and
    frequency and finer noise, so that the background has structure everywhere (camera shake
    and correlation both see it).
    """
    first = _random_colour(rng, (0.1, 0.5), (0.25, 0.7))
    second = _random_colour(rng, (0.1, 0.5), (0.25, 0.7))
    cells = int(rng.integers(3, 7))
    blend = _upsample(rng.uniform(size=(cells, cells, 1)), size)  # (S, S, 1)
    image = first * (1 - blend) + second * blend  # (S, S, 3)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    angle = rng.uniform(0.0, np.pi)
    cycles = rng.uniform(2.0, 7.0)
    stripes = np.sin(
        2 * np.pi * cycles * (xs * np.cos(angle) + ys * np.sin(angle)) / size
        + rng.uniform(0, 2 * np.pi)
    )
    image = image + rng.uniform(0.03, 0.1) * stripes[:, :, None]
    fine_cells = max(size // 4, 2)
    fine = _upsample(rng.uniform(-1, 1, size=(fine_cells, fine_cells, 3)), size)
    image = image + rng.uniform(0.03, 0.07) * fine
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def _shape_distance(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Signed distance (approximately, in radii; negative inside) of ``shape`` at ``(u, v)``."""
    if shape == "disc":
        return np.hypot(u, v) - 1.0
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) - 0.75
    if shape == "diamond":
        return (np.abs(u) + np.abs(v) - 1.0) / np.sqrt(2.0)
    if shape == "ring":
        return np.abs(np.hypot(u, v) - 0.7) - 0.3
    if shape == "triangle":  # inradius 0.5, circumradius 1
        angles = np.pi / 2 + 2 * np.pi * np.arange(3) / 3
    elif shape == "hexagon":  # inradius 0.87, circumradius 1
        angles = np.pi * np.arange(6) / 3
    else:
        raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")
    inradius = 0.5 if shape == "triangle" else np.sqrt(3.0) / 2
    distances = [u * np.cos(a) + v * np.sin(a) for a in angles]
    return np.maximum.reduce(distances) - inradius


def random_look(rng: np.random.Generator) -> ObjectLook:
    """A random shape, saturated colour, orientation and surface stripes."""
    return ObjectLook(
        shape=SHAPES[int(rng.integers(len(SHAPES)))],
        colour=_random_colour(rng, (0.5, 1.0), (0.65, 1.0)),
        angle=float(rng.uniform(0.0, 2.0 * np.pi)),
        texture=np.array(
            [
                rng.uniform(-1.5, 1.5),
                rng.uniform(-1.5, 1.5),
                rng.uniform(0, 2 * np.pi),
                rng.uniform(0.1, 0.3),
            ]
        ),
    )


def draw_object(frames: np.ndarray, track: ObjectTrack, look: ObjectLook) -> None:
    """Composite one object onto ``frames`` ``(F, S, S, 3)`` float in place (anti-aliased)."""
    size = frames.shape[1]
    grid = np.arange(size, dtype=np.float64)
    dx = grid[None, None, :] - track.centre[:, 0, None, None]  # (F, 1, S)
    dy = grid[None, :, None] - track.centre[:, 1, None, None]  # (F, S, 1)
    radius = track.radius[:, None, None]  # (F, 1, 1)
    cos, sin = np.cos(look.angle), np.sin(look.angle)
    u = (cos * dx + sin * dy) / radius  # (F, S, S) in radii, object coordinates
    v = (cos * dy - sin * dx) / radius
    coverage = np.clip(0.5 - _shape_distance(look.shape, u, v) * radius, 0.0, 1.0)
    coverage *= track.alpha[:, None, None]  # (F, S, S)
    freq_u, freq_v, phase, amplitude = look.texture
    shade = 1.0 + amplitude * np.sin(2 * np.pi * (freq_u * u + freq_v * v) + phase)
    colour = look.colour[None, None, None, :] * shade[..., None]  # (F, S, S, 3)
    frames += coverage[..., None].astype(np.float32) * (colour - frames).astype(np.float32)


def clip_rng(seed: int, class_name: str, index: int) -> np.random.Generator:
    """The random generator of clip ``index`` of ``class_name``: a function of these alone.

    Keyed by the class *name* (not its position in the class list), so a class's clips do not
    change when other classes are added or left out.
    """
    class_key = zlib.crc32(class_name.encode("utf-8"))
    return np.random.default_rng([seed, class_key, index])


def render_clip(
    class_name: str,
    rng: np.random.Generator,
    *,
    size: int = 64,
    frames: int = 16,
    max_distractors: int = 2,
    jitter: int = 1,
) -> np.ndarray:
    """Render one clip of ``class_name``.

    Args:
        class_name: one of :data:`CLASS_SPECS`.
        rng: the clip's generator (see :func:`clip_rng`).
        size: frame side ``S`` in pixels.
        frames: number of frames ``F``.
        max_distractors: the clip has ``1..max_distractors`` distractors (0 for none).
        jitter: camera shake, the largest whole-frame shift in pixels per frame.

    Returns:
        ``(F, S, S, 3)`` uint8 RGB frames.

    Example:
        >>> clip = render_clip("moving left", clip_rng(0, "moving left", 0), size=64, frames=16)
        >>> clip.shape, clip.dtype
        ((16, 64, 64, 3), dtype('uint8'))
    """
    if class_name not in CLASS_SPECS:
        raise ValueError(f"unknown synthetic class {class_name!r}; known: {', '.join(CLASS_SPECS)}")
    if frames < 2 or size < 16:
        raise ValueError(f"need at least 2 frames of 16 x 16 pixels, got {frames} of {size}")
    actor = (CLASS_SPECS[class_name].track(rng, frames, size), random_look(rng))
    count = int(rng.integers(1, max_distractors + 1)) if max_distractors > 0 else 0
    distractors = []
    for _ in range(count):
        radius = scaled_uniform(rng, DISTRACTOR_RADIUS, size)
        travel = scaled_uniform(rng, DISTRACTOR_TRAVEL, size)
        centre = bouncing_path(rng, frames, 0.05 * size, 0.95 * size, travel)
        track = ObjectTrack(centre, np.full(frames, radius), np.ones(frames))
        in_front = bool(rng.integers(2))
        distractors.append((in_front, track, random_look(rng)))

    # Camera shake: frame t shows the scene shifted by -shake[t]; the background is rendered
    # with a border of `jitter` pixels and cropped.
    shake = rng.integers(-jitter, jitter + 1, size=(frames, 2)) if jitter > 0 else None
    background = render_background(rng, size + 2 * jitter)
    offsets = np.arange(size)
    if shake is None:
        video = np.repeat(background[None], frames, axis=0)
    else:
        rows = jitter + shake[:, 1, None] + offsets[None, :]  # (F, S)
        cols = jitter + shake[:, 0, None] + offsets[None, :]  # (F, S)
        video = background[rows[:, :, None], cols[:, None, :]]  # (F, S, S, 3)

    def shaken(track: ObjectTrack) -> ObjectTrack:
        if shake is None:
            return track
        return ObjectTrack(track.centre - shake, track.radius, track.alpha)

    for in_front, track, look in distractors:
        if not in_front:
            draw_object(video, shaken(track), look)
    draw_object(video, shaken(actor[0]), actor[1])
    for in_front, track, look in distractors:
        if in_front:
            draw_object(video, shaken(track), look)

    video += rng.normal(0.0, NOISE_STD, size=video.shape).astype(np.float32)
    return np.round(np.clip(video, 0.0, 1.0) * 255.0).astype(np.uint8)
