"""Run records: ``metrics.jsonl`` rows, optional TensorBoard, training curves as a PNG.

Rows are JSON objects with ``kind``: ``"step"`` (every ``train.log_interval`` optimizer steps:
``loss``, ``top1``, ``lr``, ``clips_per_s``, ``grad_norm``) or ``"epoch"`` (``train_loss``,
``train_top1``, ``val_loss``, ``val_top1``, ``val_top5``, ``val_mean_class``, ``lr``,
``time``, ``clips_per_s``). Every row has ``epoch`` and ``step`` (optimizer steps done), so a
resumed run drops the rows written after its checkpoint and rewrites them.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

TRAINING_LOG_FILE = "metrics.jsonl"
CURVES_FILE = "curves.png"


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``metrics.jsonl`` file (or of the one in a work dir)."""
    path = Path(path)
    if path.is_dir():
        path = path / TRAINING_LOG_FILE
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a killed run
                logger.debug("ignoring a partial line of %s", path)
    return rows


@dataclass
class RunningSums:
    """What a stretch of training (an epoch, or the window between two step rows) adds up:
    summed over the clips of every process, with the time spent on it.

    The time runs on a clock started by :meth:`reset` or :meth:`start_clock`; :meth:`bank`
    folds the time so far into ``seconds`` (before a checkpoint, so that a resumed run goes on
    from it).
    """

    loss: float = 0.0
    """Sum of the clips' losses."""
    correct: float = 0.0
    """Clips whose top class is their label."""
    clips: float = 0.0
    seconds: float = 0.0
    """Time banked before the clock's current start."""
    _clock: float = field(default=0.0, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.start_clock()

    def add(self, loss: float, correct: float, clips: float) -> None:
        self.loss += loss
        self.correct += correct
        self.clips += clips

    def reset(self) -> None:
        """Zero every sum and restart the clock."""
        self.loss = self.correct = self.clips = self.seconds = 0.0
        self.start_clock()

    def start_clock(self) -> None:
        self._clock = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds banked plus those since the clock started."""
        return self.seconds + time.perf_counter() - self._clock

    def bank(self) -> None:
        """Fold the time since the clock started into ``seconds``; the clock restarts."""
        now = time.perf_counter()
        self.seconds += now - self._clock
        self._clock = now

    @property
    def mean_loss(self) -> float:
        return self.loss / self.clips

    @property
    def top1(self) -> float:
        return 100 * self.correct / self.clips

    @property
    def clips_per_s(self) -> float:
        return self.clips / max(self.elapsed(), 1e-9)

    def to_tensor(self) -> torch.Tensor:
        """float64 ``(4,)``: loss, correct, clips, seconds (the checkpoint's form)."""
        return torch.tensor(
            [self.loss, self.correct, self.clips, self.seconds], dtype=torch.float64
        )

    @classmethod
    def from_tensor(cls, values: torch.Tensor | None) -> RunningSums:
        """Read :meth:`to_tensor`'s output (``None``: zeros); the clock starts now."""
        if values is None:
            return cls()
        loss, correct, clips, seconds = (float(v) for v in values.tolist())
        return cls(loss, correct, clips, seconds)


class MetricsWriter:
    """Appends rows to ``metrics.jsonl`` and mirrors numbers to TensorBoard when installed.

    Only the main process writes (``enabled=False`` elsewhere).
    """

    def __init__(
        self, work_dir: str | Path, *, enabled: bool = True, tensorboard: bool = True
    ) -> None:
        self.path = Path(work_dir) / TRAINING_LOG_FILE
        self.enabled = enabled
        self._tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                logger.debug("tensorboard is not installed; writing metrics.jsonl only")
            else:
                self._tb = SummaryWriter(str(Path(work_dir) / "tensorboard"))

    def truncate_after(self, step: int) -> None:
        """Keep the rows of steps ``<= step`` (a resumed run rewrites the later ones)."""
        if not self.enabled:
            return
        rows = [row for row in read_metrics(self.path) if row.get("step", 0) <= step]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A temporary file renamed over the log: a kill or a full disk keeps the old rows.
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            tmp.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
            handle.flush()
        if self._tb is not None:
            prefix = "train_step" if row.get("kind") == "step" else "epoch"
            for key, value in row.items():
                if key not in ("kind", "step", "epoch") and isinstance(value, int | float):
                    self._tb.add_scalar(f"{prefix}/{key}", value, row.get("step", 0))
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def plot_curves(rows: list[dict[str, Any]], path: str | Path, title: str = "") -> Path | None:
    """Loss, top-1 and learning rate per epoch (and per logged step) as a PNG."""
    epochs = [r for r in rows if r.get("kind") == "epoch"]
    steps = [r for r in rows if r.get("kind") == "step"]
    if not epochs and not steps:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    def series(items, key, x="epoch"):
        pairs = [(r[x], r[key]) for r in items if isinstance(r.get(key), int | float)]
        pairs = [(a, b) for a, b in pairs if math.isfinite(b)]
        return [a for a, _ in pairs], [b for _, b in pairs]

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    steps_per_epoch = None
    if epochs and epochs[0].get("step"):
        steps_per_epoch = epochs[0]["step"] / epochs[0]["epoch"]
    if steps and steps_per_epoch:
        x = [r["step"] / steps_per_epoch for r in steps if "loss" in r]
        y = [r["loss"] for r in steps if "loss" in r]
        axes[0].plot(x, y, alpha=0.35, label="train (steps)")
    for key, label in (("train_loss", "train"), ("val_loss", "val")):
        axes[0].plot(*series(epochs, key), marker="o", label=label)
    axes[0].set(title="loss", xlabel="epoch")
    for key, label in (
        ("train_top1", "train top-1"),
        ("val_top1", "val top-1"),
        ("val_top5", "val top-5"),
    ):
        axes[1].plot(*series(epochs, key), marker="o", label=label)
    axes[1].set(title="accuracy (%)", xlabel="epoch")
    if steps and steps_per_epoch:
        axes[2].plot([r["step"] / steps_per_epoch for r in steps], [r["lr"] for r in steps])
    else:
        axes[2].plot(*series(epochs, "lr"), marker="o")
    axes[2].set(title="learning rate", xlabel="epoch")
    for axis in axes[:2]:
        if axis.lines:
            axis.legend()
        axis.grid(alpha=0.3)
    axes[2].grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
