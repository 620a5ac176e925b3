"""A synthetic visual-tempo data set: action classes that differ only in how things move.

Each clip shows one *actor* (a textured shape of random kind, colour and orientation) on a
textured random background, with one or more smaller *distractors* moving on their own, light
sensor noise and a small camera shake. The class is carried by the actor's motion alone:

- ``direction``: ``moving left`` / ``right`` / ``up`` / ``down``: a straight path at constant
  speed. Which way it goes is visible only across frames.
- ``tempo``: ``moving slowly`` / ``moving at medium speed`` / ``moving quickly``: the same
  bouncing motion at 1.6, 2.56 and 4.1 times the direction classes' speed. Headings lie near a
  diagonal and every speed band is apart from the others and from the direction classes', so
  a tempo clip never looks like a direction clip, and telling the tempo classes apart takes
  measuring the speed.
- ``order``: ``approaching`` / ``receding`` (the actor grows / shrinks) and ``appearing`` /
  ``disappearing`` (it fades in / out): the same values traversed in opposite temporal order.

Within a group, **the distribution of a single frame is the same for every class**, so no frame
on its own gives the class away (a frame-level classifier stays at chance within each group;
``tests/data/test_synth.py`` checks it). How that is ensured:

- direction: the actor starts uniformly anywhere its whole path stays inside the frame, so a
  left mover's positions are a right mover's, mirrored in time; the coordinate across the
  motion is drawn from the along-motion coordinate's distribution (a point of an independent
  path at a random frame), so horizontal and vertical movers look alike too.
- tempo: positions bounce between the walls of a box; a uniform start on the unfolded period
  keeps the position uniform in the box at every frame, whatever the speed. Frames are sampled
  at an instant (no motion blur), so speed leaves no trace in one frame.
- order: sizes and opacities run through the same ranges in both directions; the classes whose
  size changes draw a constant opacity from the distribution of the fading classes' opacities,
  and vice versa, so (size, opacity) of a frame has one distribution for all four.

Frame layout: ``(F, S, S, 3)`` uint8 RGB arrays, ``F`` frames of ``S x S`` pixels (``S``
even, as H.264 in yuv420p requires). Positions are ``(x, y)`` in pixels, ``y`` pointing down.

Writing a data set (what ``tcm synth`` does)::

    from tcm.data.synth import SynthConfig, write_synth_dataset
    summary = write_synth_dataset("data/synth", SynthConfig(clips_per_class=60, seed=0))
    summary.lists["train"]   # data/synth/train.txt, lines "videos/moving_left/moving_left_0000.mp4 0"

The folder then holds ``classes.txt``, ``train.txt``, ``val.txt``, ``test.txt`` (unless
``test_fraction=0``), ``groups.json`` (class name -> group), ``synth.json`` (the configuration)
and ``videos/<class>/<class>_<index>.mp4`` (H.264 in MP4). The lists use the project's format,
so :func:`tcm.data.build_dataset` reads them with ``root`` = the output folder.

Every clip is a function of ``(seed, class name, index)`` only: the same seed writes
byte-identical files whatever the number of workers or the other classes chosen.
"""

from __future__ import annotations

import colorsys
import json
import logging
import os
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import av
import numpy as np

from tcm.data.reencode import check_settings
from tcm.errors import OutputError
from tcm.utils.parallel import map_in_processes

logger = logging.getLogger(__name__)

GROUPS = ("direction", "tempo", "order")
SPLITS = ("train", "val", "test")

# --------------------------------------------------------------------------------------------
# Ranges of the motions, as fractions of the frame side S (so any size looks the same).
# --------------------------------------------------------------------------------------------

