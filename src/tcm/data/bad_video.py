"""Why a sample cannot be read: :class:`BadVideoError`, its reasons, and the one check of a path.

Problems with the input raise :class:`BadVideoError` (a :class:`~tcm.errors.TcmError` and a
:class:`ValueError`) naming the file and the reason: the readers wrap the errors of PyAV, of
PIL and of the system reading the path into it, so that a caller that goes on past bad inputs
catches :class:`BadVideoError` alone and a bug still propagates.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tcm.errors import TcmError

# Reasons carried by BadVideoError, as reported by ``tcm check-data``.
MISSING = "missing"
EMPTY = "empty"
TRUNCATED = "truncated"
NOT_A_VIDEO = "not a video"
NO_VIDEO_STREAM = "no video stream"
TOO_FEW_FRAMES = "fewer frames than claimed"
MISSING_FRAME = "missing frame"
BAD_FRAME = "unreadable frame"
BAD_LABEL = "label out of range"
TOO_SMALL = "frames smaller than the crop"
UNREADABLE = "unreadable"  # the system refused to read the path (permission, I/O error)
CANNOT_OPEN = "cannot open the stream"  # a live source (URL, device, pipe) that did not open

# Magic bytes of containers, to tell a damaged video from a file that is not a video at all.
_SIGNATURES = (
    (4, b"ftyp"),  # mp4 / mov / m4v
    (0, b"\x1a\x45\xdf\xa3"),  # matroska / webm
    (0, b"RIFF"),  # avi
    (0, b"\x00\x00\x01\xba"),  # mpeg-ps
    (0, b"FLV"),
    (0, b"OggS"),
)


class BadVideoError(TcmError, ValueError):
    """A sample that cannot be read: the message names the file and the problem.

    Attributes:
        path: the file or folder.
        reason: one of the short reasons of this module (``"missing"``, ``"truncated"``, ...).
        detail: free text with specifics.
    """

    def __init__(
        self, path: str | os.PathLike, reason: str | None = None, detail: str = ""
    ) -> None:
        if reason is None:  # re-raised from a DataLoader worker with the full message only
            path, reason, detail = _split_worker_message(str(path))
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        if not reason:
            super().__init__(self.path)
        else:
            super().__init__(f"{self.path}: {reason}" + (f" ({detail})" if detail else ""))

    def __reduce__(self):
        return (type(self), (self.path, self.reason, self.detail))


REASONS = (
    TOO_SMALL,
    MISSING,
    EMPTY,
    TRUNCATED,
    NOT_A_VIDEO,
    NO_VIDEO_STREAM,
    TOO_FEW_FRAMES,
    MISSING_FRAME,
    BAD_FRAME,
    BAD_LABEL,
    UNREADABLE,
    CANNOT_OPEN,
)


def _split_worker_message(text: str) -> tuple[str, str, str]:
    """``(path, reason, detail)`` of the message a DataLoader worker re-raises: the worker's
    traceback, whose last line is ``...BadVideoError: PATH: REASON (DETAIL)``."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    last = lines[-1] if lines else text
    _, marker, message = last.partition("BadVideoError: ")
    message = message if marker else last
    for reason in REASONS:
        head, sep, tail = message.partition(f": {reason}")
        if sep and (not tail or (tail.startswith(" (") and tail.endswith(")"))):
            return head, reason, tail[2:-1]
    return message, "", ""


def looks_like_container(path: Path) -> bool:
    """Whether the file starts with the magic bytes of a video container (a damaged video, not
    some other file)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(12)
    except OSError:
        return False
    return any(head[offset : offset + len(magic)] == magic for offset, magic in _SIGNATURES)


def unreadable(path: str | os.PathLike, error: OSError) -> BadVideoError:
    """The :class:`BadVideoError` for a path the system refuses to read (``error``)."""
    return BadVideoError(path, UNREADABLE, error.strerror or str(error))


_SPECIAL_FILES = (
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def special_file(mode: int) -> str | None:
    """What a path of ``st_mode`` ``mode`` is when it is neither a regular file nor a folder
    (``"a named pipe"``, ``"a character device"``, ...); ``None`` otherwise. Such a path cannot
    be read as a video file: it has no length and cannot seek, and reading a pipe nobody
    writes to waits forever."""
    return next((kind for test, kind in _SPECIAL_FILES if test(mode)), None)


def check_media_path(
    path: str | os.PathLike, *, folders: bool = False, live: bool = False, hint: str = ""
) -> str | None:
    """Raise the :class:`BadVideoError` of a path that cannot be read as a video file: missing,
    unreadable, a folder, a special file (a pipe, a device) or empty.

    Args:
        path: the path.
        folders: a folder passes too (a frame folder, whose reader checks its frames).
        live: the path may name a live source: a name not on disk (a URL, a device) and a
            special file pass.
        hint: what to do instead, added to the detail of a special file.

    Returns:
        What the path is when it is a special file that passes (``"a named pipe"``, ...);
            ``None`` otherwise.

    Example:
        >>> check_media_path("no/such/clip.mp4")
        Traceback (most recent call last):
        ...
        tcm.data.bad_video.BadVideoError: no/such/clip.mp4: missing (no such file)
    """
    try:
        info = Path(path).stat()
    except (FileNotFoundError, NotADirectoryError):
        if live:
            return None
        what = "no such file or folder" if folders else "no such file"
        raise BadVideoError(path, MISSING, what) from None
    except OSError as error:  # e.g. a folder on the way that may not be searched
        raise unreadable(path, error) from None
    if stat.S_ISDIR(info.st_mode):
        if folders:
            return None
        raise BadVideoError(path, NOT_A_VIDEO, "a folder, not a video file")
    kind = special_file(info.st_mode)
    if kind is not None:
        if live:
            return kind
        raise BadVideoError(path, NOT_A_VIDEO, f"{kind}, not a regular file{hint}")
    if info.st_size == 0:
        raise BadVideoError(path, EMPTY, "zero bytes")
    return None
