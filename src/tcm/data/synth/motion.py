"""The synthetic classes and the actor's path of each: which motion tells a class apart.

Ranges are fractions of the frame side ``S`` (so any size looks the same); positions are
``(x, y)`` in pixels, ``y`` pointing down.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np

GROUPS = ("direction", "tempo", "order")

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


# --------------------------------------------------------------------------------------------
# Paths of the actor, one function per group. Each takes (rng, F, S) and returns a track.
# --------------------------------------------------------------------------------------------


def scaled_uniform(rng: np.random.Generator, bounds: tuple[float, float], size: int) -> float:
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


def bouncing_path(
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
    radius = scaled_uniform(rng, ACTOR_RADIUS, size)
    margin = ACTOR_RADIUS[1] * size  # the largest actor stays whole inside the frame
    low, high = margin, size - 1 - margin

    def path() -> np.ndarray:
        return _ramp(rng, frames, low, high, scaled_uniform(rng, DIRECTION_TRAVEL, size))

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
    radius = scaled_uniform(rng, ACTOR_RADIUS, size)
    margin = ACTOR_RADIUS[1] * size
    travel = scaled_uniform(rng, DIRECTION_TRAVEL, size) * speed
    diagonal = np.pi / 4 + np.pi / 2 * int(rng.integers(4))
    heading = diagonal + rng.uniform(-TEMPO_HEADING_SPREAD, TEMPO_HEADING_SPREAD)
    centre = bouncing_path(rng, frames, margin, size - 1 - margin, travel, heading)
    return ObjectTrack(centre, np.full(frames, radius), np.ones(frames))


def _order_track(rng: np.random.Generator, frames: int, size: int, change: str, reverse: bool):
    """Size (``change="radius"``) or opacity (``"alpha"``) running one way, or reversed."""
    centre = bouncing_path(
        rng, frames, 0.3 * size, 0.7 * size, scaled_uniform(rng, ORDER_DRIFT, size)
    )
    progress = np.linspace(0.0, 1.0, frames)
    # Radius grows geometrically (as the image of an object coming closer), opacity linearly.
    small = scaled_uniform(rng, ORDER_RADIUS_SMALL, size)
    large = scaled_uniform(rng, ORDER_RADIUS_LARGE, size)
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
