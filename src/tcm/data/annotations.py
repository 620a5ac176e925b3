"""The project's annotation files: list files (one sample per line) and ``classes.txt``.

List files follow the convention of the field, one sample per line:

- ``relative/path label`` for a video file;
- ``relative/path num_frames label`` for a folder of JPEG frames (``num_frames`` counted on disk).

Paths are relative to a data root and may contain spaces (Kinetics class folders do): the last
one or two whitespace-separated fields are the integers, everything before them is the path.
``classes.txt`` holds one class name per line; a class index is its line number minus one.
The official formats of each dataset are read by :mod:`~tcm.data.official_formats`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tcm.utils.files import read_text

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".webm", ".avi", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".flv")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
#: The file ``tcm prepare --reencode`` leaves in its output folder (the settings of the copies):
#: a folder holding it below a data root holds copies, not originals, and is not searched.
REENCODE_SETTINGS_FILE = "tcm-reencode.json"


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


def is_int(text: str) -> bool:
    """Whether ``text`` is a whole number in ASCII digits (``"12"``, ``"-3"``)."""
    digits = text[1:] if text[:1] in ("+", "-") else text
    return digits.isascii() and digits.isdigit()


def split_list_line(
    text: str, line: int = 0, source: str = "<list>"
) -> tuple[str, int, int | None]:
    """``(path, label, num_frames or None)`` of ``path label`` or ``path num_frames label``;
    the path may contain spaces. A line of neither form is a ``ValueError`` naming
    ``source:line``."""
    parts = text.rsplit(maxsplit=2)
    if len(parts) < 2 or not is_int(parts[-1]):
        raise ValueError(
            f"{source}:{line}: expected 'path label' or 'path num_frames label', got {text!r}"
        )
    label = int(parts[-1])
    if len(parts) == 3 and is_int(parts[1]):
        return parts[0], label, int(parts[1])
    return text[: text.rstrip().rfind(parts[-1])].strip(), label, None


def parse_list_line(text: str, line: int = 0, source: str = "<list>") -> VideoRecord:
    """Parse ``path label`` or ``path num_frames label``; the path may contain spaces."""
    path, label, num_frames = split_list_line(text, line, source)
    return VideoRecord(path, label, num_frames, line)


def list_entries(path: str | os.PathLike):
    """``(line number, path, label, num_frames or None)`` of each sample line of a list file;
    blank lines and lines starting with ``#`` are skipped. See :func:`read_list`."""
    source = str(path)
    for number, text in enumerate(read_text(path, "list file").splitlines(), start=1):
        if not text or text.isspace() or text.lstrip().startswith("#"):
            continue
        yield (number, *split_list_line(text, number, source))


def read_list(path: str | os.PathLike) -> list[VideoRecord]:
    """Read a list file; blank lines and lines starting with ``#`` are ignored.

    A UTF-8 byte-order mark is dropped; a file that is not UTF-8 text is a ``ValueError``
    naming it. Datasets hold a list in packed form instead
    (:func:`~tcm.data.record_table.read_table`).

    Example:
        >>> records = read_list("lists/sthv1/val.txt")  # doctest: +SKIP
        >>> records[0]                                    # doctest: +SKIP
        VideoRecord(path='1', label=35, num_frames=47)
    """
    return [
        VideoRecord(file, label, frames, number)
        for number, file, label, frames in list_entries(Path(path))
    ]


def write_list(path: str | os.PathLike, records: Iterable[VideoRecord]) -> int:
    """Write records one per line; returns the number written."""
    count = 0
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(record.to_line() + "\n")
            count += 1
    return count


def nonblank_lines(text: str) -> list[str]:
    """Non-blank lines, stripped."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def read_classes(path: str | os.PathLike) -> list[str]:
    """Read ``classes.txt``: one name per line, index = line number - 1.

    Blank lines are ignored. A name listed twice is a ``ValueError`` (two indices for one
    class), naming the file and both lines.
    """
    seen: dict[str, int] = {}
    names = []
    for number, line in enumerate(read_text(path, "class list").splitlines(), start=1):
        name = line.strip()
        if not name:
            continue
        if name in seen:
            raise ValueError(
                f"{path}:{number}: class {name!r} is listed twice (first on line {seen[name]})"
            )
        seen[name] = number
        names.append(name)
    return names


def write_classes(path: str | os.PathLike, names: Sequence[str]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(f"{name}\n" for name in names)
