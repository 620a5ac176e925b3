"""Evaluation: multi-view scores, accuracy metrics, score files and ensembles.

Each video is seen as ``V = num_clips * num_crops`` views of ``T`` frames; each view's logits
go through a softmax and the probabilities are averaged over the views (the video's score).
From the scores ``(N, K)`` and the labels come top-1, top-5, the mean class accuracy (the mean
over the classes present of each class's recall), per-class accuracy and the confusion matrix
(rows: true class, columns: predicted class). Accuracies are percentages.

Score files (``scores.npz``: ``scores`` float32 ``(N, K)``, ``labels`` int64 ``(N,)``,
``paths`` ``(N,)`` str, ``classes`` ``(K,)`` str when known) combine with :func:`ensemble`,
e.g. the 8- and 16-frame models of the paper.

A video that cannot be read is never replaced by another: under ``bad_sample_policy="skip"``
it is left out of the scores and metrics, counted and named (:attr:`EvalResult.skipped`,
``skipped`` and ``skipped_videos`` in ``metrics.json``); under ``"raise"`` evaluation stops
with its path and reason.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from tcm.engine.distributed import DistContext, ShardSampler, all_gather_objects, resolve_device
from tcm.errors import DataError

logger = logging.getLogger(__name__)

SCORES_FILE = "scores.npz"
PER_CLASS_FILE = "per_class.csv"
CONFUSION_FILE = "confusion.png"
METRICS_FILE = "metrics.json"


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Percentage of rows whose label is among the ``k`` highest scores (ties: lower index first)."""
    k = min(k, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(100.0 * (order == labels[:, None]).any(axis=1).mean())


def confusion_matrix(predictions: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``(K, K)`` int64 counts, ``[true, predicted]``."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def compute_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """top-1, top-5, mean class accuracy, per-class accuracy and confusion of ``(N, K)`` scores.

    Example:
        >>> s = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1]])
        >>> m = compute_metrics(s, np.array([0, 1, 1]))
        >>> round(m["top1"], 2), m["mean_class_acc"]
        (33.33, 50.0)
    """
    scores = np.asarray(scores)
    labels = np.asarray(labels, dtype=np.int64)
    num_classes = scores.shape[1]
    predictions = scores.argmax(axis=1)
    confusion = confusion_matrix(predictions, labels, num_classes)
    counts = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(counts > 0, 100.0 * np.diag(confusion) / counts, np.nan)
    present = counts > 0
    return {
        "top1": float(100.0 * (predictions == labels).mean()),
        "top5": topk_accuracy(scores, labels, 5),
        "mean_class_acc": float(per_class[present].mean()) if present.any() else float("nan"),
        "per_class_acc": per_class,
        "confusion": confusion,
    }


def nll(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the labels under averaged probabilities."""
    picked = scores[np.arange(len(labels)), labels]
    return float(-np.log(np.clip(picked, 1e-12, None)).mean())


