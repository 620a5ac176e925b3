"""The project's checkpoint format and atomic file writes.

A checkpoint is a dict saved with ``torch.save`` and always read with ``weights_only=True``::

    {
        "format": "tcm-checkpoint", "version": 1,
        "model": {"name": str, "num_classes": int, "num_segments": int, "kwargs": dict},
        "classes": list[str] | None,        # class names, index = position
        "state_dict": dict[str, Tensor],    # the recognizer's weights
        "data": dict,                       # preprocessing, see below
        ...                                 # training state, when written by ``tcm train``
    }

``data`` is the model's :class:`tcm.data.Preprocessing` (:meth:`~tcm.data.Preprocessing.to_dict`):
sampling, resize, crop size, training augmentation, test views, ``mean`` and ``std``.

Everything a later command needs (building the model, naming classes, preprocessing inputs)
comes from the checkpoint alone.
"""

from __future__ import annotations

import os
import secrets
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

FORMAT_NAME = "tcm-checkpoint"
FORMAT_VERSION = 1


def _create_temporary(path: Path) -> tuple[int, Path]:
    """A new file beside ``path`` (``.NAME.RANDOM.tmp``), created with the mode of any file
    the process writes (0666 less the umask): ``(descriptor, path)``."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


def _os_error(error: BaseException) -> OSError | None:
    """The ``OSError`` behind ``error`` (torch reports a failed write as a ``RuntimeError``
    raised while handling it), or ``None``."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``.

    A reader never sees a half-written file, even if the process is killed mid-write. The file
    gets the same permissions as any other file the process writes (the umask applies).

    Raises:
        OSError: the file could not be written (disk full, permission denied), with ``path``
            as its file name; the previous file at ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        cause = _os_error(error) if isinstance(error, Exception) else None
        if cause is not None and cause.errno is not None:
            raise OSError(cause.errno, cause.strerror, str(path)) from error
        raise
    _sync_folder(path.parent)
    return path


def _sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: not every file system allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def make_checkpoint(
    state_dict: Mapping[str, torch.Tensor],
    *,
    model_name: str,
    num_classes: int,
    num_segments: int,
    model_kwargs: Mapping[str, Any] | None = None,
    classes: list[str] | None = None,
    data: Mapping[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Assemble a checkpoint dict in the project's format (see the module docstring)."""
    if classes is not None and len(classes) != num_classes:
        raise ValueError(f"{len(classes)} class names given for a model with {num_classes} classes")
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "model": {
            "name": model_name,
            "num_classes": int(num_classes),
            "num_segments": int(num_segments),
            "kwargs": dict(model_kwargs or {}),
        },
        "classes": list(classes) if classes is not None else None,
        "state_dict": dict(state_dict),
        "data": dict(data or {}),
        **extra,
    }


# The first bytes of what torch.save writes: a zip archive, or (before torch 1.6) a pickle.
_TORCH_SAVE_MAGIC = (b"PK\x03\x04", b"\x80")


def not_saved_by_torch(path: Path) -> str:
    """Why ``path`` cannot be a file ``torch.save`` wrote (``""`` when it may be one)."""
    with open(path, "rb") as handle:
        head = handle.read(64)
    if not head:
        return "an empty file"
    if head.startswith(_TORCH_SAVE_MAGIC):
        return _torchscript_reason(path) or _inflation_problem(path)
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return f"not a file torch.save writes: it begins with {head[:8]!r}"
    return "a text file, not one torch.save writes"


MAX_INFLATION = 20
"""How many times its size a file's entries may hold once inflated: ``torch.save`` stores them
uncompressed (about 1), a zip tool's recompression of weights gives little more; a file that
inflates further is refused before it is read into memory."""


def _inflation_problem(path: Path) -> str:
    """Why the zip archive ``path`` is refused before loading (``""`` when it is not)."""
    if not zipfile.is_zipfile(path):
        return ""
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(entry.file_size for entry in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return ""  # torch.load says what is wrong with it
    size = path.stat().st_size
    if unpacked <= MAX_INFLATION * size + (1 << 20):
        return ""
    return (
        f"its entries inflate to {unpacked / 1e6:.0f} MB from {size / 1e3:.0f} KB, more than "
        f"{MAX_INFLATION} times the file (torch.save stores them uncompressed); refused before "
        "loading"
    )


def _torchscript_reason(path: Path) -> str:
    """Why a zip archive at ``path`` is not a ``torch.save`` file: ``""``, or that it holds a
    TorchScript program (``torch.load(weights_only=True)`` refuses those with a long advice to
    drop ``weights_only``)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return ""  # torch.load says what is wrong with it
    if any(name.endswith("/constants.pkl") for name in names) and any(
        "/code/" in name for name in names
    ):
        return (
            "a TorchScript model, as torch.jit.save and `tcm export --format torchscript` "
            "write; give the checkpoint it was made from"
        )
    return ""


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint in the project's format; a file in another format is a ``ValueError``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    not_saved = not_saved_by_torch(path)
    if not_saved:
        raise ValueError(f"{path}: not a checkpoint ({not_saved})")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or foreign files
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"{path}: not a readable checkpoint (damaged or cut short? {reason})"
        ) from error
    if not isinstance(obj, dict) or obj.get("format") != FORMAT_NAME:
        raise ValueError(
            f"{path}: not a tcm checkpoint (for a reference release checkpoint, "
            "run `tcm convert` first)"
        )
    if obj.get("version", 0) > FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint version {obj['version']} is newer than this tcm")
    return obj


def is_tcm_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a readable checkpoint in the project's format."""
    path = Path(path)
    if not zipfile.is_zipfile(path):
        return False
    try:
        load_checkpoint(path)
    except (ValueError, OSError):
        return False
    return True