#: Actor radius of the direction and tempo classes (constant through a clip).
ACTOR_RADIUS = (0.09, 0.14)
#: Path length over the whole clip of the direction classes: about 1/8 of it between the frames
#: a TSN sampler with 8 segments picks (3-4 px per sampled frame at S = 64, 5-7 px at S = 96).
DIRECTION_TRAVEL = (0.38, 0.55)
#: Speeds of the tempo classes: TEMPO_STEP, its square and its cube times the direction
#: classes' speed. 1.6 keeps the speed bands of neighbouring classes, and of the direction
#: classes, apart (0.55 / 0.38 < 1.6).
TEMPO_STEP = 1.6
#: Tempo classes head within this angle (radians) of a diagonal, never along an axis.
TEMPO_HEADING_SPREAD = np.pi / 8
#: Actor radius at the small and at the large end of the approaching / receding classes.
ORDER_RADIUS_SMALL = (0.07, 0.10)
ORDER_RADIUS_LARGE = (0.22, 0.28)
#: Opacity at the faint and at the opaque end of the appearing / disappearing classes.
ORDER_ALPHA_FAINT = (0.0, 0.1)
ORDER_ALPHA_OPAQUE = (0.9, 1.0)
#: Slow drift of the order classes' actor (path length over the clip), the same for all four.
ORDER_DRIFT = (0.0, 0.12)
#: Distractors: radius and path length over the clip (any direction, bouncing).
DISTRACTOR_RADIUS = (0.035, 0.06)
DISTRACTOR_TRAVEL = (0.1, 1.2)
#: Standard deviation of the per-pixel sensor noise (0..1 intensities).
NOISE_STD = 0.012

SHAPES = ("disc", "square", "triangle", "diamond", "hexagon", "ring")


@dataclass(frozen=True)
class ClassSpec:
    """One class of the synthetic data set.

    Attributes:
        name: class name as written to ``classes.txt``.
        group: which property of the motion tells the class apart (one of :data:`GROUPS`).
        description: what the actor does.
        track: ``track(rng, frames, size) -> ObjectTrack``, the actor's path.
    """

    name: str
    group: str
    description: str
    track: Callable[[np.random.Generator, int, int], ObjectTrack] = field(repr=False)


@dataclass
class ObjectTrack:
    """Where an object is and how it looks at every frame.

    Attributes:
        centre: ``(F, 2)`` float, ``(x, y)`` in pixels of the frame.
        radius: ``(F,)`` float, pixels (circumradius of the shape).
        alpha: ``(F,)`` float in ``[0, 1]``, opacity.
    """

    centre: np.ndarray
    radius: np.ndarray
    alpha: np.ndarray


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
# Paths of the actor, one function per group. Each takes (rng, F, S) and returns a track.
# --------------------------------------------------------------------------------------------


def _uniform(rng: np.random.Generator, bounds: tuple[float, float], size: int) -> float:
    """A draw from ``U(bounds) * size``."""
    return float(rng.uniform(*bounds)) * size


def _ramp(rng: np.random.Generator, frames: int, low: float, high: float, travel: float):
    """Positions ``(F,)`` moving at constant speed from a uniform start, inside ``[low, high]``.

    The path covers ``travel`` pixels over the clip, increasing; it starts uniformly where the
    whole path fits, so the reversed path (``low + high - p``) has the same distribution of
    positions over the frames.
    """
    start = rng.uniform(low, high - travel)
    return start + travel * np.linspace(0.0, 1.0, frames)


def _bounce(
    rng: np.random.Generator,
    frames: int,
    low: float,
    high: float,
    travel: float,
    heading: float | None = None,
) -> np.ndarray:
    """Positions ``(F, 2)`` bouncing between the walls of ``[low, high]^2`` at constant speed.

    The path covers ``travel`` pixels over the clip along ``heading`` (radians; uniform when
    not given). The start is uniform on the unfolded period ``[0, 2 B)`` of each axis
    (``B = high - low``), which makes the position uniform in the box at every frame, whatever
    the speed.
    """
    width = high - low
    angle = rng.uniform(0.0, 2.0 * np.pi) if heading is None else heading
    velocity = travel / max(frames - 1, 1) * np.array([np.cos(angle), np.sin(angle)])
    start = rng.uniform(0.0, 2.0 * width, size=2)
    unfolded = np.mod(start + velocity * np.arange(frames)[:, None], 2.0 * width)  # (F, 2)
    return low + np.where(unfolded > width, 2.0 * width - unfolded, unfolded)