@dataclass
class EvalResult:
    """Scores and metrics of an evaluation (accuracies in percent)."""

    scores: np.ndarray
    """``(N, K)`` float32 probabilities, averaged over the views."""
    labels: np.ndarray
    """``(N,)`` int64."""
    paths: list[str]
    classes: list[str] | None = None
    views: tuple[int, int] = (1, 1)
    """``(clips, crops)`` per video."""
    skipped: list = field(default_factory=list)
    """The videos left out because they could not be read
    (:class:`~tcm.data.datasets.SkippedSample`: ``index``, ``path``, ``reason``, ``message``)."""
    top1: float = field(init=False)
    top5: float = field(init=False)
    mean_class_acc: float = field(init=False)
    per_class_acc: np.ndarray = field(init=False, repr=False)
    confusion: np.ndarray = field(init=False, repr=False)
    loss: float = field(init=False)

    def __post_init__(self) -> None:
        self.scores = np.asarray(self.scores, dtype=np.float32)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        metrics = compute_metrics(self.scores, self.labels)
        self.top1 = metrics["top1"]
        self.top5 = metrics["top5"]
        self.mean_class_acc = metrics["mean_class_acc"]
        self.per_class_acc = metrics["per_class_acc"]
        self.confusion = metrics["confusion"]
        self.loss = nll(self.scores, self.labels)

    @property
    def num_videos(self) -> int:
        return len(self.labels)

    def summary(self) -> dict[str, Any]:
        """The headline numbers, JSON-ready; ``videos`` counts the videos scored, ``skipped``
        those left out (named in ``skipped_videos`` when there are any)."""
        summary = {
            "videos": self.num_videos,
            "classes": int(self.scores.shape[1]),
            "views": f"{self.views[0]}x{self.views[1]}",
            "top1": self.top1,
            "top5": self.top5,
            "mean_class_acc": self.mean_class_acc,
            "loss": self.loss,
            "skipped": len(self.skipped),
        }
        if self.skipped:
            summary["skipped_videos"] = [
                {"path": s.path, "reason": s.reason, "message": s.message} for s in self.skipped
            ]
        return summary

    def save(self, out_dir: str | os.PathLike, *, confusion_png: bool = True) -> dict[str, Path]:
        """Write ``scores.npz``, ``per_class.csv``, ``metrics.json`` and ``confusion.png``."""
        from tcm.utils.files import output_dir

        out = output_dir(out_dir)
        written = {"scores": save_scores(self, out / SCORES_FILE)}
        written["per_class"] = write_per_class_csv(self, out / PER_CLASS_FILE)
        metrics_path = out / METRICS_FILE
        metrics_path.write_text(json.dumps(self.summary(), indent=2) + "\n", encoding="utf-8")
        written["metrics"] = metrics_path
        if confusion_png:
            written["confusion"] = plot_confusion(
                self.confusion, out / CONFUSION_FILE, self.classes
            )
        return written


def save_scores(result: EvalResult, path: str | os.PathLike) -> Path:
    """Per-video scores for ensembling (``np.load(path)`` reads them without pickle)."""
    path = Path(path)
    arrays = {
        "scores": result.scores,
        "labels": result.labels,
        "paths": np.array(result.paths, dtype=str),
        "views": np.array(result.views, dtype=np.int64),
    }
    if result.classes is not None:
        arrays["classes"] = np.array(result.classes, dtype=str)
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
    return path


def load_scores(path: str | os.PathLike) -> EvalResult:
    """Read a score file written by :func:`save_scores`."""
    path = Path(path)
    if path.is_dir():
        path = path / SCORES_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such score file")
    with np.load(path, allow_pickle=False) as data:
        missing = {"scores", "labels", "paths"} - set(data.files)
        if missing:
            raise ValueError(f"{path}: not a score file (missing {sorted(missing)})")
        classes = data["classes"].tolist() if "classes" in data.files else None
        views = tuple(data["views"].tolist()) if "views" in data.files else (1, 1)
        return EvalResult(data["scores"], data["labels"], data["paths"].tolist(), classes, views)


def write_per_class_csv(result: EvalResult, path: str | os.PathLike) -> Path:
    """``index,class,videos,correct,accuracy`` per class."""
    path = Path(path)
    counts = result.confusion.sum(axis=1)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["index", "class", "videos", "correct", "accuracy"])
        for k in range(len(counts)):
            name = result.classes[k] if result.classes else str(k)
            accuracy = "" if counts[k] == 0 else f"{result.per_class_acc[k]:.4f}"
            writer.writerow([k, name, int(counts[k]), int(result.confusion[k, k]), accuracy])
    return path


