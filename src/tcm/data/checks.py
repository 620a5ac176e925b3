"""Checking a list file: open every entry as the loader would and report the bad ones.

Used by ``tcm check-data``. Each entry is opened with the loader's readers
(:func:`~tcm.data.media.open_media`). The thorough check decodes all its frames, so every
reason the loader could fail for is found up front: missing, empty, truncated, not a video, no
video stream, fewer frames than claimed, missing or unreadable frame, label out of range. The
quick check (``quick=True``) reads the container and its packet index (the frame count, a
stream cut short) and decodes only the frames a test clip of ``segments`` frames samples: a
fraction of the cost, missing only damage between those frames.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

from tcm.data.annotations import VideoRecord
from tcm.data.bad_video import BAD_LABEL, TOO_FEW_FRAMES, TRUNCATED, BadVideoError
from tcm.data.media import open_media
from tcm.data.sampling import build_sampler
from tcm.data.storage_options import DEFAULT_STORAGE, StorageOptions
from tcm.data.video_reader import VideoReader
from tcm.utils.parallel import map_in_processes

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckResult:
    """Outcome for one list entry; ``reason`` and ``message`` are empty when it is good."""

    line: int
    path: str
    ok: bool
    num_frames: int = 0
    reason: str = ""
    message: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def check_record(
    record: VideoRecord,
    root: str | os.PathLike,
    *,
    num_classes: int | None = None,
    storage: StorageOptions = DEFAULT_STORAGE,
    quick: bool = False,
    segments: int = 8,
) -> CheckResult:
    """Decode every frame of one entry (with ``quick``, the frames of a test clip of
    ``segments`` frames), its frame folder named and decoded as ``storage`` says (the
    loader's options); never raises for bad input."""
    path = Path(root) / record.path
    try:
        if num_classes is not None and not 0 <= record.label < num_classes:
            raise BadVideoError(path, BAD_LABEL, f"label {record.label} not in [0, {num_classes})")
        with open_media(
            path,
            num_frames=record.num_frames,
            frame_template=storage.frame_template,
            frame_start_index=storage.frame_start_index,
            threads=storage.decode_threads,
        ) as reader:
            if quick:
                decoded = _check_test_clip(path, reader, record.num_frames, segments)
            elif isinstance(reader, VideoReader):
                decoded = reader.read_all()
                expected = record.num_frames or reader.num_frames
                if decoded < expected:
                    raise BadVideoError(
                        path,
                        TOO_FEW_FRAMES if record.num_frames else TRUNCATED,
                        f"{decoded} frames decoded, {expected} expected",
                    )
            else:
                decoded = reader.check_all()
    except BadVideoError as error:
        return CheckResult(record.line, record.path, False, 0, error.reason, str(error))
    return CheckResult(record.line, record.path, True, decoded)


def _check_test_clip(path: Path, reader, claimed: int | None, segments: int) -> int:
    """Decode the frames a test clip of ``segments`` frames samples; the entry's frames."""
    available = reader.num_frames
    if claimed and available < claimed:
        raise BadVideoError(path, TOO_FEW_FRAMES, f"{available} frames, {claimed} expected")
    indices = build_sampler("segments", segments)(claimed or available, train=False)
    reader.get_frames(indices.reshape(-1))
    return claimed or available


def check_records(
    records: Sequence[VideoRecord],
    root: str | os.PathLike,
    *,
    num_classes: int | None = None,
    storage: StorageOptions = DEFAULT_STORAGE,
    workers: int = 1,
    progress: bool = False,
    quick: bool = False,
    segments: int = 8,
) -> list[CheckResult]:
    """:func:`check_record` for each record, in order, over ``workers`` processes."""
    check = partial(
        check_record,
        root=root,
        num_classes=num_classes,
        storage=storage,
        quick=quick,
        segments=segments,
    )
    return map_in_processes(
        check, records, workers=workers, progress=progress, desc="checking", unit="video"
    )
