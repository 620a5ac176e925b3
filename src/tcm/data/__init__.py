"""Data pipeline: files on disk -> normalised clip batches ``(N, V*T, 3, H, W)``.

Modules, in the order data flows through them:

- :mod:`~tcm.data.official_formats`: official annotation formats (Something-Something V1/V2,
  Kinetics-400, UCF-101, HMDB-51), looked up on disk by :mod:`~tcm.data.media_lookup`;
  :mod:`~tcm.data.annotations`: the project's list files (``path label`` for videos, ``path
  num_frames label`` for frame folders; ``classes.txt`` one name per line), held by datasets
  in packed form (:mod:`~tcm.data.record_table`, read once per process).
- :mod:`~tcm.data.video_reader`: :class:`VideoReader` (PyAV, decodes only the frames it needs,
  seeking to key frames); :mod:`~tcm.data.frame_folder`: :class:`FrameFolderReader` (JPEG
  folders, any name template of :mod:`~tcm.data.frame_names`, 0- or 1-based);
  :mod:`~tcm.data.media`: :func:`open_media`, the one a path needs. Bad input raises
  :class:`BadVideoError` (:mod:`~tcm.data.bad_video`; a ``TcmError`` and a ``ValueError``;
  ``.path``, ``.reason``).
- :mod:`~tcm.data.sampling`: TSN segments and dense (fixed stride) clip sampling.
- :mod:`~tcm.data.preprocessing`: :class:`Preprocessing`, the one description of sampling,
  geometry, augmentation, test views and normalisation that training records in checkpoints
  and testing and inference read back.
- :mod:`~tcm.data.transforms`: clip-level augmentation on uint8 tensors (resize, TSN
  multi-scale crop, random/centre/three crop, flip with mirror classes, normalisation).
- :mod:`~tcm.data.storage_options`: :class:`StorageOptions`, how a data set's samples are
  stored and read (frame names, bad sample policy, decoding threads, seed).
- :mod:`~tcm.data.datasets`: :class:`VideoDataset` and :func:`build_dataset`.
- :mod:`~tcm.data.checks` (``tcm check-data``) and :mod:`~tcm.data.extract` (frame extraction).

The data package never imports the models: mean and std come from the model's configuration.
Its names are imported on first use, so ``import tcm.data.frame_names`` loads neither PyAV nor
PIL nor torch.

Building the standard pipelines (what the training engine calls)::

    from torch.utils.data import DataLoader
    from tcm.data import Preprocessing, SkipReport, build_dataset, collate_clips
    prep = Preprocessing(
        num_segments=8, sampling="segments",          # or "dense", dense_stride=8
        input_size=224, resize=(240, 320),            # or resize=256 (short side),
        scales=(1, .875, .75, .66), flip=True,        #    short_side_range=(256, 320),
        mean=model.mean, std=model.std,               #    train_crop="random" (Kinetics)
        num_clips=1, num_crops=1,                     # test views
    )
    storage = StorageOptions(frame_template="{:05d}.jpg", frame_start_index=1)
    train_set = build_dataset(
        "lists/sthv1/train.txt", "/data/sthv1/frames", prep, train=True,
        class_names="lists/sthv1/classes.txt",
        storage=storage.replace(bad_sample_policy="skip", seed=cfg.seed),
    )
    val_set = build_dataset(
        "lists/sthv1/val.txt", "/data/sthv1/frames", prep, train=False, storage=storage,
    )
    loader = DataLoader(train_set, batch_size=32, shuffle=True, num_workers=8,
                        collate_fn=collate_clips, drop_last=True)
    report = SkipReport()
    for epoch in range(start_epoch, epochs):
        train_set.set_epoch(epoch)   # before iter(loader): draws are f(seed, epoch, index)
        report.reset()
        for batch in loader:
            clips, labels = batch    # (N, V*T, 3, H, W) float32, (N,) int64
            report.update(batch)     # batch.skipped: SkippedSample(index, path, reason, message)
            ...
        report.log_summary(epoch)    # count, reasons and paths of skipped samples

Items are ``(clip, label)``: ``clip`` float32 ``(V*T, 3, H, W)`` with ``V = num_clips *
num_crops`` views in contiguous blocks of ``T`` frames (``clip.view(V, T, 3, H, W)``); with
``uint8=True``, uint8 0..255 and not normalised. The training augmentation of sample ``i`` at
epoch ``e`` is a deterministic function of ``(seed, e, i)``, independent of workers and order.
"""

from __future__ import annotations

import importlib

# Public name -> module that defines it.
_EXPORTS = {
    "DEFAULT_FRAME_TEMPLATE": "tcm.data.frame_names",
    "PARSERS": "tcm.data.official_formats",
    "Annotation": "tcm.data.official_formats",
    "BadVideoError": "tcm.data.bad_video",
    "CenterCrop": "tcm.data.transforms",
    "ClipBatch": "tcm.data.clip_batch",
    "ClipSample": "tcm.data.clip_batch",
    "ClipSampler": "tcm.data.sampling",
    "Compose": "tcm.data.transforms",
    "DatasetAnnotations": "tcm.data.official_formats",
    "DenseSampler": "tcm.data.sampling",
    "FrameFolderReader": "tcm.data.frame_folder",
    "MultiScaleCrop": "tcm.data.transforms",
    "Preprocessing": "tcm.data.preprocessing",
    "RandomCrop": "tcm.data.transforms",
    "RandomHorizontalFlip": "tcm.data.transforms",
    "RandomShortSideResize": "tcm.data.transforms",
    "RecordTable": "tcm.data.record_table",
    "Resize": "tcm.data.transforms",
    "SegmentSampler": "tcm.data.sampling",
    "SkipReport": "tcm.data.clip_batch",
    "SkippedSample": "tcm.data.clip_batch",
    "StorageOptions": "tcm.data.storage_options",
    "ThreeCrop": "tcm.data.transforms",
    "VideoDataset": "tcm.data.datasets",
    "VideoReader": "tcm.data.video_reader",
    "VideoRecord": "tcm.data.annotations",
    "build_dataset": "tcm.data.datasets",
    "build_sampler": "tcm.data.sampling",
    "build_test_transform": "tcm.data.transforms",
    "build_train_transform": "tcm.data.transforms",
    "collate_clips": "tcm.data.clip_batch",
    "loader_errors": "tcm.data.clip_batch",
    "mirror_classes": "tcm.data.transforms",
    "multi_scale_crop_params": "tcm.data.transforms",
    "open_media": "tcm.data.media",
    "parse_annotations": "tcm.data.official_formats",
    "parse_hmdb51": "tcm.data.official_formats",
    "parse_kinetics400": "tcm.data.official_formats",
    "parse_sthv1": "tcm.data.official_formats",
    "parse_sthv2": "tcm.data.official_formats",
    "parse_ucf101": "tcm.data.official_formats",
    "read_classes": "tcm.data.annotations",
    "read_list": "tcm.data.annotations",
    "read_table": "tcm.data.record_table",
    "resolve_media": "tcm.data.media_lookup",
    "write_classes": "tcm.data.annotations",
    "write_list": "tcm.data.annotations",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tcm.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
