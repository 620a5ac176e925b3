"""Reading the user's text files and making output folders, with errors that name the path."""

from __future__ import annotations

import os
from pathlib import Path

from tcm.errors import OutputError


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


def check_output_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """``path`` if it is a folder or can become one (nothing is created).

    Raises:
        OutputError: ``path``, or a folder above it, exists and is not a folder.
    """
    path = Path(path)
    for folder in (path, *path.parents):
        if folder.exists():
            if not folder.is_dir():
                raise OutputError(f"{folder}: exists and is not a folder (the {what})")
            break
    return path


def output_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Create the folder ``path`` (and its parents) if needed; returns it.

    Raises:
        OutputError: ``path``, or a folder above it, exists and is not a folder.
    """
    path = check_output_dir(path, what)
    path.mkdir(parents=True, exist_ok=True)
    return path
