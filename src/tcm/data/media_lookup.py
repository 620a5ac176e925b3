"""Looking the samples of official annotations up on disk: :func:`resolve_media`."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tcm.data.annotations import IMAGE_EXTENSIONS, REENCODE_SETTINGS_FILE, VideoRecord
from tcm.data.official_formats import Annotation

logger = logging.getLogger(__name__)


def count_frames(folder: str | os.PathLike) -> int:
    """Number of image files in a frame folder."""
    with os.scandir(folder) as entries:
        return sum(1 for entry in entries if entry.name.lower().endswith(IMAGE_EXTENSIONS))


@dataclass
class ResolvedSplit:
    """Samples of one split found on disk, and the keys of those that were not."""

    records: list[VideoRecord]
    missing: list[str]


class _Listings:
    """What each folder under a root holds (``name -> "dir" | "file"``), read once per folder,
    so that trying many candidate paths per sample costs no file-system call each.

    A folder below the root that holds :data:`REENCODE_SETTINGS_FILE` holds re-encoded copies
    (``tcm prepare --reencode`` into a folder inside the root): it and everything in it count
    as absent, so that the originals are found, never their copies."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._folders: dict[str, dict[str, str]] = {}
        self._copies: dict[str, bool] = {}

    def kind(self, relative: str) -> str | None:
        parent, _, name = relative.rpartition("/")
        listing = self._folders.get(parent)
        if listing is None:
            listing = {}
            if not self._holds_copies(parent):
                try:
                    with os.scandir(self.root / parent if parent else self.root) as entries:
                        for entry in entries:
                            if entry.is_dir():
                                listing[entry.name] = "dir"
                            elif entry.is_file():
                                listing[entry.name] = "file"
                except (FileNotFoundError, NotADirectoryError):
                    pass
            self._folders[parent] = listing
        kind = listing.get(name)
        if kind == "dir" and self._holds_copies(relative):
            return None
        return kind

    def _holds_copies(self, relative: str) -> bool:
        """Whether the folder ``relative`` (``""``: the root, never) or one above it below the
        root holds re-encoded copies."""
        parts = [part for part in relative.split("/") if part]
        for depth in range(1, len(parts) + 1):
            folder = "/".join(parts[:depth])
            seen = self._copies.get(folder)
            if seen is None:
                seen = self._copies[folder] = (
                    self.root / folder / REENCODE_SETTINGS_FILE
                ).is_file()
                if seen:
                    _report_copies(self.root / folder)
            if seen:
                return True
        return False


@functools.cache
def _report_copies(folder: Path) -> None:
    """Say once per process that ``folder`` is left out as a folder of copies."""
    logger.warning(
        "%s holds re-encoded copies (%s): not searched for originals",
        folder,
        REENCODE_SETTINGS_FILE,
    )


def resolve_media(root: str | os.PathLike, entries: Sequence[Annotation]) -> ResolvedSplit:
    """Find each annotation's media under ``root``.

    A candidate that is a folder becomes a frame-folder record with its frames counted on disk;
    a video file becomes a ``path label`` record. Samples with no candidate on disk (or an empty
    frame folder) are returned in ``missing``.
    """
    root = Path(root)
    listings = _Listings(root)
    records, missing = [], []
    for entry in entries:
        for candidate in entry.candidates:
            kind = listings.kind(candidate)
            if kind == "dir":
                frames = count_frames(root / candidate)
                if frames == 0:
                    continue
                records.append(VideoRecord(candidate, entry.label, frames))
                break
            if kind == "file":
                records.append(VideoRecord(candidate, entry.label))
                break
        else:
            missing.append(entry.key)
    return ResolvedSplit(records, missing)