def _direction_track(rng: np.random.Generator, frames: int, size: int, heading: str):
    """Straight path towards ``heading`` (``left``, ``right``, ``up`` or ``down``)."""
    radius = _uniform(rng, ACTOR_RADIUS, size)
    margin = ACTOR_RADIUS[1] * size  # the largest actor stays whole inside the frame
    low, high = margin, size - 1 - margin

    def path() -> np.ndarray:
        return _ramp(rng, frames, low, high, _uniform(rng, DIRECTION_TRAVEL, size))

    along = path()
    across = path()[rng.integers(frames)]  # distributed like `along` at a random frame
    if heading in ("left", "up"):
        along = low + high - along
    if heading in ("left", "right"):
        centre = np.stack([along, np.full(frames, across)], axis=1)
    else:
        centre = np.stack([np.full(frames, across), along], axis=1)
    return ObjectTrack(centre, np.full(frames, radius), np.ones(frames))


def _tempo_track(rng: np.random.Generator, frames: int, size: int, speed: float):
    """Bouncing path heading near a diagonal, ``speed`` times the direction classes' speed."""
    radius = _uniform(rng, ACTOR_RADIUS, size)
    margin = ACTOR_RADIUS[1] * size
    travel = _uniform(rng, DIRECTION_TRAVEL, size) * speed
    diagonal = np.pi / 4 + np.pi / 2 * int(rng.integers(4))
    heading = diagonal + rng.uniform(-TEMPO_HEADING_SPREAD, TEMPO_HEADING_SPREAD)
    centre = _bounce(rng, frames, margin, size - 1 - margin, travel, heading)
    return ObjectTrack(centre, np.full(frames, radius), np.ones(frames))


def _order_track(rng: np.random.Generator, frames: int, size: int, change: str, reverse: bool):
    """Size (``change="radius"``) or opacity (``"alpha"``) running one way, or reversed."""
    centre = _bounce(rng, frames, 0.3 * size, 0.7 * size, _uniform(rng, ORDER_DRIFT, size))
    progress = np.linspace(0.0, 1.0, frames)
    # Radius grows geometrically (as the image of an object coming closer), opacity linearly.
    small = _uniform(rng, ORDER_RADIUS_SMALL, size)
    large = _uniform(rng, ORDER_RADIUS_LARGE, size)
    radius = small * (large / small) ** progress
    faint = rng.uniform(*ORDER_ALPHA_FAINT)
    opaque = rng.uniform(*ORDER_ALPHA_OPAQUE)
    alpha = faint + (opaque - faint) * progress
    # The property that does not change takes its value at a random frame: a constant drawn
    # from the same distribution the changing classes show over their frames.
    if change == "radius":
        alpha = np.full(frames, alpha[rng.integers(frames)])
        radius = radius[::-1] if reverse else radius
    else:
        radius = np.full(frames, radius[rng.integers(frames)])
        alpha = alpha[::-1] if reverse else alpha
    return ObjectTrack(centre, radius.copy(), alpha.copy())


def _spec(name: str, group: str, description: str, track: Callable, **options) -> ClassSpec:
    return ClassSpec(name, group, description, partial(track, **options))


