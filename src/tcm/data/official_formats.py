"""The official annotation formats: Something-Something V1/V2, Kinetics-400, UCF-101, HMDB-51.

The parsers (:func:`parse_sthv1`, :func:`parse_sthv2`, :func:`parse_kinetics400`,
:func:`parse_ucf101`, :func:`parse_hmdb51`) return a :class:`DatasetAnnotations`: the class
names in the order that fixes their indices, and per split a list of :class:`Annotation` (a
sample id, its label and the candidate paths of its media relative to the data root).
:func:`~tcm.data.media_lookup.resolve_media` then looks the samples up on disk.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tcm.data.annotations import VIDEO_EXTENSIONS, is_int, nonblank_lines
from tcm.utils.files import read_text

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Annotation:
    """One sample of an official annotation file.

    Attributes:
        key: the sample's id in the official files (clip id, video path, ...).
        label: class index in :attr:`DatasetAnnotations.classes`.
        candidates: paths relative to the data root where the media may be, video files with
            their extension or frame folders without, in order; the first that exists is
            used. May be lazy (:class:`KineticsCandidates`): iterate it, never index it.
    """

    key: str
    label: int
    candidates: Iterable[str]


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
    names = nonblank_lines(read_text(labels_file, "labels file"))
    classes = sorted(set(names))
    if len(classes) != len(names):
        logger.warning("%s lists %d duplicate class names", labels_file, len(names) - len(classes))
    index = {name: i for i, name in enumerate(classes)}
    splits = {}
    for split, patterns in (("train", ["*v1-train.csv"]), ("val", ["*v1-validation.csv"])):
        path = _find(directory, patterns, f"V1 {split} file")
        entries = []
        for number, text in enumerate(read_text(path, "annotation file").splitlines(), start=1):
            if not text.strip():
                continue
            clip_id, sep, name = text.partition(";")
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
    label_map = _read_json(labels_file)
    if not isinstance(label_map, dict) or not all(isinstance(k, str) for k in label_map):
        raise ValueError(f"{labels_file}: expected an object of class name -> index")
    classes = sorted(_strip_brackets(name) for name in label_map)
    index = {name: i for i, name in enumerate(classes)}
    splits = {}
    for split, patterns in (
        ("train", ["train.json", "*train*.json"]),
        ("val", ["validation.json", "*validation*.json"]),
    ):
        path = _find(directory, patterns, f"V2 {split} file")
        items = _read_json(path)
        if not isinstance(items, list):
            raise ValueError(f'{path}: expected a list of {{"id", "template", ...}} objects')
        entries = []
        for position, item in enumerate(items):
            if not (
                isinstance(item, dict)
                and isinstance(item.get("template"), str)
                and isinstance(item.get("id"), str | int)
            ):
                raise ValueError(
                    f"{path}: entry {position} is {_short(item)}, expected an object with "
                    '"id" and "template"'
                )
            name = _strip_brackets(item["template"]).strip()
            if name not in index:
                raise ValueError(
                    f"{path}: entry {position} (id {item.get('id')}): unknown class {name!r}"
                )
            key = str(item["id"])
            entries.append(Annotation(key, index[name], _video_or_folder(key, [".webm", ".mp4"])))
        splits[split] = entries
    return DatasetAnnotations(classes, splits)


def _read_json(path: Path):
    try:
        return json.loads(read_text(path, "JSON file"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def kinetics_clip_name(youtube_id: str, time_start: str, time_end: str) -> str:
    """``{youtube_id}_{time_start:06d}_{time_end:06d}``, the usual file stem of a clip."""
    return f"{youtube_id}_{int(float(time_start)):06d}_{int(float(time_end)):06d}"


# Folders of one split that Kinetics downloaders write under the data root (tried in this
# order, then the root itself).
KINETICS_SPLIT_FOLDERS = {
    "train": ("train", "videos_train"),
    "val": ("val", "validate", "videos_val"),
}


class KineticsCandidates:
    """Where a Kinetics clip may be, relative to the data root, made one by one as they are
    tried: in a split folder (:data:`KINETICS_SPLIT_FOLDERS`) or not, in a class folder (its
    name with spaces or with underscores) or flat; a frame folder or a video file of any known
    extension. About 90 paths per clip, but the downloaders' layout is found among the first
    few, and a list of 260k clips holding them all would take gigabytes.

    Example:
        >>> list(KineticsCandidates("val", "arm wrestling", "x_000001_000011"))[:2]
        ['val/arm wrestling/x_000001_000011', 'val/arm wrestling/x_000001_000011.mp4']
    """

    __slots__ = ("class_name", "split", "stem")

    def __init__(self, split: str, class_name: str, stem: str) -> None:
        self.split = split
        self.class_name = class_name
        self.stem = stem

    def __iter__(self) -> Iterator[str]:
        for top in (*KINETICS_SPLIT_FOLDERS.get(self.split, ()), ""):
            for folder in dict.fromkeys((self.class_name, self.class_name.replace(" ", "_"), "")):
                base = "/".join(part for part in (top, folder, self.stem) if part)
                yield from _video_or_folder(base, VIDEO_EXTENSIONS)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.split!r}, {self.class_name!r}, {self.stem!r})"


_KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end")


def _kinetics_rows(path: Path) -> Iterator[tuple[int, str, str]]:
    """``(line, class name, clip name)`` of each row of a Kinetics CSV file, streamed."""
    reader = csv.reader(io.StringIO(read_text(path, "CSV file"), newline=""))
    header = next(reader, [])
    missing = set(_KINETICS_COLUMNS) - set(header)
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)}")
    label, youtube_id, start, end = (header.index(c) for c in _KINETICS_COLUMNS)
    width = max(label, youtube_id, start, end) + 1
    for row in reader:
        number = reader.line_num
        if not row:
            continue
        row += [""] * (width - len(row))
        try:
            stem = kinetics_clip_name(row[youtube_id], row[start], row[end])
        except (TypeError, ValueError):
            raise ValueError(
                f"{path}:{number}: time_start and time_end must be numbers, got "
                f"{row[start]!r} and {row[end]!r}"
            ) from None
        yield number, row[label].strip(), stem


def parse_kinetics400(annotations: str | os.PathLike) -> DatasetAnnotations:
    """Kinetics-400: CSV files with columns ``label,youtube_id,time_start,time_end,split``.

    Classes are the sorted labels of the training file. Media: ``{youtube_id}_{start:06d}_
    {end:06d}.mp4`` (or another video extension, or a frame folder of that name), in a folder
    per class (with spaces or underscores) or flat, inside a split folder (``train``,
    ``videos_train``; ``val``, ``validate``, ``videos_val``) or directly under the data root
    (:class:`KineticsCandidates`, tried lazily).
    """
    directory = Path(annotations)
    files = {
        "train": _find(directory, ["train.csv", "*train*.csv"], "Kinetics train CSV"),
        "val": _find(directory, ["val.csv", "validate.csv", "*val*.csv"], "Kinetics val CSV"),
    }
    names: dict[str, str] = {}  # one string object per class name, shared by its rows
    train_rows = [
        (number, names.setdefault(name, name), stem)
        for number, name, stem in _kinetics_rows(files["train"])
    ]
    classes = sorted(set(names) - {""})
    index = {name: i for i, name in enumerate(classes)}
    splits = {}
    for split, path in files.items():
        rows = train_rows if split == "train" else _kinetics_rows(path)
        entries = []
        for number, name, stem in rows:
            if name not in index:
                raise ValueError(f"{path}:{number}: class {name!r} not in the training file")
            label = index[name]
            candidates = KineticsCandidates(split, classes[label], stem)
            entries.append(Annotation(stem, label, candidates))
        splits[split] = entries
        train_rows = rows = []  # the rows' memory goes before the next split is read
    return DatasetAnnotations(classes, splits)


def parse_ucf101(annotations: str | os.PathLike, split: int = 1) -> DatasetAnnotations:
    """UCF-101: ``classInd.txt`` (``1 ApplyEyeMakeup``, 1-based), ``trainlist0N.txt``
    (``Class/v_Class_g08_c01.avi 1``) and ``testlist0N.txt`` (path only; class from the folder).
    """
    directory = Path(annotations)
    class_file = _find(directory, ["classInd.txt", "**/classInd.txt"], "UCF-101 classInd.txt")
    numbered = {}
    for line, text in enumerate(read_text(class_file, "class file").splitlines(), start=1):
        if text.strip():
            parts = text.split(maxsplit=1)
            if len(parts) != 2 or not is_int(parts[0]):
                raise ValueError(f"{class_file}:{line}: expected 'number name', got {text!r}")
            numbered[int(parts[0])] = parts[1].strip()
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
        for number, text in enumerate(read_text(path, "split file").splitlines(), start=1):
            fields = text.split()
            if not fields:
                continue
            video = fields[0]
            class_name = video.split("/")[0]
            if class_name not in index:
                raise ValueError(f"{path}:{number}: unknown class folder {class_name!r}")
            label = index[class_name]
            if len(fields) > 1 and (not is_int(fields[1]) or int(fields[1]) - 1 != label):
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
        for number, text in enumerate(read_text(path, "split file").splitlines(), start=1):
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
