"""Annotation files: the official formats of each dataset, and the list files of this project.

List files follow the convention of the field, one sample per line:

- ``relative/path label`` for a video file;
- ``relative/path num_frames label`` for a folder of JPEG frames (``num_frames`` counted on disk).

Paths are relative to a data root and may contain spaces (Kinetics class folders do): the last
one or two whitespace-separated fields are the integers, everything before them is the path.
``classes.txt`` holds one class name per line; a class index is its line number minus one.

The parsers of the official formats (:func:`parse_sthv1`, :func:`parse_sthv2`,
:func:`parse_kinetics400`, :func:`parse_ucf101`, :func:`parse_hmdb51`) return a
:class:`DatasetAnnotations`: the class names in the order that fixes their indices, and per
split a list of :class:`Annotation` (a sample id, its label and the candidate paths of its media
relative to the data root). :func:`resolve_media` then looks the samples up on disk.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".webm", ".avi", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".flv")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class VideoRecord:
    """One line of a list file.

    Attributes:
        path: media path relative to the data root: a video file or a folder of frames.
        label: class index, ``0 <= label < num_classes``.
        num_frames: number of frames for a frame folder (or a video whose list states it);
            ``None`` when the list does not say (plain ``path label`` lines).
        line: 1-based line number in the list file, for error messages (0 when unknown).
    """

    path: str
    label: int
    num_frames: int | None = None
    line: int = field(default=0, compare=False)

    def to_line(self) -> str:
        if self.num_frames is None:
            return f"{self.path} {self.label}"
        return f"{self.path} {self.num_frames} {self.label}"


def _is_int(text: str) -> bool:
    return re.fullmatch(r"[+-]?\d+", text) is not None


def parse_list_line(text: str, line: int = 0, source: str = "<list>") -> VideoRecord:
    """Parse ``path label`` or ``path num_frames label``; the path may contain spaces."""
    parts = text.rsplit(maxsplit=2)
    if len(parts) < 2 or not _is_int(parts[-1]):
        raise ValueError(
            f"{source}:{line}: expected 'path label' or 'path num_frames label', got {text!r}"
        )
    label = int(parts[-1])
    if len(parts) == 3 and _is_int(parts[1]):
        return VideoRecord(parts[0], label, int(parts[1]), line)
    path = text[: text.rstrip().rfind(parts[-1])].strip()
    return VideoRecord(path, label, None, line)


def read_list(path: str | os.PathLike) -> list[VideoRecord]:
    """Read a list file; blank lines and lines starting with ``#`` are ignored.

    Example:
        >>> records = read_list("lists/sthv1/val.txt")  # doctest: +SKIP
        >>> records[0]                                    # doctest: +SKIP
        VideoRecord(path='1', label=35, num_frames=47)
    """
    path = Path(path)
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip() or text.lstrip().startswith("#"):
                continue
            records.append(parse_list_line(text.rstrip("\n"), number, str(path)))
    return records


def write_list(path: str | os.PathLike, records: Iterable[VideoRecord]) -> int:
    """Write records one per line; returns the number written."""
    count = 0
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(record.to_line() + "\n")
            count += 1
    return count


def read_classes(path: str | os.PathLike) -> list[str]:
    """Read ``classes.txt``: one name per line, index = line number - 1."""
    with open(path, encoding="utf-8") as handle:
        return [line.rstrip("\n").strip() for line in handle if line.strip()]


def write_classes(path: str | os.PathLike, names: Sequence[str]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(f"{name}\n" for name in names)


# --------------------------------------------------------------------------------------------
# Official formats
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Annotation:
    """One sample of an official annotation file.

    Attributes:
        key: the sample's id in the official files (clip id, video path, ...).
        label: class index in :attr:`DatasetAnnotations.classes`.
        candidates: paths relative to the data root where the media may be, video files with
            their extension or frame folders without; the first that exists is used.
    """

    key: str
    label: int
    candidates: tuple[str, ...]


@dataclass
class DatasetAnnotations:
    """Classes and per-split samples of one dataset, as read from its official files."""

    classes: list[str]
    splits: dict[str, list[Annotation]]


def _find(directory: Path, patterns: Sequence[str], what: str) -> Path:
    for pattern in patterns:
        matches = sorted(directory.glob(pattern))
        if matches:
            return matches[0]
    raise FileNotFoundError(f"no {what} in {directory} (looked for {', '.join(patterns)})")


def _strip_brackets(text: str) -> str:
    return text.replace("[", "").replace("]", "")


def _video_or_folder(stem: str, extensions: Sequence[str]) -> tuple[str, ...]:
    return (stem, *(stem + ext for ext in extensions))


def parse_sthv1(annotations: str | os.PathLike) -> DatasetAnnotations:
    """Something-Something V1: ``something-something-v1-labels.csv`` (unsorted class names) and
    ``something-something-v1-{train,validation}.csv`` (``id;class name``).

    Classes are sorted alphabetically, the order of the reference checkpoints. Media: one JPEG
    folder per clip id (``<root>/<id>/00001.jpg``).
    """
    directory = Path(annotations)
    labels_file = _find(directory, ["*v1-labels.csv", "*labels.csv"], "V1 labels file")
    names = read_classes(labels_file)
    classes = sorted(set(names))
    if len(classes) != len(names):
        logger.warning("%s lists %d duplicate class names", labels_file, len(names) - len(classes))
    index = {name: i for i, name in enumerate(classes)}
    splits = {}
    for split, patterns in (("train", ["*v1-train.csv"]), ("val", ["*v1-validation.csv"])):
        path = _find(directory, patterns, f"V1 {split} file")
        entries = []
        with open(path, encoding="utf-8") as handle:
            for number, text in enumerate(handle, start=1):
                if not text.strip():
                    continue
                clip_id, sep, name = text.rstrip("\n").partition(";")
                if not sep or name.strip() not in index:
                    raise ValueError(f"{path}:{number}: unknown class or bad line {text!r}")
                key = clip_id.strip()
                entries.append(Annotation(key, index[name.strip()], _video_or_folder(key, [])))
        splits[split] = entries
    return DatasetAnnotations(classes, splits)


def parse_sthv2(annotations: str | os.PathLike) -> DatasetAnnotations:
    """Something-Something V2: ``labels.json`` (name -> index string) and ``train.json`` /
    ``validation.json`` (lists of ``{"id", "label", "template", "placeholders"}``).

    The class of an entry is its ``template`` without brackets (``[something]`` ->
    ``something``). Classes are sorted alphabetically, like V1's. Media: ``<root>/<id>.webm``
    or a frame folder ``<root>/<id>``.
    """
    directory = Path(annotations)
    labels_file = _find(directory, ["labels.json", "*labels*.json"], "V2 labels.json")
    with open(labels_file, encoding="utf-8") as handle:
        label_map = json.load(handle)
    classes = sorted(_strip_brackets(name) for name in label_map)
    index = {name: i for i, name in enumerate(classes)}
    splits = {}
    for split, patterns in (
        ("train", ["train.json", "*train*.json"]),
        ("val", ["validation.json", "*validation*.json"]),
    ):
        path = _find(directory, patterns, f"V2 {split} file")
        with open(path, encoding="utf-8") as handle:
            items = json.load(handle)
        entries = []
        for position, item in enumerate(items):
            name = _strip_brackets(item["template"]).strip()
            if name not in index:
                raise ValueError(
                    f"{path}: entry {position} (id {item.get('id')}): unknown class {name!r}"
                )
            key = str(item["id"])
            entries.append(Annotation(key, index[name], _video_or_folder(key, [".webm", ".mp4"])))
        splits[split] = entries
    return DatasetAnnotations(classes, splits)


def kinetics_clip_name(youtube_id: str, time_start: str, time_end: str) -> str:
    """``{youtube_id}_{time_start:06d}_{time_end:06d}``, the usual file stem of a clip."""
    return f"{youtube_id}_{int(float(time_start)):06d}_{int(float(time_end)):06d}"


def parse_kinetics400(annotations: str | os.PathLike) -> DatasetAnnotations:
    """Kinetics-400: CSV files with columns ``label,youtube_id,time_start,time_end,split``.

    Classes are the sorted labels of the training file. Media: ``{youtube_id}_{start:06d}_
    {end:06d}.mp4`` (or another video extension, or a frame folder of that name), in a folder
    per class (with spaces or underscores) or flat.
    """
    directory = Path(annotations)
    files = {
        "train": _find(directory, ["train.csv", "*train*.csv"], "Kinetics train CSV"),
        "val": _find(directory, ["val.csv", "validate.csv", "*val*.csv"], "Kinetics val CSV"),
    }
    rows_per_split = {}
    for split, path in files.items():
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = {"label", "youtube_id", "time_start", "time_end"} - set(
                reader.fieldnames or []
            )
            if missing:
                raise ValueError(f"{path}: missing columns {sorted(missing)}")
            rows_per_split[split] = list(reader)
    classes = sorted({row["label"].strip() for row in rows_per_split["train"]})
    index = {name: i for i, name in enumerate(classes)}
    splits = {}
    for split, rows in rows_per_split.items():
        entries = []
        for number, row in enumerate(rows, start=2):
            name = row["label"].strip()
            if name not in index:
                raise ValueError(
                    f"{files[split]}:{number}: class {name!r} not in the training file"
                )
            stem = kinetics_clip_name(row["youtube_id"], row["time_start"], row["time_end"])
            candidates = []
            for folder in dict.fromkeys((name, name.replace(" ", "_"), "")):
                base = f"{folder}/{stem}" if folder else stem
                candidates.extend(_video_or_folder(base, VIDEO_EXTENSIONS))
            entries.append(Annotation(stem, index[name], tuple(candidates)))
        splits[split] = entries
    return DatasetAnnotations(classes, splits)


def parse_ucf101(annotations: str | os.PathLike, split: int = 1) -> DatasetAnnotations:
    """UCF-101: ``classInd.txt`` (``1 ApplyEyeMakeup``, 1-based), ``trainlist0N.txt``
    (``Class/v_Class_g08_c01.avi 1``) and ``testlist0N.txt`` (path only; class from the folder).
    """
    directory = Path(annotations)
    class_file = _find(directory, ["classInd.txt", "**/classInd.txt"], "UCF-101 classInd.txt")
    numbered = {}
    with open(class_file, encoding="utf-8") as handle:
        for text in handle:
            if text.strip():
                number, name = text.split(maxsplit=1)
                numbered[int(number)] = name.strip()
    if sorted(numbered) != list(range(1, len(numbered) + 1)):
        raise ValueError(f"{class_file}: class numbers are not 1..{len(numbered)}")
    classes = [numbered[i] for i in range(1, len(numbered) + 1)]
    index = {name: i for i, name in enumerate(classes)}
    splits = {}
    for name, pattern in (
        ("train", f"trainlist{split:02d}.txt"),
        ("val", f"testlist{split:02d}.txt"),
    ):
        path = _find(directory, [pattern, f"**/{pattern}"], f"UCF-101 {pattern}")
        entries = []
        with open(path, encoding="utf-8") as handle:
            for number, text in enumerate(handle, start=1):
                fields = text.split()
                if not fields:
                    continue
                video = fields[0]
                class_name = video.split("/")[0]
                if class_name not in index:
                    raise ValueError(f"{path}:{number}: unknown class folder {class_name!r}")
                label = index[class_name]
                if len(fields) > 1 and int(fields[1]) - 1 != label:
                    raise ValueError(
                        f"{path}:{number}: class index {fields[1]} does not match folder {class_name!r}"
                    )
                stem = os.path.splitext(video)[0]
                entries.append(Annotation(video, label, (video, stem)))
        splits[name] = entries
    return DatasetAnnotations(classes, splits)


def parse_hmdb51(annotations: str | os.PathLike, split: int = 1) -> DatasetAnnotations:
    """HMDB-51: ``<class>_test_split<N>.txt`` per class, lines ``<video>.avi <flag>`` with flag
    1 = train, 2 = test, 0 = unused. Classes are sorted; media in ``<root>/<class>/<video>``.
    """
    directory = Path(annotations)
    suffix = f"_test_split{split}.txt"
    files = sorted(directory.rglob(f"*{suffix}"))
    if not files:
        raise FileNotFoundError(f"no HMDB-51 split files *{suffix} in {directory}")
    per_class = {path.name[: -len(suffix)]: path for path in files}
    classes = sorted(per_class)
    splits: dict[str, list[Annotation]] = {"train": [], "val": []}
    for label, name in enumerate(classes):
        path = per_class[name]
        with open(path, encoding="utf-8") as handle:
            for number, text in enumerate(handle, start=1):
                fields = text.split()
                if not fields:
                    continue
                if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
                    raise ValueError(f"{path}:{number}: expected '<video> <0|1|2>', got {text!r}")
                if fields[1] == "0":
                    continue
                video = f"{name}/{fields[0]}"
                stem = os.path.splitext(video)[0]
                target = "train" if fields[1] == "1" else "val"
                splits[target].append(Annotation(video, label, (video, stem)))
    return DatasetAnnotations(classes, splits)


PARSERS = {
    "sthv1": parse_sthv1,
    "sthv2": parse_sthv2,
    "kinetics400": parse_kinetics400,
    "ucf101": parse_ucf101,
    "hmdb51": parse_hmdb51,
}


def parse_annotations(
    dataset: str, annotations: str | os.PathLike, split: int = 1
) -> DatasetAnnotations:
    """Parse the official annotation files of ``dataset`` (one of :data:`PARSERS`)."""
    if dataset not in PARSERS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {sorted(PARSERS)}")
    if dataset in ("ucf101", "hmdb51"):
        return PARSERS[dataset](annotations, split=split)
    return PARSERS[dataset](annotations)


# --------------------------------------------------------------------------------------------
# Looking samples up on disk
# --------------------------------------------------------------------------------------------


def count_frames(folder: str | os.PathLike) -> int:
    """Number of image files in a frame folder."""
    with os.scandir(folder) as entries:
        return sum(1 for entry in entries if entry.name.lower().endswith(IMAGE_EXTENSIONS))


@dataclass
class ResolvedSplit:
    """Samples of one split found on disk, and the keys of those that were not."""

    records: list[VideoRecord]
    missing: list[str]


def resolve_media(root: str | os.PathLike, entries: Sequence[Annotation]) -> ResolvedSplit:
    """Find each annotation's media under ``root``.

    A candidate that is a folder becomes a frame-folder record with its frames counted on disk;
    a video file becomes a ``path label`` record. Samples with no candidate on disk (or an empty
    frame folder) are returned in ``missing``.
    """
    root = Path(root)
    records, missing = [], []
    for entry in entries:
        for candidate in entry.candidates:
            full = root / candidate
            if full.is_dir():
                frames = count_frames(full)
                if frames == 0:
                    continue
                records.append(VideoRecord(candidate, entry.label, frames))
                break
            if full.is_file():
                records.append(VideoRecord(candidate, entry.label))
                break
        else:
            missing.append(entry.key)
    return ResolvedSplit(records, missing)