#: Every class the generator knows, by name, in the default order.
CLASS_SPECS: dict[str, ClassSpec] = {
    spec.name: spec
    for spec in (
        _spec(
            "moving left", "direction", "straight path leftwards", _direction_track, heading="left"
        ),
        _spec(
            "moving right",
            "direction",
            "straight path rightwards",
            _direction_track,
            heading="right",
        ),
        _spec("moving up", "direction", "straight path upwards", _direction_track, heading="up"),
        _spec(
            "moving down", "direction", "straight path downwards", _direction_track, heading="down"
        ),
        _spec(
            "moving slowly",
            "tempo",
            f"bouncing near a diagonal, {TEMPO_STEP:g}x the direction classes' speed",
            _tempo_track,
            speed=TEMPO_STEP,
        ),
        _spec(
            "moving at medium speed",
            "tempo",
            f"bouncing near a diagonal, {TEMPO_STEP**2:g}x the direction classes' speed",
            _tempo_track,
            speed=TEMPO_STEP**2,
        ),
        _spec(
            "moving quickly",
            "tempo",
            f"bouncing near a diagonal, {TEMPO_STEP**3:g}x the direction classes' speed",
            _tempo_track,
            speed=TEMPO_STEP**3,
        ),
        _spec(
            "approaching",
            "order",
            "growing from small to large",
            _order_track,
            change="radius",
            reverse=False,
        ),
        _spec(
            "receding",
            "order",
            "shrinking from large to small",
            _order_track,
            change="radius",
            reverse=True,
        ),
        _spec("appearing", "order", "fading in", _order_track, change="alpha", reverse=False),
        _spec("disappearing", "order", "fading out", _order_track, change="alpha", reverse=True),
    )
}
#: The default class list (all of them: 4 direction, 3 tempo, 4 order).
DEFAULT_CLASSES: tuple[str, ...] = tuple(CLASS_SPECS)


def resolve_class_names(names: Sequence[str]) -> tuple[str, ...]:
    """Canonical class names, accepting ``_`` for spaces and any case; unknown names raise.

    Example:
        >>> resolve_class_names(["Moving_Left", "receding"])
        ('moving left', 'receding')
    """
    resolved = []
    for name in names:
        key = name.strip().replace("_", " ").lower()
        if key not in CLASS_SPECS:
            raise ValueError(f"unknown synthetic class {name!r}; known: {', '.join(CLASS_SPECS)}")
        if key in resolved:
            raise ValueError(f"class {key!r} given twice")
        resolved.append(key)
    return tuple(resolved)


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
        radius = _uniform(rng, DISTRACTOR_RADIUS, size)
        travel = _uniform(rng, DISTRACTOR_TRAVEL, size)
        centre = _bounce(rng, frames, 0.05 * size, 0.95 * size, travel)
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


# --------------------------------------------------------------------------------------------
# Writing videos and the data set
# --------------------------------------------------------------------------------------------


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray,
    *,
    fps: int = 12,
    crf: int = 18,
    preset: str = "fast",
) -> None:
    """Encode ``frames`` ``(F, H, W, 3)`` uint8 RGB to H.264 (yuv420p) in MP4 with PyAV.

    One encoder thread and fixed options: the same frames give a byte-identical file. x264's
    macroblock-tree rate control is off: with it, the first clip a process encodes sometimes
    differs from later encodes of the same frames (observed with the libx264 of PyAV 18), and
    it brings nothing to clips of a few dozen frames. ``H`` and ``W`` must be even (yuv420p).
    """
    count, height, width, channels = frames.shape
    if channels != 3 or height % 2 or width % 2:
        raise ValueError(f"need (F, H, W, 3) frames with even H and W, got {frames.shape}")
    with av.open(str(path), "w") as container:
        stream = container.add_stream(
            "libx264",
            rate=fps,
            options={"crf": str(crf), "preset": preset, "x264-params": "mbtree=0"},
        )
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        for image in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    logger.debug("wrote %s (%d frames)", path, count)