def plot_confusion(
    confusion: np.ndarray, path: str | os.PathLike, classes: Sequence[str] | None = None
) -> Path:
    """The confusion matrix, rows normalised to recall, as a PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    k = confusion.shape[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = confusion / confusion.sum(axis=1, keepdims=True)
    side = min(4 + 0.25 * k, 40)
    fig, axis = plt.subplots(figsize=(side, side))
    image = axis.imshow(np.nan_to_num(rates), cmap="Blues", vmin=0, vmax=1)
    axis.set(xlabel="predicted", ylabel="true", title="confusion (row-normalised)")
    if classes is not None and k <= 60:
        axis.set_xticks(range(k), classes, rotation=90, fontsize=7)
        axis.set_yticks(range(k), classes, fontsize=7)
    fig.colorbar(image, ax=axis, fraction=0.046)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def ensemble(
    sources: Sequence[str | os.PathLike | EvalResult], weights: Sequence[float] | None = None
) -> EvalResult:
    """Weighted average of the scores of several evaluations of the same videos.

    Example:
        >>> combined = ensemble(["runs/tcm8/test_1x1", "runs/tcm16/test_1x1"])  # doctest: +SKIP
        >>> combined.top1                                                         # doctest: +SKIP
    """
    results = [s if isinstance(s, EvalResult) else load_scores(s) for s in sources]
    if not results:
        raise ValueError("nothing to ensemble")
    if weights is None:
        weights = [1.0] * len(results)
    if len(weights) != len(results):
        raise ValueError(f"{len(weights)} weights for {len(results)} score files")
    if any(not np.isfinite(w) or w < 0 for w in weights) or not sum(weights) > 0:
        raise ValueError(
            f"weights must be non-negative numbers with a positive sum, got {list(weights)}"
        )
    first = results[0]
    for index, other in enumerate(results[1:], start=2):
        if other.scores.shape != first.scores.shape:
            raise ValueError(
                f"score file {index} has shape {other.scores.shape}, the first {first.scores.shape}"
            )
        if other.paths != first.paths or not np.array_equal(other.labels, first.labels):
            raise ValueError(f"score file {index} does not list the same videos as the first")
    total = float(sum(weights))
    scores = sum(w * r.scores.astype(np.float64) for w, r in zip(weights, results)) / total
    return EvalResult(
        scores.astype(np.float32), first.labels, first.paths, first.classes, first.views
    )


# --------------------------------------------------------------------------------------------
# Running a model
# --------------------------------------------------------------------------------------------


def autocast_context(device: torch.device, amp: str):
    """The autocast context of a mixed-precision mode (``none``, ``bf16``, ``fp16``)."""
    if amp == "none":
        return contextlib.nullcontext()
    if amp == "fp16" and device.type != "cuda":
        raise ValueError("fp16 mixed precision needs CUDA; use train.amp=bf16 on the CPU")
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def view_probabilities(
    model: nn.Module, clips: torch.Tensor, num_segments: int, *, channels_last: bool = False
) -> torch.Tensor:
    """``(N, V*T, 3, H, W)`` -> softmax probabilities averaged over the ``V`` views, ``(N, K)``."""
    n, frames = clips.shape[:2]
    views = frames // num_segments
    x = clips.reshape(n * views, num_segments, *clips.shape[2:])  # (N*V, T, 3, H, W)
    if channels_last:
        x = x.flatten(0, 1).contiguous(memory_format=torch.channels_last).view(x.shape)
    logits = model(x).float()  # (N*V, K)
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
    """:class:`~tcm.data.datasets.SkippedSample` of the items left out, by index."""


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
    bar = tqdm(
        loader, desc=desc, leave=False, disable=not (progress and ctx.is_main), dynamic_ncols=True
    )
    position = 0  # in sampler.indices: the loader reads them in order, batch after batch
    with loader_errors(f"{desc} data"):
        for batch in bar:
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


def data_defaults(model: nn.Module) -> dict[str, Any]:
    """Test-time preprocessing of a model without a checkpoint: the defaults of the config and
    the model's frames, mean and std."""
    from tcm.engine.config import DataConfig

    cfg = DataConfig()
    return {
        "num_segments": int(getattr(model, "num_segments", 8)),
        "sampling": cfg.sampling,
        "dense_stride": cfg.dense_stride,
        "resize": cfg.resize,
        "input_size": cfg.input_size,
        "mean": list(getattr(model, "mean", (0.485, 0.456, 0.406))),
        "std": list(getattr(model, "std", (0.229, 0.224, 0.225))),
        "frame_template": cfg.frame_template,
        "frame_start_index": cfg.frame_start_index,
    }


