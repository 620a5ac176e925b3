"""Data pipeline: files on disk -> normalised clip batches ``(N, V*T, 3, H, W)``.

Modules, in the order data flows through them:

- :mod:`~tcm.data.annotations`: official annotation formats (Something-Something V1/V2,
  Kinetics-400, UCF-101, HMDB-51) and the project's list files (``path label`` for videos,
  ``path num_frames label`` for frame folders; ``classes.txt`` one name per line).
- :mod:`~tcm.data.decoding`: :class:`VideoReader` (PyAV, decodes only the frames it needs,
  seeking to key frames) and :class:`FrameFolderReader` (JPEG folders, any name template,
  0- or 1-based). Bad input raises :class:`BadVideoError` (a ``ValueError``; ``.path``,
  ``.reason``).
- :mod:`~tcm.data.sampling`: TSN segments and dense (fixed stride) clip sampling.
- :mod:`~tcm.data.preprocessing`: :class:`Preprocessing`, the one description of sampling,
  geometry, augmentation, test views and normalisation that training records in checkpoints
  and testing and inference read back.
- :mod:`~tcm.data.transforms`: clip-level augmentation on uint8 tensors (resize, TSN
  multi-scale crop, random/centre/three crop, flip with mirror classes, normalisation).
- :mod:`~tcm.data.datasets`: :class:`VideoDataset` and :func:`build_dataset`.
- :mod:`~tcm.data.checks` (``tcm check-data``) and :mod:`~tcm.data.extract` (frame extraction).

The data package never imports the models: mean and std come from the model's configuration.

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
    train_set = build_dataset(
        "lists/sthv1/train.txt", "/data/sthv1/frames", prep, train=True,
        class_names="lists/sthv1/classes.txt",
        frame_template="{:05d}.jpg", frame_start_index=1,
        bad_sample_policy="skip", seed=cfg.seed,
    )
    val_set = build_dataset(
        "lists/sthv1/val.txt", "/data/sthv1/frames", prep, train=False,
        frame_template="{:05d}.jpg",
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

from tcm.data.annotations import (
    PARSERS,
    Annotation,
    DatasetAnnotations,
    VideoRecord,
    parse_annotations,
    parse_hmdb51,
    parse_kinetics400,
    parse_sthv1,
    parse_sthv2,
    parse_ucf101,
    read_classes,
    read_list,
    resolve_media,
    write_classes,
    write_list,
)
from tcm.data.datasets import (
    ClipBatch,
    ClipSample,
    SkippedSample,
    SkipReport,
    VideoDataset,
    build_dataset,
    collate_clips,
    loader_errors,
)
from tcm.data.decoding import (
    DEFAULT_FRAME_TEMPLATE,
    BadVideoError,
    FrameFolderReader,
    VideoReader,
    open_media,
)
from tcm.data.preprocessing import Preprocessing
from tcm.data.sampling import ClipSampler, DenseSampler, SegmentSampler, build_sampler
from tcm.data.transforms import (
    CenterCrop,
    Compose,
    MultiScaleCrop,
    RandomCrop,
    RandomHorizontalFlip,
    RandomShortSideResize,
    Resize,
    ThreeCrop,
    build_test_transform,
    build_train_transform,
    mirror_classes,
    multi_scale_crop_params,
)

__all__ = [
    "DEFAULT_FRAME_TEMPLATE",
    "PARSERS",
    "Annotation",
    "BadVideoError",
    "CenterCrop",
    "ClipBatch",
    "ClipSample",
    "ClipSampler",
    "Compose",
    "DatasetAnnotations",
    "DenseSampler",
    "FrameFolderReader",
    "MultiScaleCrop",
    "Preprocessing",
    "RandomCrop",
    "RandomHorizontalFlip",
    "RandomShortSideResize",
    "Resize",
    "SegmentSampler",
    "SkipReport",
    "SkippedSample",
    "ThreeCrop",
    "VideoDataset",
    "VideoReader",
    "VideoRecord",
    "build_dataset",
    "build_sampler",
    "build_test_transform",
    "build_train_transform",
    "collate_clips",
    "loader_errors",
    "mirror_classes",
    "multi_scale_crop_params",
    "open_media",
    "parse_annotations",
    "parse_hmdb51",
    "parse_kinetics400",
    "parse_sthv1",
    "parse_sthv2",
    "parse_ucf101",
    "read_classes",
    "read_list",
    "resolve_media",
    "write_classes",
    "write_list",
]
