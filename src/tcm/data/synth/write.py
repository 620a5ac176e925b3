"""Writing the synthetic data set: clips encoded as H.264 MP4, lists, classes and settings."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import av
import numpy as np

from tcm.data.reencode import check_settings
from tcm.data.synth.motion import CLASS_SPECS, DEFAULT_CLASSES, resolve_class_names
from tcm.data.synth.render import clip_rng, render_clip
from tcm.errors import OutputError
from tcm.utils.parallel import map_in_processes

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


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
