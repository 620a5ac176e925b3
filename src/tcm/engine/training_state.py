"""The state of a training run, in memory: one object that writes itself into a checkpoint and
restores itself from one.

:class:`LoopState` is where the loop stands and what it has measured (plain numbers);
:class:`TrainingState` adds the objects that hold tensors (model, optimizer, schedule, loss
scaler) and the run's description (:class:`RunRecord`). The checkpoint entries they write are
those :mod:`tcm.engine.training_checkpoint` describes::

    epoch, step, batch_in_epoch     the loop's position
    state                           best_top1, best_row, epoch_row, epoch_sums, window,
                                    skipped {count, paths}, global_batch, clips_in_epoch
    optimizer, scheduler, scaler    state dicts (full checkpoints only)
    config, metrics, world_size     the resolved config, the row of a best.pt, processes

Random states are gathered over processes by the trainer and passed in whole (``rng``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from tcm.checkpoint import make_checkpoint
from tcm.engine.optim import LRSchedule
from tcm.engine.training_checkpoint import cpu_state_dict
from tcm.engine.training_log import RunningSums

logger = logging.getLogger(__name__)


@dataclass
class LoopState:
    """Where the training loop stands and what it has measured so far."""

    epoch: int = 0
    """Completed epochs."""
    step: int = 0
    """Optimizer steps done."""
    batch_in_epoch: int = 0
    """Micro-batches of epoch ``epoch`` already done."""
    clips_in_epoch: int = 0
    """Clips of epoch ``epoch`` already taken, by every process together: where a resumed
    run goes on, whatever its number of processes or batch size."""
    best_top1: float = -math.inf
    best_row: dict[str, Any] = field(default_factory=dict)
    """The epoch row of the best validation top-1 (``{}`` before any validation)."""
    epoch_row: dict[str, Any] = field(default_factory=dict)
    """The row of the last completed epoch."""
    epoch_sums: RunningSums = field(default_factory=RunningSums)
    window: RunningSums = field(default_factory=RunningSums)
    """Since the last step row."""
    skipped_count: int = 0
    """Training samples replaced this epoch, over every process."""
    skipped_paths: list[str] = field(default_factory=list)
    """The first of them (this process's)."""

    def to_checkpoint(
        self, *, global_batch: int, skipped_paths: list[str] | None = None
    ) -> dict[str, Any]:
        """The checkpoint entries ``epoch``, ``step``, ``batch_in_epoch`` and ``state``.

        Args:
            global_batch: clips per optimizer step, recorded to warn a resumed run that
                changes it.
            skipped_paths: the skipped paths to record (every process's, gathered);
                default: this process's.
        """
        paths = self.skipped_paths if skipped_paths is None else skipped_paths
        return {
            "epoch": int(self.epoch),
            "step": int(self.step),
            "batch_in_epoch": int(self.batch_in_epoch),
            "state": {
                "best_top1": self.best_top1,
                "best_row": dict(self.best_row),
                "epoch_row": dict(self.epoch_row),
                "epoch_sums": self.epoch_sums.to_tensor(),
                "window": self.window.to_tensor(),
                "skipped": {"count": self.skipped_count, "paths": list(paths)},
                "global_batch": global_batch,
                "clips_in_epoch": int(self.clips_in_epoch),
            },
        }

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any], *, keep_paths: bool = True) -> LoopState:
        """Read :meth:`to_checkpoint`'s entries (missing bookkeeping takes the defaults).
        ``keep_paths``: take the recorded skipped paths (the main process does; the others
        start an empty list of their own)."""
        state = checkpoint.get("state", {})
        skipped = state.get("skipped", {})
        clips = state.get("clips_in_epoch")
        if clips is None:  # written before the count was kept: micro-batches of the run's size
            batch = checkpoint.get("config", {}).get("data", {}).get("batch_size", 0)
            clips = int(checkpoint["batch_in_epoch"]) * batch * checkpoint.get("world_size", 1)
        return cls(
            epoch=int(checkpoint["epoch"]),
            step=int(checkpoint["step"]),
            batch_in_epoch=int(checkpoint["batch_in_epoch"]),
            clips_in_epoch=int(clips),
            best_top1=float(state.get("best_top1", -math.inf)),
            best_row=dict(state.get("best_row", {})),
            epoch_row=dict(state.get("epoch_row", {})),
            epoch_sums=RunningSums.from_tensor(state.get("epoch_sums")),
            window=RunningSums.from_tensor(state.get("window")),
            skipped_count=int(skipped.get("count", 0)),
            skipped_paths=list(skipped.get("paths", [])) if keep_paths else [],
        )


