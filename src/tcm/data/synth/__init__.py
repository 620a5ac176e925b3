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

Modules: :mod:`~tcm.data.synth.motion` (the classes and the actor's path of each),
:mod:`~tcm.data.synth.render` (drawing a clip's frames), :mod:`~tcm.data.synth.write` (encoding
clips and writing the data set's files).
"""

from tcm.data.synth.motion import (
    CLASS_SPECS,
    DEFAULT_CLASSES,
    GROUPS,
    ClassSpec,
    ObjectTrack,
    resolve_class_names,
)
from tcm.data.synth.render import (
    NOISE_STD,
    SHAPES,
    ObjectLook,
    clip_rng,
    draw_object,
    random_look,
    render_background,
    render_clip,
)
from tcm.data.synth.write import (
    SPLITS,
    SynthConfig,
    SynthSummary,
    clip_path,
    read_groups,
    write_synth_dataset,
    write_video,
)

__all__ = [
    "CLASS_SPECS",
    "DEFAULT_CLASSES",
    "GROUPS",
    "NOISE_STD",
    "SHAPES",
    "SPLITS",
    "ClassSpec",
    "ObjectLook",
    "ObjectTrack",
    "SynthConfig",
    "SynthSummary",
    "clip_path",
    "clip_rng",
    "draw_object",
    "random_look",
    "read_groups",
    "render_background",
    "render_clip",
    "resolve_class_names",
    "write_synth_dataset",
    "write_video",
]
