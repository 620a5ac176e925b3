"""Frames stored as image files in a folder, named by a template: :class:`FrameFolderReader`.

It exposes ``num_frames`` and ``get_frames(indices) -> uint8 array (N, H, W, 3)`` (RGB, ``N =
len(indices)``, indices 0-based, repeats allowed), as :class:`~tcm.data.video_reader.VideoReader`
does; problems with the folder or its images raise :class:`~tcm.data.bad_video.BadVideoError`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import wait
from pathlib import Path

import numpy as np
from PIL import Image

from tcm.data.bad_video import (
    BAD_FRAME,
    EMPTY,
    MISSING,
    MISSING_FRAME,
    NOT_A_VIDEO,
    TOO_FEW_FRAMES,
    BadVideoError,
    unreadable,
)
from tcm.data.decode_pool import map_list, thread_pool
from tcm.data.frame_names import DEFAULT_FRAME_TEMPLATE, check_frame_template, format_frame_name


def image_to_rgb(image: Image.Image) -> np.ndarray:
    """A decoded image as ``(H, W, 3)`` uint8 RGB.

    16-bit grey (PNG's ``I;16`` and its byte orders, or ``I``) is scaled to 8 bits (``0..65535``
    onto ``0..255``), where a plain conversion would clip everything above 255 to white.

    Example:
        >>> grey = Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.uint16))
        >>> grey.mode, image_to_rgb(grey)[0, :, 0].tolist()
        ('I;16', [0, 128, 255])
    """
    if image.mode == "RGB":  # JPEG frames decode as RGB: converting them would only copy
        return np.asarray(image)
    if image.mode.startswith("I;16") or image.mode == "I":
        values = np.clip(np.asarray(image).astype(np.int64), 0, 65535)
        grey = ((values * 255 + 32767) // 65535).astype(np.uint8)  # (H, W), rounded
        return np.repeat(grey[..., None], 3, axis=2)
    return np.asarray(image.convert("RGB"))


class FrameFolderReader:
    """Frames stored as image files in a folder, named by a template.

    Args:
        path: the folder.
        num_frames: frames in the folder (from the list file); counted on disk when ``None``.
        template: file name of frame ``n``, ``{}``- or ``%``-style: ``"img_{:05d}.jpg"``.
        start_index: number of the first frame on disk (1 for ``img_00001.jpg``, or 0).
        threads: images decoded in parallel threads by one :meth:`get_frames` call (0: one per
            CPU core; PIL releases the GIL while decoding). 1 suits DataLoader workers.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        num_frames: int | None = None,
        template: str = DEFAULT_FRAME_TEMPLATE,
        start_index: int = 1,
        threads: int = 1,
    ) -> None:
        if threads < 0:
            raise ValueError(f"threads must be 0 (one per core) or more, got {threads}")
        self.threads = threads or os.cpu_count() or 1
        self.path = Path(path)
        try:
            is_dir, exists = self.path.is_dir(), self.path.exists()
        except OSError as error:
            raise unreadable(self.path, error) from None
        if not is_dir:
            if exists:
                raise BadVideoError(self.path, NOT_A_VIDEO, "expected a folder of frames")
            raise BadVideoError(self.path, MISSING, "no such folder")
        self.template = check_frame_template(template)
        self.start_index = start_index
        if num_frames is None:
            from tcm.data.media_lookup import count_frames

            try:
                num_frames = count_frames(self.path)
            except OSError as error:
                raise unreadable(self.path, error) from None
        if num_frames <= 0:
            raise BadVideoError(self.path, EMPTY, "no frame")
        self._count = num_frames

    @property
    def num_frames(self) -> int:
        return self._count

    def frame_path(self, index: int) -> Path:
        return self.path / format_frame_name(self.template, index + self.start_index)

    def _load(self, index: int) -> np.ndarray:
        path = self.frame_path(index)
        try:
            with Image.open(path) as image:
                return image_to_rgb(image)
        except FileNotFoundError:
            raise self._absent(path) from None
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            raise BadVideoError(self.path, BAD_FRAME, f"{path.name}: {error}") from None

    def _absent(self, path: Path) -> BadVideoError:
        """The error for the frame file ``path``, which is not there: one frame missing, fewer
        frames than claimed, or frames named otherwise than the template says."""
        if self.frame_path(self._count - 1).exists():
            return BadVideoError(self.path, MISSING_FRAME, f"{path.name} absent")
        from tcm.data.annotations import IMAGE_EXTENSIONS

        with os.scandir(self.path) as entries:
            images = sorted(e.name for e in entries if e.name.lower().endswith(IMAGE_EXTENSIONS))
        named = {self.frame_path(i).name for i in range(self._count)}
        matching = sum(name in named for name in images)
        if images and not matching:
            kinds = "/".join(sorted({os.path.splitext(name)[1] for name in images}))
            return BadVideoError(
                self.path,
                MISSING_FRAME,
                f"{path.name} absent: the frame template {self.template!r} (first number "
                f"{self.start_index}) matches none of the {len(images)} {kinds} images here, "
                f"such as {images[0]}; set the frame template to their names",
            )
        detail = f"{matching} on disk, {self._count} claimed"
        return BadVideoError(self.path, TOO_FEW_FRAMES, detail)

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        """Load the frames at ``indices`` (0-based). Returns uint8 ``(len(indices), H, W, 3)``."""
        indices = [int(i) for i in indices]
        if not indices:
            raise ValueError("no frame index given")
        for index in indices:
            if not 0 <= index < self._count:
                raise ValueError(f"frame index {index} out of range [0, {self._count})")
        unique = list(dict.fromkeys(indices))
        loaded = dict(zip(unique, self._load_all(unique), strict=True))
        shapes = {frame.shape for frame in loaded.values()}
        if len(shapes) > 1:
            raise BadVideoError(self.path, BAD_FRAME, f"frames of different sizes {sorted(shapes)}")
        out = np.empty((len(indices), *shapes.pop()), dtype=np.uint8)
        for row, index in enumerate(indices):
            out[row] = loaded[index]
        return out

    def _load_all(self, indices: list[int]) -> list[np.ndarray]:
        """The frames at ``indices``, in order: in this thread, or with :attr:`threads` > 1 in
        as many stretches, all but the first in the decoding threads' pool."""
        count = min(self.threads, len(indices))
        if count <= 1:
            return [self._load(index) for index in indices]
        stretches = [[int(i) for i in part] for part in np.array_split(indices, count)]
        pool = thread_pool(count - 1)
        futures = [pool.submit(map_list, self._load, part) for part in stretches[1:]]
        try:
            frames = map_list(self._load, stretches[0])
        finally:
            wait(futures)  # no thread may still read when this returns or raises
        for future in futures:  # the earliest failure first, as reading in order would
            frames += future.result()
        return frames

    def check_all(self) -> int:
        """Decode every frame; returns the count. Raises :class:`BadVideoError` on the first bad one."""
        shape = None
        for index in range(self._count):
            frame = self._load(index)
            if shape is not None and frame.shape != shape:
                raise BadVideoError(self.path, BAD_FRAME, f"frame {index} has size {frame.shape}")
            shape = frame.shape
        return self._count

    def close(self) -> None:
        pass

    def __enter__(self) -> FrameFolderReader:
        return self

    def __exit__(self, *exc) -> None:
        pass
