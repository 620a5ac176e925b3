"""One's own videos sorted into a folder per class -> the project's list files.

Two layouts are read (``ROOT`` is the folder given):

- class folders, ``ROOT/<class>/<clip>``: the split is made here, per class, by a hash of each
  clip's own path relative to ``ROOT`` and a seed (:func:`held_out_side`), so the same files
  always land on the same side and adding files never moves the others;
- split folders, ``ROOT/train/<class>/<clip>`` and ``ROOT/val/<class>/<clip>`` (and
  ``ROOT/test/...``): used as they are.

A clip is a video file (one of :data:`~tcm.data.annotations.VIDEO_EXTENSIONS`) or a frame
folder (a folder holding images, listed with its frame count). A class folder may hold clips
in sub-folders. Hidden names (starting with ``.``) are ignored; symbolic links are followed,
but a folder reached twice (a link loop) is walked once. Every video is opened and its first
frame decoded unless ``check=False``; what cannot be read, files that are no media, classes
with no clip and classes too small to split are reported as :class:`FolderProblem` s.

Example:
    >>> scan = scan_class_folders("clips", val_fraction=0.2, seed=0)  # doctest: +SKIP
    >>> scan.classes, {split: len(records) for split, records in scan.splits.items()}  # doctest: +SKIP
    (['jump', 'run', 'walk'], {'train': 96, 'val': 24})
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from tcm.data.annotations import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, VideoRecord
from tcm.data.bad_video import BadVideoError, check_media_path

logger = logging.getLogger(__name__)

SPLIT_FOLDERS = ("train", "val", "test")
# Problems, by kind (the first word of the report line).
UNREADABLE = "unreadable"
NOT_MEDIA = "not a video"
EMPTY_CLASS = "empty class"
TOO_SMALL = "too few clips to split"
ONLY_IN = "class missing from train"


@dataclass(frozen=True)
class FolderProblem:
    """Something of the folder left out of (or not split in) the lists: ``path`` relative to
    the root, ``kind`` (one of the constants above) and a detail."""

    path: str
    kind: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.path}: {self.kind}" + (f" ({self.detail})" if self.detail else "")


@dataclass
class FolderScan:
    """The lists of a folder of class folders.

    Attributes:
        classes: class names, sorted (index = position); classes with no clip are left out.
        splits: ``"train"``, ``"val"`` (and ``"test"``) -> records, paths relative to the root.
        problems: what was left out or could not be split, in path order.
        layout: ``"class folders"`` (split here) or ``"split folders"`` (used as they are).
    """

    classes: list[str]
    splits: dict[str, list[VideoRecord]]
    problems: list[FolderProblem] = field(default_factory=list)
    layout: str = "class folders"


def held_out_side(relative_path: str, seed: int, val_fraction: float, test_fraction: float) -> str:
    """``"val"``, ``"test"`` or ``"train"`` for one clip, from its own path alone.

    The SHA-256 of ``"seed:path"`` read as a number in ``[0, 1)`` falls in ``[0, val)`` for
    validation, ``[val, val + test)`` for test, and above for training: stable across runs,
    machines and Python versions, and unchanged when other files come or go.
    """
    digest = hashlib.sha256(f"{seed}:{relative_path}".encode()).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64
    if position < val_fraction:
        return "val"
    if position < val_fraction + test_fraction:
        return "test"
    return "train"


def _hidden(name: str) -> bool:
    return name.startswith(".")


def _images(folder: Path) -> int:
    with os.scandir(folder) as entries:
        return sum(
            1
            for e in entries
            if not _hidden(e.name) and e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS)
        )


def _check_video(path: Path) -> None:
    """Open the video and decode its first frame (``BadVideoError`` when that fails)."""
    from tcm.data.media import open_media

    check_media_path(path)
    with open_media(path) as reader:
        if reader.num_frames < 1:
            raise BadVideoError(path, "empty", "no frame")
        reader.get_frames([0])


def _class_clips(
    folder: Path, root: Path, check: bool, problems: list[FolderProblem]
) -> list[tuple[str, int | None]]:
    """The clips below one class folder: ``(path relative to root, frames or None)``, sorted."""
    clips: list[tuple[str, int | None]] = []
    seen: set[str] = set()
    for current, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(current)
        if real in seen:  # a link back to a folder already walked
            dirs.clear()
            continue
        seen.add(real)
        here = Path(current)
        try:
            frames = _images(here)
        except OSError as error:
            problems.append(FolderProblem(str(here.relative_to(root)), UNREADABLE, str(error)))
            dirs.clear()
            continue
        if frames and here != folder:  # a frame folder: one clip
            clips.append((here.relative_to(root).as_posix(), frames))
            dirs.clear()
            continue
        dirs[:] = sorted(d for d in dirs if not _hidden(d) and not _loops(here / d, real))
        for name in sorted(files):
            if _hidden(name):
                continue
            path = here / name
            relative = path.relative_to(root).as_posix()
            if not name.lower().endswith(VIDEO_EXTENSIONS):
                if here != folder or not name.lower().endswith(IMAGE_EXTENSIONS):
                    what = f"{path.suffix or 'no'} extension"
                    problems.append(FolderProblem(relative, NOT_MEDIA, what))
                continue
            if check:
                try:
                    _check_video(path)
                except BadVideoError as error:
                    problems.append(FolderProblem(relative, UNREADABLE, error.reason))
                    continue
            clips.append((relative, None))
        if here == folder and frames:  # images lying loose in the class folder itself
            problems.append(
                FolderProblem(
                    here.relative_to(root).as_posix(), NOT_MEDIA, f"{frames} loose images"
                )
            )
    return sorted(clips)


def _loops(folder: Path, parent_real: str) -> bool:
    """Whether ``folder`` (a link, perhaps) leads back to a folder above it: walking it would
    never end (``os.walk`` with links followed does not notice)."""
    real = os.path.realpath(folder)
    return real == parent_real or parent_real.startswith(real.rstrip(os.sep) + os.sep)


def _subfolders(folder: Path) -> list[str]:
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if not _hidden(e.name) and e.is_dir())


def _is_split_layout(root: Path) -> bool:
    names = set(_subfolders(root))
    return {"train", "val"} <= names


def _split_one_class(
    name: str,
    clips: list[tuple[str, int | None]],
    seed: int,
    fractions: dict[str, float],
    problems: list[FolderProblem],
) -> dict[str, list[tuple[str, int | None]]]:
    """Hash each clip to a side; a side asked for that gets no clip takes the clip of the
    fullest side whose hash lies nearest to it (deterministic, and rarely needed)."""
    wanted = [split for split, fraction in fractions.items() if fraction > 0]
    sides: dict[str, list[tuple[str, int | None]]] = {"train": [], **{s: [] for s in wanted}}
    if len(clips) < 1 + len(wanted):
        problems.append(
            FolderProblem(name, TOO_SMALL, f"{len(clips)} clips, all used for training")
        )
        sides["train"] = list(clips)
        return sides
    for clip in clips:
        side = held_out_side(clip[0], seed, fractions.get("val", 0.0), fractions.get("test", 0.0))
        sides[side].append(clip)
    for side in ("train", *wanted):
        if not sides[side]:
            donor = max(sides, key=lambda s: len(sides[s]))
            moved = min(
                sides[donor],
                key=lambda c: hashlib.sha256(f"{seed}:{side}:{c[0]}".encode()).digest(),
            )
            sides[donor].remove(moved)
            sides[side].append(moved)
    return {side: sorted(items) for side, items in sides.items()}


def scan_class_folders(
    root: str | os.PathLike,
    *,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    seed: int = 0,
    check: bool = True,
) -> FolderScan:
    """Read a folder of class folders (or of split folders of class folders) into lists.

    Args:
        root: the folder; list paths are relative to it (train with ``data.root=root``).
        val_fraction: share of each class held out for validation (class folders only).
        test_fraction: share held out for a test list (class folders only; 0: none).
        seed: changes which clips are held out.
        check: open every video and decode its first frame; unreadable ones are left out.

    Returns:
        A :class:`FolderScan`.

    Raises:
        FileNotFoundError: ``root`` is not a folder.
        ValueError: the fractions are out of range, or no class folder holds a clip.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    for flag, value in (("--val-fraction", val_fraction), ("--test-fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{flag} must lie in [0, 1), got {value}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError("--val-fraction and --test-fraction leave nothing for training")
    problems: list[FolderProblem] = []
    if _is_split_layout(root):
        per_split = {
            split: {
                name: _class_clips(root / split / name, root, check, problems)
                for name in _subfolders(root / split)
            }
            for split in SPLIT_FOLDERS
            if (root / split).is_dir()
        }
        layout = "split folders"
    else:
        per_class = {
            name: _class_clips(root / name, root, check, problems) for name in _subfolders(root)
        }
        per_split = {"train": {}, "val": {}}
        if test_fraction > 0:
            per_split["test"] = {}
        fractions = {"val": val_fraction, "test": test_fraction}
        for name, clips in per_class.items():
            if clips:
                for side, items in _split_one_class(name, clips, seed, fractions, problems).items():
                    per_split[side][name] = items
            else:
                per_split["train"][name] = []
        layout = "class folders"
    names = sorted({name for classes in per_split.values() for name in classes})
    classes = []
    for name in names:
        if not any(per_split[split].get(name) for split in per_split):
            problems.append(FolderProblem(name, EMPTY_CLASS, "no readable clip; left out"))
            continue
        classes.append(name)
        if layout == "split folders" and not per_split["train"].get(name):
            problems.append(FolderProblem(name, ONLY_IN, "no training clip"))
    if not classes:
        raise ValueError(f"{root}: no class folder holds a readable video or frame folder")
    splits = {
        split: [
            VideoRecord(path, label, frames)
            for label, name in enumerate(classes)
            for path, frames in by_class.get(name, [])
        ]
        for split, by_class in per_split.items()
    }
    problems.sort(key=lambda problem: problem.path)
    for problem in problems:
        logger.debug("%s", problem)
    return FolderScan(classes, splits, problems, layout)
