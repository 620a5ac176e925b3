"""Evaluation results: accuracy metrics, score files, per-class tables, confusion, ensembles.

A video's score is the softmax probabilities averaged over its views (see
:mod:`tcm.engine.evaluation`). From the scores ``(N, K)`` and the labels come top-1, top-5, the
mean class accuracy (the mean over the classes present of each class's recall), per-class
accuracy and the confusion matrix (rows: true class, columns: predicted class). Accuracies are
percentages.

Files an evaluation writes (:meth:`EvalResult.save`)::

    scores.npz      scores float32 (N, K), labels int64 (N,), paths (N,) str, views (2,),
                    classes (K,) str when known; read without pickle by :func:`load_scores`
    per_class.csv   index, class, videos, correct, accuracy
    metrics.json    the headline numbers (:meth:`EvalResult.summary`)
    confusion.png   the row-normalised confusion matrix

Score files combine with :func:`ensemble`, e.g. the 8- and 16-frame models of the paper.
"""

from __future__ import annotations

import csv
import json
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SCORES_FILE = "scores.npz"
PER_CLASS_FILE = "per_class.csv"
CONFUSION_FILE = "confusion.png"
SUMMARY_FILE = "metrics.json"
"""The headline numbers of one evaluation (the training log is ``metrics.jsonl``)."""
OUTPUT_FILES = (SCORES_FILE, PER_CLASS_FILE, SUMMARY_FILE, CONFUSION_FILE)
"""The files :meth:`EvalResult.save` writes into its folder."""


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
    (:class:`~tcm.data.clip_batch.SkippedSample`: ``index``, ``path``, ``reason``, ``message``)."""
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
        metrics_path = out / SUMMARY_FILE
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
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not a score file (not an .npz archive that tcm test writes)")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = {"scores", "labels", "paths"} - set(data.files)
            if missing:
                raise ValueError(f"{path}: not a score file (missing {sorted(missing)})")
            classes = data["classes"].tolist() if "classes" in data.files else None
            views = tuple(data["views"].tolist()) if "views" in data.files else (1, 1)
            arrays = data["scores"], data["labels"], data["paths"].tolist()
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        if str(error).startswith(str(path)):
            raise
        # numpy's reasons (object arrays that would need pickle, a damaged member) name no file
        reason = str(error).split(". ")[0].rstrip(".")
        raise ValueError(f"{path}: not a readable score file ({reason})") from None
    return EvalResult(*arrays, classes, views)


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
