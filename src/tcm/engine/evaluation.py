"""Running a model over a test set: multi-view scores of every video, in dataset order.

Each video is seen as ``V = num_clips * num_crops`` views of ``T`` frames; each view's logits
go through a softmax and the probabilities are averaged over the views (the video's score).
The scores become an :class:`~tcm.engine.scores.EvalResult` (metrics, files, ensembles).

A video that cannot be read is never replaced by another: under ``bad_sample_policy="skip"``
it is left out of the scores and metrics, counted and named (:attr:`EvalResult.skipped`,
``skipped`` and ``skipped_videos`` in ``metrics.json``); under ``"raise"`` evaluation stops
with its path and reason.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from tcm.data.preprocessing import Preprocessing
from tcm.data.storage_options import DEFAULT_STORAGE, StorageOptions
from tcm.engine.distributed import DistContext, ShardSampler, all_gather_objects
from tcm.engine.scores import EvalResult
from tcm.errors import DataError
from tcm.utils.devices import pick_device

logger = logging.getLogger(__name__)


def autocast_context(device: torch.device, amp: str):
    """The autocast context of a mixed-precision mode (``none``, ``bf16``, ``fp16``)."""
    if amp == "none":
        return contextlib.nullcontext()
    if amp == "fp16" and device.type != "cuda":
        raise ValueError("fp16 mixed precision needs CUDA; use train.amp=bf16 on the CPU")
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def to_layout(frames: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """``(N, T, 3, H, W)`` frames in the memory format the convolutions run in: each frame
    channels-last when the model is (``model.channels_last``), else as they are."""
    if not channels_last:
        return frames
    flat = frames.flatten(0, 1).contiguous(memory_format=torch.channels_last)
    return flat.view(frames.shape)


def view_probabilities(
    model: nn.Module, clips: torch.Tensor, num_segments: int, *, channels_last: bool = False
) -> torch.Tensor:
    """``(N, V*T, 3, H, W)`` -> softmax probabilities averaged over the ``V`` views, ``(N, K)``."""
    n, frames = clips.shape[:2]
    views = frames // num_segments
    x = clips.reshape(n * views, num_segments, *clips.shape[2:])  # (N*V, T, 3, H, W)
    logits = model(to_layout(x, channels_last)).float()  # (N*V, K)
    return logits.softmax(dim=1).view(n, views, -1).mean(dim=1)


@dataclass
class Predictions:
    """What :func:`predict` returns: the videos scored, in dataset order, and those left out."""

    scores: np.ndarray
    """``(N, K)`` float32 probabilities averaged over the views."""
    labels: np.ndarray
    """``(N,)`` int64."""
    indices: np.ndarray
    """``(N,)`` int64 dataset indices of the rows."""
    skipped: list
    """:class:`~tcm.data.clip_batch.SkippedSample` of the items left out, by index."""


@torch.no_grad()
def predict(
    model: nn.Module,
    dataset,
    *,
    batch_size: int = 4,
    num_workers: int = 0,
    ctx: DistContext | None = None,
    amp: str = "none",
    channels_last: bool = False,
    progress: bool = False,
    desc: str = "eval",
) -> Predictions:
    """Scores ``(N, K)`` and labels ``(N,)`` of the items of ``dataset``, in its order.

    Items that cannot be read (a test dataset under ``bad_sample_policy="skip"``) are left out
    and listed in ``skipped``. With several processes each scores a shard and every process
    receives the whole result.
    """
    from tqdm.auto import tqdm

    from tcm.data import collate_clips, loader_errors

    ctx = ctx or DistContext(device=next(model.parameters()).device)
    sampler = ShardSampler(len(dataset), ctx.rank, ctx.world_size)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_clips,
        pin_memory=ctx.device.type == "cuda",
    )
    was_training = model.training
    model.eval()
    num_segments = getattr(model, "num_segments", None) or dataset.num_frames_per_clip
    scores, labels, kept, skipped = [], [], [], []
    # The bar counts batches and is never handed the loader: tqdm.auto's bar calls iter() on
    # an iterable it is given, which would start a second set of worker processes.
    bar = tqdm(
        total=len(loader),
        desc=desc,
        leave=False,
        disable=not (progress and ctx.is_main),
        dynamic_ncols=True,
    )
    position = 0  # in sampler.indices: the loader reads them in order, batch after batch
    with loader_errors(f"{desc} data"), bar:
        for batch in loader:
            bar.update(1)
            clips, batch_labels = batch
            excluded = set(getattr(batch, "excluded", ()))
            count = len(batch_labels) + len(excluded)
            batch_indices = sampler.indices[position : position + count]
            position += count
            kept.extend(i for j, i in enumerate(batch_indices) if j not in excluded)
            skipped.extend(getattr(batch, "skipped", ()))
            if not len(batch_labels):
                continue
            clips = clips.to(ctx.device, non_blocking=True)
            with autocast_context(ctx.device, amp):
                probs = view_probabilities(model, clips, num_segments, channels_last=channels_last)
            scores.append(probs.cpu().numpy())
            labels.append(batch_labels.numpy())
    model.train(was_training)
    k = None if not scores else scores[0].shape[1]
    local = (
        np.asarray(kept, dtype=np.int64),
        np.concatenate(scores) if scores else np.zeros((0, k or 0), np.float32),
        np.concatenate(labels) if labels else np.zeros(0, np.int64),
        skipped,
    )
    return _gather_predictions(local, ctx)


def _gather_predictions(local: tuple, ctx: DistContext) -> Predictions:
    """Every process's ``(indices, scores, labels, skipped)`` in one :class:`Predictions`, in
    dataset order (every process receives it)."""
    parts = all_gather_objects(local, ctx)
    num_classes = max(p[1].shape[1] for p in parts)
    indices = np.concatenate([p[0] for p in parts])
    order = np.argsort(indices, kind="stable")
    all_scores = np.concatenate(
        [p[1] if len(p[1]) else np.zeros((0, num_classes), np.float32) for p in parts]
    )
    all_labels = np.concatenate([p[2] for p in parts])
    all_skipped = sorted((s for p in parts for s in p[3]), key=lambda s: s.index)
    return Predictions(
        all_scores[order].astype(np.float32, copy=False),
        all_labels[order].astype(np.int64, copy=False),
        indices[order],
        all_skipped,
    )


def check_scored(predictions: Predictions, list_file, total: int) -> None:
    """A :class:`DataError` when no video of the list could be scored."""
    if total and not len(predictions.indices):
        first = predictions.skipped[0].message if predictions.skipped else "no video"
        raise DataError(f"{list_file}: none of its {total} videos could be read; first: {first}")


def evaluate_dataset(
    model: nn.Module,
    dataset,
    *,
    list_file: str | os.PathLike,
    views: tuple[int, int],
    classes: Sequence[str] | None = None,
    **predict_options,
) -> EvalResult:
    """:func:`predict` on a test dataset made from ``list_file``, as an :class:`EvalResult`.

    Raises:
        DataError: no video of the list could be read.
    """
    predictions = predict(model, dataset, **predict_options)
    check_scored(predictions, list_file, len(dataset))
    return EvalResult(
        predictions.scores,
        predictions.labels,
        [dataset.records[i].path for i in predictions.indices],
        list(classes) if classes is not None else None,
        views,
        skipped=predictions.skipped,
    )


def evaluate(
    checkpoint_or_model: str | os.PathLike | dict | nn.Module,
    list_file: str | os.PathLike,
    root: str | os.PathLike,
    *,
    num_clips: int = 1,
    num_crops: int = 1,
    prep: Preprocessing | None = None,
    batch_size: int = 4,
    num_workers: int = 0,
    device: str = "auto",
    amp: str = "none",
    classes: Sequence[str] | None = None,
    out_dir: str | os.PathLike | None = None,
    progress: bool = False,
    ctx: DistContext | None = None,
    storage: StorageOptions = DEFAULT_STORAGE,
    allow_modules: Iterable[str] = (),
) -> EvalResult:
    """Evaluate a model on a labelled list: ``num_clips x num_crops`` views per video.

    Args:
        checkpoint_or_model: a checkpoint path or dict, or a model.
        list_file: the videos, ``path label`` lines.
        root: the folder the list's paths are relative to.
        num_clips: clips per video (test views in time).
        num_crops: crops per clip (test views in space).
        prep: the preprocessing (its views are replaced by ``num_clips x num_crops``); by
            default the checkpoint's, or for a model the standard test recipe with the
            model's frames, mean and std.
        classes: class names (default: the checkpoint's).
        out_dir: when given, :meth:`EvalResult.save` writes scores, per-class CSV, confusion.
        storage: frame folder names, decoding threads and the bad sample policy:
            ``"raise"`` (stop at a video that cannot be read) or ``"skip"`` (leave it out,
            listed in :attr:`EvalResult.skipped`).
        allow_modules: modules a checkpoint's own backbone may be imported from
            (:mod:`tcm.models.from_checkpoint`).

    Returns:
        :class:`EvalResult` (``top1``, ``top5``, ``mean_class_acc``, ``per_class_acc``,
            ``confusion``, ``scores``).

    Example:
        >>> result = evaluate("work_dirs/run/best.pt", "lists/val.txt", "/data/videos",
        ...                   num_clips=2, num_crops=3)                     # doctest: +SKIP
        >>> result.top1, result.top5                                       # doctest: +SKIP
    """
    from tcm.data import build_dataset

    model, default, recorded_classes = _model_and_preprocessing(checkpoint_or_model, allow_modules)
    classes = classes if classes is not None else recorded_classes
    prep = (prep or default).replace(num_clips=num_clips, num_crops=num_crops)
    ctx = ctx or DistContext(device=pick_device(device))
    model = model.to(ctx.device)
    dataset = build_dataset(
        list_file,
        root,
        prep,
        train=False,
        num_classes=int(getattr(model, "num_classes", 0)) or None,
        storage=storage,
    )
    result = evaluate_dataset(
        model,
        dataset,
        list_file=list_file,
        views=prep.views,
        classes=classes,
        batch_size=batch_size,
        num_workers=num_workers,
        ctx=ctx,
        amp=amp,
        progress=progress,
    )
    if result.skipped and ctx.is_main:
        _warn_skipped(result, len(dataset))
    if out_dir is not None and ctx.is_main:
        result.save(out_dir)
    return result


def _model_and_preprocessing(
    checkpoint_or_model, allow_modules: Iterable[str] = ()
) -> tuple[nn.Module, Preprocessing, list | None]:
    """The model, its test preprocessing and class names: a checkpoint's, or for a model the
    standard test recipe with the model's frames, mean and std (and no names)."""
    from tcm.models import model_from_checkpoint

    if isinstance(checkpoint_or_model, nn.Module):
        model = checkpoint_or_model
        return model, Preprocessing(model.num_segments, mean=model.mean, std=model.std), None
    model, checkpoint = model_from_checkpoint(checkpoint_or_model, allow_modules=allow_modules)
    return model, Preprocessing.from_checkpoint(checkpoint), checkpoint.get("classes")


def _warn_skipped(result: EvalResult, total: int) -> None:
    shown = ", ".join(s.path for s in result.skipped[:5])
    more = " ..." if len(result.skipped) > 5 else ""
    logger.warning(
        "%d of %d videos could not be read and are left out of the metrics: %s%s",
        len(result.skipped),
        total,
        shown,
        more,
    )
