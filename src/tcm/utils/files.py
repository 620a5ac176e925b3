"""Reading the user's text files, and checking and making outputs, with errors that name the path."""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from tcm.errors import OutputError

#: Errors of a disk or folder being written, which every further file would meet too: a
#: command that writes many files stops at the first one.
FILESYSTEM_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}
)


def writing_stopped(error: OSError, out: str | os.PathLike, what: str) -> OutputError:
    """The error that ends a command writing many files into ``out`` at the first
    :data:`FILESYSTEM_ERRNOS` error: the file, the system's reason, and that what finished is
    kept (``what``: ``"re-encoding"``, ``"frame extraction"``)."""
    where = f"{error.filename}: " if error.filename else ""
    return OutputError(
        f"{where}{error.strerror}; {what} stopped (what finished is kept in {out}, and a new "
        "run continues from it)"
    )


def read_text(path: str | os.PathLike, what: str = "text file") -> str:
    """The content of a UTF-8 text file, without a leading byte-order mark.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is a folder, or its bytes are not UTF-8 (the message names the file
            and the offset).

    Example:
        >>> read_text("lists/train.txt", "list file").splitlines()[0]  # doctest: +SKIP
        'abseiling/0347ZoDXyP0_000095_000105.mp4 0'
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a folder, not a {what}")
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ValueError(
            f"{path}: not a UTF-8 {what} (line {line}, byte {error.start}: {error.reason})"
        ) from None


def _unwritable(folder: Path) -> str | None:
    """Why this process cannot create files in the existing folder ``folder``; ``None`` if it can."""
    if os.access(folder, os.W_OK | os.X_OK):
        return None
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return "read-only file system"
    except OSError:
        pass
    return "permission denied"


def _check_creatable(path: Path, what: str, target: Path) -> None:
    """The nearest existing one of ``path`` and the folders above it must be a folder that
    this process can write in; ``what`` and ``target`` name the output in messages."""
    for folder in (path, *path.parents):
        if folder.exists():
            if not folder.is_dir():
                raise OutputError(f"{folder}: exists and is not a folder (the {what})")
            reason = _unwritable(folder)
            if reason is not None:
                named = "" if folder == target else f" {target}"
                raise OutputError(
                    f"{folder}: not writable ({reason}); the {what}{named} cannot be written"
                )
            return


def check_output_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """``path`` if it is a folder or can become one, and files can be written in it (nothing
    is created): checked before a command starts its work.

    Raises:
        OutputError: ``path``, or a folder above it, exists and is not a folder, or the nearest
            existing one cannot be written (read-only file system, permission denied).
    """
    path = Path(path)
    _check_creatable(path, what, path)
    return path


def _same_file(a: Path, b: str | os.PathLike) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_output_file(
    path: str | os.PathLike,
    what: str = "output file",
    *,
    suffixes: Sequence[str] = (),
    inputs: Mapping[str | os.PathLike, str] | None = None,
) -> Path:
    """``path`` if the file may be written there, checked before a command starts its work
    (nothing is created).

    Args:
        path: the file to write.
        what: how the user named it, for messages (``"--out"``, ``"--timeline"``).
        suffixes: the extensions it may have (lower case, with the dot); empty: any.
        inputs: files the command reads, each with how to call it (``{list_file: "the list
            being checked"}``): writing over one of them would destroy it.

    Raises:
        OutputError: ``path`` is a folder, has another extension, is one of ``inputs`` or an
            existing tcm checkpoint, or its folder cannot be made or written.

    Example:
        >>> check_output_file("out/timeline.pt", "--timeline", suffixes=(".png",))
        Traceback (most recent call last):
        ...
        tcm.errors.OutputError: out/timeline.pt: the --timeline must be a .png file
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; {what} names the file to write")
    if suffixes and path.suffix.lower() not in suffixes:
        kinds = " or ".join([", ".join(suffixes[:-1]), suffixes[-1]] if suffixes[:-1] else suffixes)
        raise OutputError(f"{path}: the {what} must be a {kinds} file")
    if path.exists():
        for source, description in (inputs or {}).items():
            if _same_file(path, source):
                raise OutputError(
                    f"{path}: is {description}; writing there would destroy it; choose "
                    f"another {what}"
                )
        from tcm.checkpoint import is_tcm_checkpoint

        if is_tcm_checkpoint(path):
            raise OutputError(
                f"{path}: is a tcm checkpoint; writing there would destroy it; choose another "
                f"{what}"
            )
    _check_creatable(path.parent, what, path)
    return path


def output_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Create the folder ``path`` (and its parents) if needed; returns it.

    Raises:
        OutputError: ``path``, or a folder above it, exists and is not a folder.
    """
    path = check_output_dir(path, what)
    path.mkdir(parents=True, exist_ok=True)
    return path
