"""Inputs of inference: what a path holds, and how a checkpoint says to preprocess it.

A path given to inference is one of:

- a video file (any container PyAV reads);
- a frame folder: a folder holding image files (``img_00001.jpg``, ``00001.jpg``, ...) and
  no video file, whose name template and first number are found from the files;
- a folder of videos: every video file and frame folder below it, sorted by path.

Preprocessing is the test-time pipeline of :mod:`tcm.data` (sampling, resize, centre crop,
normalisation) that the checkpoint records (:class:`tcm.data.Preprocessing`).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from tcm.data.annotations import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, VideoRecord
from tcm.data.bad_video import EMPTY, NOT_A_VIDEO, BadVideoError, check_media_path, unreadable
from tcm.data.datasets import VideoDataset, build_dataset
from tcm.data.media import open_media
from tcm.data.preprocessing import Preprocessing
from tcm.data.storage_options import DEFAULT_STORAGE, StorageOptions
from tcm.data.transforms import normalize

logger = logging.getLogger(__name__)


def find_frame_template(folder: str | os.PathLike) -> tuple[str, int]:
    """Name template and first number of the frames in ``folder``.

    The last run of digits in the alphabetically first image name is the frame number:
    ``img_00001.jpg`` gives ``("img_{:05d}.jpg", 1)``, ``000000.png`` gives ``("{:06d}.png", 0)``.

    Raises:
        BadVideoError: the folder holds no image, names without a number, or cannot be read.
    """
    folder = Path(folder)
    try:
        with os.scandir(folder) as entries:
            names = sorted(
                entry.name
                for entry in entries
                if entry.is_file() and entry.name.lower().endswith(IMAGE_EXTENSIONS)
            )
    except OSError as error:
        raise unreadable(folder, error) from None
    if not names:
        raise BadVideoError(folder, EMPTY, "no image file in the folder")
    numbers = list(re.finditer(r"\d+", names[0]))
    if not numbers:
        raise BadVideoError(folder, NOT_A_VIDEO, f"frame name {names[0]!r} has no frame number")
    match = numbers[-1]  # the frame number is the last run of digits
    digits = match.group()
    prefix = names[0][: match.start()].replace("{", "{{").replace("}", "}}")
    suffix = names[0][match.end() :].replace("{", "{{").replace("}", "}}")
    width = f"0{len(digits)}" if len(digits) > 1 and digits.startswith("0") else ""
    return f"{prefix}{{:{width}d}}{suffix}", int(digits)


def _media_files(path: Path) -> tuple[int, int]:
    """``(images, videos)``: how many image files and video files ``path`` holds itself."""
    images = videos = 0
    with os.scandir(path) as entries:
        for entry in entries:
            name = entry.name.lower()
            if entry.is_file():
                images += name.endswith(IMAGE_EXTENSIONS)
                videos += name.endswith(VIDEO_EXTENSIONS)
    return images, videos


def is_frame_folder(path: Path) -> bool:
    """A folder holding image files and no video file (a folder holding both is a folder of
    videos whose images are left out, a cover or a poster beside them)."""
    if not path.is_dir():
        return False
    images, videos = _media_files(path)
    return images > 0 and videos == 0


def expand_inputs(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Inputs to classify: video files and frame folders.

    A video file or a frame folder stands for itself; any other folder stands for the video
    files and frame folders below it (sorted; files with other extensions are ignored). A
    folder holding both video files and images is one of videos: its images are left out,
    with one warning. A path that does not exist is kept, so that it is reported as missing.

    Example:
        >>> expand_inputs(["clip.mp4", "frames/clip_01", "more_videos/"])  # doctest: +SKIP
        [PosixPath('clip.mp4'), PosixPath('frames/clip_01'), PosixPath('more_videos/a.mp4'), ...]
    """
    out: list[Path] = []
    for path in map(Path, paths):
        if not path.is_dir() or is_frame_folder(path):
            out.append(path)
            continue
        found = []
        for root, dirs, files in os.walk(path):
            dirs.sort()
            root_path = Path(root)
            if root_path != path and is_frame_folder(root_path):
                found.append(root_path)
                dirs.clear()
                continue
            videos = [root_path / f for f in files if f.lower().endswith(VIDEO_EXTENSIONS)]
            images = sum(f.lower().endswith(IMAGE_EXTENSIONS) for f in files)
            if videos and images:
                logger.warning(
                    "%s holds %d video files and %d images: the videos are predicted, the "
                    "images left out (put frames in a folder of their own to predict them)",
                    root_path,
                    len(videos),
                    images,
                )
            found += videos
        if not found:
            logger.warning("%s: no video file or frame folder found in it", path)
        out += sorted(found)
    return out


def _dataset(path: Path, prep: Preprocessing) -> VideoDataset:
    """A one-sample test dataset of :mod:`tcm.data` for ``path`` (uint8 frames)."""
    storage = DEFAULT_STORAGE
    if path.is_dir():
        template, start = find_frame_template(path)
        storage = StorageOptions(frame_template=template, frame_start_index=start)
    record = VideoRecord(str(path), 0)
    return build_dataset([record], ".", prep, train=False, uint8=True, storage=storage)


def read_clip(path: str | os.PathLike, prep: Preprocessing) -> torch.Tensor:
    """Decode, sample, resize and crop one input, exactly as the test pipeline does.

    Args:
        path: a video file or a frame folder.
        prep: the preprocessing.

    Returns:
        uint8 ``(V*T, 3, S, S)`` RGB frames: ``V = num_clips * num_crops`` views in blocks of
            ``T``, ``S = input_size``.

    Raises:
        BadVideoError: the input cannot be read (``.reason`` says why).
    """
    path = Path(path)
    check_media_path(path, folders=True)
    clip, _ = _dataset(path, prep)[0]
    return clip


def sampled_frame_indices(path: str | os.PathLike, prep: Preprocessing) -> np.ndarray:
    """Source frame numbers (0-based) that :func:`read_clip` takes: ``(num_clips, T)``."""
    dataset = _dataset(Path(path), prep)
    with open_media(
        path,
        frame_template=dataset.storage.frame_template,
        frame_start_index=dataset.storage.frame_start_index,
    ) as reader:
        return dataset.sampler(reader.num_frames, train=False, num_clips=prep.num_clips)


def to_model_input(frames: torch.Tensor, prep: Preprocessing) -> torch.Tensor:
    """uint8 ``(V*T, 3, S, S)`` -> normalised float32 ``(V*T, 3, S, S)``."""
    return normalize(frames, prep.mean, prep.std)
