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

``data`` holds what inference needs to preprocess a video as in testing: ``num_segments``,
``sampling`` (``"segments"`` or ``"dense"``, with ``dense_stride``), ``resize`` (short side as
an int, or ``[H, W]``), ``input_size``, ``mean`` and ``std``.

Everything a later command needs (building the model, naming classes, preprocessing inputs)
comes from the checkpoint alone.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

FORMAT_NAME = "tcm-checkpoint"
FORMAT_VERSION = 1


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``.

    A reader never sees a half-written file, even if the process is killed mid-write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise
    return path


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


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint in the project's format; a file in another format is a ``ValueError``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or foreign files
        raise ValueError(f"{path}: not a readable checkpoint ({error})") from error
    if not isinstance(obj, dict) or obj.get("format") != FORMAT_NAME:
        raise ValueError(
            f"{path}: not a tcm checkpoint (for a reference release checkpoint, "
            "run `tcm convert` first)"
        )
    if obj.get("version", 0) > FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint version {obj['version']} is newer than this tcm")
    return obj


def load_labels(path: str | os.PathLike) -> list[str]:
    """Class names from a text file, one per line (index = line number - 1)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such label file")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    names = [name for name in names if name]
    if not names:
        raise ValueError(f"{path}: label file holds no class names")
    return names