@dataclass(frozen=True)
class SynthConfig:
    """What :func:`write_synth_dataset` generates.

    Attributes:
        classes: class names (see :data:`CLASS_SPECS`); their order fixes the label indices.
        clips_per_class: clips of each class, over all splits.
        size: frame side ``S`` in pixels (even).
        frames: frames per clip ``F``; a TSN sampler with ``T`` segments sees about ``1/T``
            of the motion between the frames it picks.
        fps: frame rate written to the files (only the timestamps depend on it).
        seed: every clip is a function of ``(seed, class name, index)``.
        val_fraction: share of each class's clips in ``val.txt``.
        test_fraction: share of each class's clips in ``test.txt`` (0: no test split); the
            rest goes to ``train.txt``. Every split that exists holds every class.
        max_distractors: each clip has ``1..max_distractors`` distractors.
        jitter: camera shake, the largest whole-frame shift in pixels per frame.
        crf: x264 constant rate factor (lower is better quality, 18 is nearly lossless).
        preset: x264 preset.
    """

    classes: tuple[str, ...] = DEFAULT_CLASSES
    clips_per_class: int = 60
    size: int = 64
    frames: int = 16
    fps: int = 12
    seed: int = 0
    val_fraction: float = 0.2
    test_fraction: float = 0.1
    max_distractors: int = 2
    jitter: int = 1
    crf: int = 18
    preset: str = "fast"

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", resolve_class_names(self.classes))
        if not self.classes:
            raise ValueError("no classes given")
        if self.size % 2 or self.size < 16:
            raise ValueError(f"size must be even and at least 16 (H.264 yuv420p), got {self.size}")
        if self.frames < 2:
            raise ValueError(f"need at least 2 frames per clip, got {self.frames}")
        if self.fps < 1:
            raise ValueError(f"fps must be at least 1, got {self.fps}")
        check_settings(crf=self.crf)
        if not (0 <= self.val_fraction < 1 and 0 <= self.test_fraction < 1):
            raise ValueError("val_fraction and test_fraction must lie in [0, 1)")
        counts = self.split_sizes()
        if counts["train"] < 1 or any(
            counts[split] < 1 for split, share in self._shares().items() if share > 0
        ):
            raise ValueError(
                f"{self.clips_per_class} clips per class cannot give every split "
                f"(val {self.val_fraction}, test {self.test_fraction}) at least one clip of "
                "each class; raise clips_per_class"
            )

    def _shares(self) -> dict[str, float]:
        return {"val": self.val_fraction, "test": self.test_fraction}

    def split_sizes(self) -> dict[str, int]:
        """Clips of each class per split: ``{"train": n, "val": n, "test": n}``."""
        val = round(self.clips_per_class * self.val_fraction)
        test = round(self.clips_per_class * self.test_fraction)
        if self.val_fraction > 0:
            val = max(val, 1)
        if self.test_fraction > 0:
            test = max(test, 1)
        return {"train": self.clips_per_class - val - test, "val": val, "test": test}

    def groups(self) -> dict[str, str]:
        """Class name -> group, for the chosen classes."""
        return {name: CLASS_SPECS[name].group for name in self.classes}


@dataclass
class SynthSummary:
    """What :func:`write_synth_dataset` wrote.

    Attributes:
        root: the output folder (the list paths are relative to it).
        classes: path of ``classes.txt``; ``groups``: path of ``groups.json``.
        lists: split name -> path of its list file (``train``, ``val`` and maybe ``test``).
        counts: split name -> number of clips.
        seconds: wall time of the generation.
    """

    root: Path
    classes: Path
    groups: Path
    lists: dict[str, Path] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def clip_path(class_name: str, index: int) -> str:
    """Relative path of a clip in the data set, e.g. ``videos/moving_left/moving_left_0003.mp4``."""
    slug = class_name.replace(" ", "_")
    return f"videos/{slug}/{slug}_{index:04d}.mp4"


def _write_clip(job: tuple[SynthConfig, str, int, str]) -> str:
    config, class_name, index, path = job
    frames = render_clip(
        class_name,
        clip_rng(config.seed, class_name, index),
        size=config.size,
        frames=config.frames,
        max_distractors=config.max_distractors,
        jitter=config.jitter,
    )
    write_video(path, frames, fps=config.fps, crf=config.crf, preset=config.preset)
    return path