def build_test_dataset(
    list_file,
    root,
    data: dict[str, Any],
    *,
    num_clips: int,
    num_crops: int,
    num_classes: int | None,
    decode_threads: int = 1,
    bad_sample_policy: str = "raise",
):
    """The deterministic test dataset of the preprocessing described by ``data`` (a
    checkpoint's ``data`` section)."""
    from tcm.data import build_dataset

    resize = data.get("resize")
    return build_dataset(
        list_file,
        root,
        train=False,
        num_segments=int(data["num_segments"]),
        sampling=data.get("sampling", "segments"),
        dense_stride=int(data.get("dense_stride", 8)),
        num_clips=num_clips,
        num_crops=num_crops,
        input_size=int(data.get("input_size", 224)),
        resize=tuple(resize) if isinstance(resize, list | tuple) else resize,
        num_classes=num_classes,
        mean=data["mean"],
        std=data["std"],
        frame_template=data.get("frame_template", "img_{:05d}.jpg"),
        frame_start_index=int(data.get("frame_start_index", 1)),
        bad_sample_policy=bad_sample_policy,
        decode_threads=decode_threads,
    )


def evaluate(
    checkpoint_or_model: str | os.PathLike | dict | nn.Module,
    list_file: str | os.PathLike,
    root: str | os.PathLike,
    *,
    num_clips: int = 1,
    num_crops: int = 1,
    batch_size: int = 4,
    num_workers: int = 0,
    device: str = "auto",
    amp: str = "none",
    data: dict[str, Any] | None = None,
    classes: Sequence[str] | None = None,
    out_dir: str | os.PathLike | None = None,
    progress: bool = False,
    ctx: DistContext | None = None,
    bad_sample_policy: str = "raise",
) -> EvalResult:
    """Evaluate a model on a labelled list: ``num_clips x num_crops`` views per video.

    Args:
        checkpoint_or_model: a checkpoint path or dict (its ``data`` section gives the
            preprocessing), or a model (config defaults, the model's frames, mean and std).
        list_file, root: the videos (``path label`` lines, paths relative to ``root``).
        data: preprocessing overrides (``num_segments``, ``resize``, ``input_size``, ...).
        classes: class names (default: the checkpoint's).
        out_dir: when given, :meth:`EvalResult.save` writes scores, per-class CSV, confusion.
        bad_sample_policy: ``"raise"`` (stop at a video that cannot be read) or ``"skip"``
            (leave it out, listed in :attr:`EvalResult.skipped`).

    Returns:
        :class:`EvalResult` (``top1``, ``top5``, ``mean_class_acc``, ``per_class_acc``,
        ``confusion``, ``scores``).

    Example:
        >>> result = evaluate("work_dirs/run/best.pt", "lists/val.txt", "/data/videos",
        ...                   num_clips=2, num_crops=3)                     # doctest: +SKIP
        >>> result.top1, result.top5                                       # doctest: +SKIP
    """
    from tcm.models import model_from_checkpoint

    if isinstance(checkpoint_or_model, nn.Module):
        model = checkpoint_or_model
        params = data_defaults(model)
    else:
        model, checkpoint = model_from_checkpoint(checkpoint_or_model)
        params = {**data_defaults(model), **checkpoint.get("data", {})}
        if classes is None:
            classes = checkpoint.get("classes")
    params.update(data or {})
    if ctx is None:
        ctx = DistContext(device=resolve_device(device))
    model = model.to(ctx.device)
    num_classes = int(getattr(model, "num_classes", 0)) or None
    dataset = build_test_dataset(
        list_file,
        root,
        params,
        num_clips=num_clips,
        num_crops=num_crops,
        num_classes=num_classes,
        bad_sample_policy=bad_sample_policy,
    )
    predictions = predict(
        model,
        dataset,
        batch_size=batch_size,
        num_workers=num_workers,
        ctx=ctx,
        amp=amp,
        progress=progress,
    )
    check_scored(predictions, list_file, len(dataset))
    result = EvalResult(
        predictions.scores,
        predictions.labels,
        [dataset.records[i].path for i in predictions.indices],
        list(classes) if classes is not None else None,
        (num_clips, num_crops),
        skipped=predictions.skipped,
    )
    if result.skipped and ctx.is_main:
        logger.warning(
            "%d of %d videos could not be read and are left out of the metrics: %s",
            len(result.skipped),
            len(dataset),
            ", ".join(s.path for s in result.skipped[:5])
            + (" ..." if len(result.skipped) > 5 else ""),
        )
    if out_dir is not None and ctx.is_main:
        result.save(out_dir)
    return result
