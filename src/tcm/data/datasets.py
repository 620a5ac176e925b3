"""The dataset: list file -> decoded, sampled, augmented and normalised clips.

An item is ``(clip, label)``: ``clip`` float32 ``(V * T, 3, H, W)`` normalised with the given
mean/std (or uint8 0..255 with ``uint8=True``), ``V = num_clips * num_crops`` views in
contiguous blocks of ``T`` frames (``clip.view(V, T, 3, H, W)``), ``label`` an int.

Randomness: the augmentation of sample ``i`` at epoch ``e`` is a deterministic function of
``(seed, e, i)`` (a :class:`numpy.random.Generator` made per item), whatever the number of
workers or the order of loading, so a run resumed at an epoch draws the same clips. Call
:meth:`VideoDataset.set_epoch` before iterating a DataLoader for that epoch (the epoch lives
in shared memory, so persistent workers see it too).

Bad samples (:class:`~tcm.data.bad_video.BadVideoError`: missing, truncated, not a video, ...)
follow ``bad_sample_policy``: ``"raise"`` propagates the error (it names the file and the
reason); ``"skip"`` logs a warning and, in training, loads a replacement sample drawn
deterministically from ``(seed, epoch, i)``. A test dataset (``train=False``) never replaces a
sample, which would score another video in its place: the item's clip is ``None`` and
:func:`~tcm.data.clip_batch.collate_clips` leaves it out of the batch (its position in ``ClipBatch.excluded``).
Skips travel with the data (:mod:`tcm.data.clip_batch`): each item is a
:class:`~tcm.data.clip_batch.ClipSample` that names the samples replaced to produce it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from tcm.data.annotations import VideoRecord, read_classes
from tcm.data.bad_video import BAD_LABEL, TOO_SMALL, BadVideoError
from tcm.data.clip_batch import ClipSample, SkippedSample
from tcm.data.media import open_media
from tcm.data.preprocessing import Preprocessing
from tcm.data.record_table import RecordTable, read_table
from tcm.data.sampling import ClipSampler, build_sampler
from tcm.data.storage_options import DEFAULT_STORAGE, StorageOptions
from tcm.data.transforms import (
    CropOutsideFrameError,
    build_test_transform,
    build_train_transform,
    mirror_classes,
    normalize,
)

logger = logging.getLogger(__name__)


class VideoDataset(Dataset):
    """Clips of the videos (or frame folders) of a list file.

    Args:
        records: samples: a :class:`~tcm.data.record_table.RecordTable`
            (:func:`~tcm.data.record_table.read_table`) or records, which are packed into one
            (forked DataLoader workers share it without copying it page by page).
        root: folder the records' paths are relative to.
        sampler: frame sampler (:mod:`tcm.data.sampling`).
        transform: ``transform(clip, label, rng) -> (clip, label)`` on uint8 ``(T, 3, H, W)``,
            returning ``(T, 3, h, w)`` or ``(crops, T, 3, h, w)`` (:mod:`tcm.data.transforms`).
        train: random sampling and augmentation (one clip) or deterministic test views.
        num_clips: clips per video (testing).
        mean: per-channel mean for 0..1 pixels; ignored with ``uint8=True``.
        std: per-channel standard deviation, likewise.
        uint8: return uint8 0..255 clips instead of normalised float32.
        num_classes: labels must lie in ``[0, num_classes)`` (not checked when ``None``).
        storage: frame folder names, the bad sample policy (see the module docstring),
            retries, decoding threads and the per-item seed.
    """

    def __init__(
        self,
        records: Sequence[VideoRecord],
        root: str | os.PathLike,
        *,
        sampler: ClipSampler,
        transform,
        train: bool,
        num_clips: int = 1,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        uint8: bool = False,
        num_classes: int | None = None,
        storage: StorageOptions = DEFAULT_STORAGE,
    ) -> None:
        if not uint8 and (mean is None or std is None):
            raise ValueError("mean and std are required for normalised clips (or pass uint8=True)")
        if train and num_clips != 1:
            raise ValueError("training takes one clip per video")
        self.records = RecordTable.from_records(records)
        if not len(self.records):
            raise ValueError("the dataset has no sample")
        self.root = Path(root)
        self.sampler = sampler
        self.transform = transform
        self.train = train
        self.num_clips = num_clips
        self.mean = None if mean is None else tuple(float(m) for m in mean)
        self.std = None if std is None else tuple(float(s) for s in std)
        self.uint8 = uint8
        self.num_classes = num_classes
        self.storage = storage
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        if num_classes is not None:
            labels = self.records.labels
            bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
            if len(bad) and storage.bad_sample_policy == "raise":
                raise self._label_error(self.records[bad[0]])
            if len(bad):
                logger.warning(
                    "%d samples have a label outside [0, %d), e.g. %s",
                    len(bad),
                    num_classes,
                    self.records.path(bad[0]),
                )

    def __len__(self) -> int:
        return len(self.records)

    @property
    def num_frames_per_clip(self) -> int:
        return self.sampler.num_segments

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Select the random draws of ``epoch``; call before iterating the DataLoader."""
        self._epoch.fill_(int(epoch))

    def _label_error(self, record: VideoRecord) -> BadVideoError:
        where = f" (list line {record.line})" if record.line else ""
        return BadVideoError(
            self.root / record.path,
            BAD_LABEL,
            f"label {record.label} not in [0, {self.num_classes}){where}",
        )

    def load(
        self, record: VideoRecord, rng: np.random.Generator | None
    ) -> tuple[torch.Tensor, int]:
        """Decode, sample and transform one record (no bad-sample policy): ``(clip, label)``."""
        if self.num_classes is not None and not 0 <= record.label < self.num_classes:
            raise self._label_error(record)
        path = self.root / record.path
        with open_media(
            path,
            num_frames=record.num_frames,
            frame_template=self.storage.frame_template,
            frame_start_index=self.storage.frame_start_index,
            threads=self.storage.decode_threads,
        ) as reader:
            num_frames = record.num_frames or reader.num_frames
            indices = self.sampler(num_frames, train=self.train, rng=rng, num_clips=self.num_clips)
            frames = reader.get_frames(indices.reshape(-1))  # (C*T, H, W, 3)
        frames_t = torch.from_numpy(frames).permute(0, 3, 1, 2)  # (C*T, 3, H, W), channels-last
        try:
            clip, label = self._views(frames_t, indices.shape[1], record.label, rng)
        except CropOutsideFrameError as error:
            raise BadVideoError(path, TOO_SMALL, f"{error}; resize the frames first") from None
        if self.uint8:
            return clip.contiguous(), int(label)
        return normalize(clip, self.mean, self.std), int(label)

    def _views(
        self, frames: torch.Tensor, t: int, label: int, rng: np.random.Generator | None
    ) -> tuple[torch.Tensor, int]:
        """Transform each clip of ``T`` frames: uint8 ``(C*T, 3, H, W)`` -> ``(V*T, 3, h, w)``
        and the label (a flip may swap it)."""
        views, out_label = [], label
        for c in range(frames.shape[0] // t):
            out, view_label = self.transform(frames[c * t : (c + 1) * t], label, rng)
            if c == 0:
                out_label = view_label
            views.append(out.reshape(-1, t, *out.shape[-3:]))  # (crops, T, 3, h, w)
        if len(views) == 1:  # a training clip: no copy
            return views[0].flatten(0, 1), out_label
        return torch.cat(views).flatten(0, 1), out_label

    def __getitem__(self, index: int) -> ClipSample:
        if not self.train:
            return self._test_item(index)
        epoch = self.epoch
        rng = np.random.default_rng([self.storage.seed, epoch, index, 0])
        current, skipped = index, []
        for _ in range(self.storage.max_retries + 1):
            record = self.records[current]
            try:
                clip, label = self.load(record, rng)
                return ClipSample(clip, label, skipped)
            except BadVideoError as error:
                if self.storage.bad_sample_policy == "raise":
                    raise
                logger.warning("skipping sample %d: %s", current, error)
                skipped.append(SkippedSample(current, record.path, error.reason, str(error)))
                replace = np.random.default_rng([self.storage.seed, epoch, index, 1 + len(skipped)])
                current = int(replace.integers(len(self.records)))
                rng = np.random.default_rng([self.storage.seed, epoch, index, 0, len(skipped)])
        raise BadVideoError(
            self.root / self.records.path(index),
            skipped[0].reason,
            f"{len(skipped)} bad samples in a row while replacing it; last: {skipped[-1].message}",
        )

    def _test_item(self, index: int) -> ClipSample:
        """A test item: a bad sample is never replaced (another video would be scored in its
        place); under ``"skip"`` its clip is ``None`` and it is reported in ``skipped``."""
        record = self.records[index]
        try:
            clip, label = self.load(record, None)
        except BadVideoError as error:
            if self.storage.bad_sample_policy == "raise":
                raise
            logger.warning("leaving out sample %d: %s", index, error)
            return ClipSample(
                None, record.label, [SkippedSample(index, record.path, error.reason, str(error))]
            )
        return ClipSample(clip, label)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({len(self)} samples, root={str(self.root)!r}, train={self.train}, "
            f"sampler={type(self.sampler).__name__}({self.sampler.num_segments}), clips={self.num_clips}, "
            f"transform={self.transform!r}, policy={self.storage.bad_sample_policy!r})"
        )


def _class_names(
    class_names: Sequence[str] | str | os.PathLike | None, num_classes: int | None
) -> list[str] | None:
    """The names given, or read from a ``classes.txt``; their count must be ``num_classes``."""
    if class_names is None:
        return None
    names = (
        read_classes(class_names)
        if isinstance(class_names, str | os.PathLike)
        else list(class_names)
    )
    if num_classes is not None and num_classes != len(names):
        raise ValueError(f"num_classes={num_classes} but {len(names)} class names given")
    return names


def build_dataset(
    list_file: str | os.PathLike | Sequence[VideoRecord],
    root: str | os.PathLike,
    prep: Preprocessing,
    *,
    train: bool,
    class_names: Sequence[str] | str | os.PathLike | None = None,
    num_classes: int | None = None,
    uint8: bool = False,
    storage: StorageOptions = DEFAULT_STORAGE,
) -> VideoDataset:
    """The standard train or test dataset of ``prep``. See :mod:`tcm.data` for the conventions.

    Args:
        list_file: a list file (``path label`` / ``path num_frames label``; read once per
            process, :func:`~tcm.data.record_table.read_table`) or records.
        root: folder the list's paths are relative to.
        prep: sampling, geometry, augmentation, test views and normalisation.
        train: training (one random clip, augmented; ``prep``'s test views are not used) or
            testing (``prep.num_clips x prep.num_crops`` deterministic views).
        class_names: names or a ``classes.txt`` path; gives mirror pairs (a flip swaps their
            labels; classes with a side but no mirror are never flipped) and ``num_classes``.
        uint8: uint8 0..255 clips, not normalised.
        storage: frame folder names, bad sample policy, retries, decoding threads, seed
            (:class:`~tcm.data.storage_options.StorageOptions`).

    Returns:
        A :class:`VideoDataset` whose items are ``(clip (V*T, 3, S, S), label)``.

    Example:
        >>> prep = Preprocessing(num_segments=8, resize=(240, 320))
        >>> ds = build_dataset("lists/sthv1/train.txt", "/data/sthv1/frames", prep, train=True,
        ...                    class_names="lists/sthv1/classes.txt",
        ...                    storage=StorageOptions(frame_template="{:05d}.jpg"))  # doctest: +SKIP
        >>> clip, label = ds[0]; clip.shape                                       # doctest: +SKIP
        torch.Size([8, 3, 224, 224])
    """
    records = read_table(list_file) if isinstance(list_file, str | os.PathLike) else list_file
    names = _class_names(class_names, num_classes)
    num_classes = len(names) if names is not None else num_classes
    sampler = build_sampler(prep.sampling, prep.num_segments, stride=prep.dense_stride)
    if train:
        transform = build_train_transform(
            input_size=prep.input_size,
            resize=prep.resize,
            short_side_range=prep.short_side_range,
            crop=prep.train_crop,
            scales=prep.scales,
            max_distort=prep.max_distort,
            more_fix_crop=prep.more_fix_crop,
            flip=prep.flip,
            mirror=mirror_classes(names) if names is not None else None,
        )
    else:
        transform = build_test_transform(
            input_size=prep.input_size, resize=prep.resize, num_crops=prep.num_crops
        )
    return VideoDataset(
        records,
        root,
        sampler=sampler,
        transform=transform,
        train=train,
        num_clips=1 if train else prep.num_clips,
        mean=prep.mean,
        std=prep.std,
        uint8=uint8,
        num_classes=num_classes,
        storage=storage,
    )