def _plan_clips(root: Path, config: SynthConfig) -> tuple[dict[str, list[str]], list[tuple]]:
    """The list lines of each split and the clips to render (``_write_clip`` jobs); creates
    the class folders."""
    sizes = config.split_sizes()
    records: dict[str, list[str]] = {split: [] for split in SPLITS if sizes[split] > 0}
    jobs = []
    for label, class_name in enumerate(config.classes):
        (root / clip_path(class_name, 0)).parent.mkdir(parents=True, exist_ok=True)
        for index in range(config.clips_per_class):
            relative = clip_path(class_name, index)
            split = (
                "train"
                if index < sizes["train"]
                else "val"
                if index < sizes["train"] + sizes["val"]
                else "test"
            )
            records[split].append(f"{relative} {label}")
            jobs.append((config, class_name, index, str(root / relative)))

    return records, jobs


def write_synth_dataset(
    out: str | os.PathLike,
    config: SynthConfig | None = None,
    *,
    workers: int | None = None,
    progress: bool = False,
) -> SynthSummary:
    """Render and encode the data set of ``config`` under ``out``; see the module docstring.

    Args:
        out: output folder (created; files of the same names written by an earlier run are
            overwritten; list or class files of anything else are not: an error).
        config: what to generate (defaults: :class:`SynthConfig`).
        workers: parallel processes (default: all CPUs); the files do not depend on it.
        progress: show a progress bar (tqdm) on stderr.

    Returns:
        A :class:`SynthSummary` with the paths written.

    Example:
        >>> summary = write_synth_dataset("data/synth", SynthConfig(seed=1), workers=2)  # doctest: +SKIP
        >>> summary.counts                                                             # doctest: +SKIP
        {'train': 420, 'val': 120, 'test': 60}
    """
    config = config or SynthConfig()
    started = time.perf_counter()
    root = Path(out)
    _check_not_foreign(root)
    root.mkdir(parents=True, exist_ok=True)
    records, jobs = _plan_clips(root, config)
    workers = workers or os.cpu_count() or 1
    map_in_processes(
        _write_clip,
        jobs,
        workers=workers,
        progress=progress,
        desc="synthesising clips",
        unit="clip",
    )

    summary = SynthSummary(root, root / "classes.txt", root / "groups.json")
    settings = asdict(config)
    settings["classes"] = list(config.classes)
    # synth.json first: it marks the folder's other files as this module's.
    (root / "synth.json").write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    summary.classes.write_text("".join(f"{name}\n" for name in config.classes), encoding="utf-8")
    summary.groups.write_text(json.dumps(config.groups(), indent=2) + "\n", encoding="utf-8")
    for split in SPLITS:
        path = root / f"{split}.txt"
        if split in records:
            path.write_text("".join(f"{line}\n" for line in records[split]), encoding="utf-8")
            summary.lists[split] = path
            summary.counts[split] = len(records[split])
        elif path.exists():
            path.unlink()  # a stale split of an earlier run would not match this one
    summary.seconds = time.perf_counter() - started
    logger.info(
        "%d clips of %d classes in %s in %.1f s (%s)",
        len(jobs),
        len(config.classes),
        root,
        summary.seconds,
        ", ".join(f"{split} {count}" for split, count in summary.counts.items()),
    )
    return summary


# Files of a data set this module writes; synth.json marks a folder as its own.
_OWN_FILES = ("classes.txt", "groups.json", *(f"{split}.txt" for split in SPLITS))


def _check_not_foreign(root: Path) -> None:
    """An :class:`~tcm.errors.OutputError` when ``root`` holds list or class files that an
    earlier ``write_synth_dataset`` did not write (no ``synth.json`` beside them)."""
    if not root.is_dir() or (root / "synth.json").is_file():
        return
    foreign = [name for name in _OWN_FILES if (root / name).exists()]
    if foreign:
        raise OutputError(
            f"{root}: holds {', '.join(foreign)} of another data set (no synth.json); "
            "writing there would replace them; choose another --out"
        )


def read_groups(path: str | os.PathLike) -> dict[str, str]:
    """Read ``groups.json``: class name -> group (``direction``, ``tempo`` or ``order``)."""
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)
