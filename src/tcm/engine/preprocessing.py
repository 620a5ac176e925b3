"""What a run config says about the data: the :class:`~tcm.data.Preprocessing` (frames per
clip from ``model``, sampling and geometry from ``data``, test views from ``eval``) and the
:class:`~tcm.data.StorageOptions` (frame names, bad samples, decoding threads from ``data``)."""

from __future__ import annotations

from collections.abc import Sequence

from tcm.data.preprocessing import Preprocessing
from tcm.data.storage_options import StorageOptions
from tcm.engine.config import RunConfig


def preprocessing_from_config(
    cfg: RunConfig, *, mean: Sequence[float], std: Sequence[float]
) -> Preprocessing:
    """The preprocessing of ``cfg`` (``model.num_segments``, ``data``, ``eval``'s views), with
    the model's ``mean`` and ``std``.

    Example:
        >>> cfg = RunConfig().replace(["eval.num_clips=2", "data.resize=256"])
        >>> prep = preprocessing_from_config(cfg, mean=(0.5,) * 3, std=(0.25,) * 3)
        >>> prep.views, prep.resize, prep.mean
        ((2, 1), 256, (0.5, 0.5, 0.5))
    """
    data = cfg.data
    return Preprocessing(
        num_segments=cfg.model.num_segments,
        sampling=data.sampling,
        dense_stride=data.dense_stride,
        input_size=data.input_size,
        resize=data.resize,
        mean=tuple(mean),
        std=tuple(std),
        num_clips=cfg.eval.num_clips,
        num_crops=cfg.eval.num_crops,
        short_side_range=data.short_side_range,
        train_crop=data.train_crop,
        scales=tuple(data.scales),
        flip=data.flip,
    )


def storage_from_config(cfg: RunConfig, *, seed: int = 0) -> StorageOptions:
    """The storage options of ``cfg.data``, with ``seed`` for the per-item generators (the
    training set's is ``train.seed``; test sets draw nothing at random).

    Example:
        >>> storage_from_config(RunConfig().replace(["data.frame_start_index=0"])).frame_start_index
        0
    """
    data = cfg.data
    return StorageOptions(
        frame_template=data.frame_template,
        frame_start_index=data.frame_start_index,
        bad_sample_policy=data.bad_sample_policy,
        decode_threads=data.decode_threads,
        seed=seed,
    )