@dataclass(frozen=True)
class RunRecord:
    """What every checkpoint of a run says about it: the model, its classes and preprocessing
    (:func:`tcm.checkpoint.make_checkpoint`'s description) and the resolved config."""

    model_name: str
    num_classes: int
    num_segments: int
    model_kwargs: dict[str, Any]
    classes: list[str] | None
    preprocessing: dict[str, Any]
    """:meth:`tcm.data.Preprocessing.to_dict`, the checkpoint's ``data`` entry."""
    config: dict[str, Any]
    world_size: int = 1


@dataclass
class TrainingState:
    """Everything a training checkpoint holds: weights, optimizer, schedule, loss scaler, the
    loop's position and measures, and the run's description.

    Example:
        >>> state = TrainingState(record, model, optimizer, schedule, scaler, global_batch=32)
        >>> checkpoint = state.to_checkpoint(rng=capture_rng())      # doctest: +SKIP
        >>> other.restore(checkpoint)   # the same model, optimizer, ... positions  # doctest: +SKIP
    """

    record: RunRecord
    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    scaler: torch.amp.GradScaler
    global_batch: int
    loop: LoopState = field(default_factory=LoopState)

    def to_checkpoint(
        self,
        *,
        full: bool = True,
        rng: dict[str, Any] | None = None,
        skipped_paths: list[str] | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A checkpoint dict; ``full=False`` leaves out what only resuming needs (optimizer,
        schedule, scaler, random states, loop bookkeeping): a ``best.pt``.

        Args:
            rng: every process's random states (:func:`~tcm.engine.training_checkpoint.gathered_rng`).
            skipped_paths: every process's skipped paths, gathered.
            metrics: the epoch row the checkpoint was written for (``best.pt``).
        """
        record = self.record
        loop = self.loop.to_checkpoint(global_batch=self.global_batch, skipped_paths=skipped_paths)
        state = loop.pop("state")
        extra: dict[str, Any] = {
            **loop,
            "config": record.config,
            "metrics": dict(metrics or {}),
            "world_size": int(record.world_size),
        }
        if full:
            scaler = self.scaler
            extra.update(
                optimizer=self.optimizer.state_dict(),
                scheduler=self.schedule.state_dict(),
                scaler=scaler.state_dict() if scaler.is_enabled() else None,
                rng=rng or {},
                state=state,
            )
        return make_checkpoint(
            cpu_state_dict(self.model),
            model_name=record.model_name,
            num_classes=record.num_classes,
            num_segments=record.num_segments,
            model_kwargs=record.model_kwargs,
            classes=record.classes,
            data=record.preprocessing,
            **extra,
        )

    def restore(self, checkpoint: dict[str, Any], *, keep_paths: bool = True) -> None:
        """Take the weights (strictly), optimizer, schedule, scaler and loop state of a full
        checkpoint. Random states are the trainer's to restore: they depend on the process.
        ``keep_paths``: see :meth:`LoopState.from_checkpoint`."""
        self.model.load_state_dict(checkpoint["state_dict"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.schedule.load_state_dict(checkpoint["scheduler"])
        if checkpoint.get("scaler") is not None and self.scaler.is_enabled():
            self.scaler.load_state_dict(checkpoint["scaler"])
        self.loop = LoopState.from_checkpoint(checkpoint, keep_paths=keep_paths)
        saved_batch = checkpoint.get("state", {}).get("global_batch", self.global_batch)
        if saved_batch != self.global_batch:
            logger.warning(
                "resuming with a global batch of %d clips; the checkpoint was trained with %d",
                self.global_batch,
                saved_batch,
            )
