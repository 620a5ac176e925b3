"""The training loop: :func:`train` turns a :class:`~tcm.engine.config.TrainConfig` into a run.

A run lives in a work dir, locked for the life of the run (:mod:`tcm.engine.workdir`: a
second run there is refused, as is a new run into a folder that holds one)::

    config.yaml      the resolved config
    train.log        the log of the main process
    metrics.jsonl    one row per logged step and per epoch (see :mod:`tcm.engine.training_log`)
    last.pt          the full training state (every ``train.checkpoint_interval`` steps and
                     at every epoch end)
    best.pt          the weights of the best validation top-1 (inference only)
    curves.png       loss, accuracy and learning rate, written at the end
    tensorboard/     when TensorBoard is installed

Nothing is written into the work dir before every check has passed (config, folder, resume
checkpoint, datasets, model).

Bad samples: a training sample that cannot be read is replaced (``data.bad_sample_policy:
skip``; the epoch row counts them in ``train_skipped``, names the first in
``train_skipped_paths``, and the log says so at the end of the epoch) or stops the run
(``raise``). A validation video is never replaced: it is left out of the metrics and counted in
``val_skipped`` (``val_skipped_paths``), or, with ``raise``, stops the run after ``last.pt``
holds the epoch's training (a resumed run validates it again).

Exact resumption: shuffling is a function of ``(seed, epoch)``, augmentation of ``(seed,
epoch, index)``, dropout draws come from the saved RNG states, and a run resumed mid-epoch
skips the batches already done; a run killed at any moment and resumed from ``last.pt`` ends
with the same weights and metrics as an uninterrupted one (on the same hardware and number of
processes, with deterministic kernels). At an epoch's end ``last.pt`` is written first (it holds
the epoch's row and the best so far), then the row, then ``best.pt``: a run resumed from it
writes whichever of them is missing, and a run stopped before its first ``last.pt`` left
nothing to continue (``--resume auto`` starts it again).

Distributed: started by ``torchrun`` (see :mod:`tcm.engine.distributed`), every process
trains on its share of each global batch (DDP averages the gradients); only rank 0 logs and
writes files. A process that stops ends the others with one line naming it
(:mod:`tcm.engine.lost_processes`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from tcm.data.preprocessing import Preprocessing
from tcm.engine import training_checkpoint as ckpt
from tcm.engine.config import ConfigError, TrainConfig, check_config, check_values
from tcm.engine.distributed import (
    DistContext,
    EpochSampler,
    all_gather_objects,
    all_reduce_sum,
    barrier,
    broadcast_object,
    cleanup,
    init_distributed,
)
from tcm.engine.evaluation import autocast_context, evaluate_dataset, to_layout
from tcm.engine.lost_processes import gather_processes, lost_process_error
from tcm.engine.model_setup import build_model, model_kwargs, seed_everything, set_train_mode
from tcm.engine.optim import LRSchedule, build_optimizer, scaled_lr
from tcm.engine.run_transfer import is_elsewhere, take_over_run
from tcm.engine.scores import EvalResult
from tcm.engine.training_log import (
    CURVES_FILE,
    TRAINING_LOG_FILE,
    MetricsWriter,
    RunningSums,
    plot_curves,
    read_metrics,
)
from tcm.engine.workdir import WorkDirLock, resume_checkpoint
from tcm.errors import WorkDirError

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
LOG_FILE = "train.log"
SHOWN_SKIPPED = 5
"""Paths of skipped samples named in an epoch row and in the log."""


class NonFiniteLossError(RuntimeError):
    """The loss (or the gradient norm) became NaN or infinite; the run stopped without writing
    a checkpoint."""


@dataclass
class TrainResult:
    """What a finished run produced."""

    work_dir: Path
    checkpoint: Path
    """``last.pt``: the final weights and training state."""
    best_checkpoint: Path | None
    """``best.pt`` (best validation top-1), ``None`` without validation."""
    epochs: int
    steps: int
    final: dict[str, Any]
    """The last epoch row of ``metrics.jsonl``."""
    best: dict[str, Any]
    """The epoch row of the best validation top-1 (``{}`` without validation)."""
    history: list[dict[str, Any]] = field(default_factory=list)
    """Every epoch row."""

    @property
    def metrics_file(self) -> Path:
        return self.work_dir / TRAINING_LOG_FILE


class Trainer:
    """One training run; :func:`train` is the entry point.

    Built in steps (:meth:`build`: model, data, optimisation), then :meth:`run` trains it,
    writing its own training log (``metrics.jsonl``). An optimizer step is
    :meth:`_forward_backward` on each micro-batch, then :meth:`_optimizer_step`.
    """

    def __init__(self, cfg: TrainConfig, work_dir: Path, ctx: DistContext, progress: bool) -> None:
        self.ctx = ctx
        self.work_dir = work_dir
        self.progress = progress and ctx.is_main
        num_classes, classes = check_config(cfg, training=True)
        self.cfg = cfg.replace({"model.num_classes": num_classes})
        self.classes = classes
        self.num_classes = num_classes
        self.log: MetricsWriter | None = None
        self._check_hardware()

    # -- set-up ----------------------------------------------------------------------------

    def _check_hardware(self) -> None:
        cfg, device = self.cfg, self.ctx.device
        if cfg.train.amp == "fp16" and device.type != "cuda":
            raise ConfigError("train.amp=fp16 needs CUDA; use train.amp=bf16 on the CPU")
        if cfg.dist.sync_bn and self.ctx.distributed and device.type != "cuda":
            raise ConfigError(
                "dist.sync_bn needs CUDA (SyncBatchNorm has no CPU kernel); on CPUs set "
                "dist.sync_bn=false, or model.freeze_bn=all for batch-independent BN"
            )

    def build(self) -> None:
        """Model, datasets and loader, optimizer and schedule; the run at its start."""
        self._build_model()
        seed_everything(self.cfg.train.seed + self.ctx.rank)  # dropout differs per process
        self._build_data()
        self._build_optimization()
        self.epoch = 0
        self.batch_in_epoch = 0
        self.step = 0
        self.best_top1 = -math.inf
        self.best_row: dict[str, Any] = {}
        self.epoch_row: dict[str, Any] = {}  # the row of the last completed epoch
        self.epoch_sums = RunningSums()
        self.window = RunningSums()  # since the last step row
        self.skipped_count = 0  # training samples replaced this epoch, over every process
        self.skipped_paths: list[str] = []  # the first of them (this process's)
        self.last_good: Path | None = None
        self.grad_norm = float("nan")
        self.lr_of_step = self.lr

    def _build_model(self) -> None:
        cfg, ctx = self.cfg, self.ctx
        model = build_model(cfg, self.num_classes)
        self.prep = Preprocessing.from_config(cfg, mean=model.mean, std=model.std)
        model.to(ctx.device)
        if cfg.model.channels_last:
            model.to(memory_format=torch.channels_last)
        if cfg.dist.sync_bn and ctx.distributed:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model
        self.ddp = None
        if ctx.distributed:
            self.ddp = DistributedDataParallel(
                model,
                device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
                find_unused_parameters=cfg.dist.find_unused_parameters,
            )

    def _build_data(self) -> None:
        from tcm.data import build_dataset, collate_clips

        cfg, ctx, data = self.cfg, self.ctx, self.cfg.data
        common = {
            "num_classes": self.num_classes,
            "frame_template": data.frame_template,
            "frame_start_index": data.frame_start_index,
            "bad_sample_policy": data.bad_sample_policy,
            "decode_threads": data.decode_threads,
        }
        self.train_set = build_dataset(
            data.train_list,
            data.root,
            self.prep,
            train=True,
            class_names=self.classes,
            seed=cfg.train.seed,
            **common,
        )
        self.val_set = None
        if data.val_list and cfg.train.eval_interval > 0:
            self.val_set = build_dataset(data.val_list, data.root, self.prep, train=False, **common)
        self.sampler = EpochSampler(
            len(self.train_set),
            shuffle=True,
            seed=cfg.train.seed,
            rank=ctx.rank,
            world_size=ctx.world_size,
        )
        self.loader = DataLoader(
            self.train_set,
            batch_size=data.batch_size,
            sampler=self.sampler,
            num_workers=data.num_workers,
            collate_fn=collate_clips,
            pin_memory=ctx.device.type == "cuda",
            drop_last=True,
            persistent_workers=data.num_workers > 0,
            # A private generator: iterating the loader never touches the global RNG, whose
            # state (dropout) is saved and restored exactly.
            generator=torch.Generator().manual_seed(cfg.train.seed),
        )

    def _build_optimization(self) -> None:
        cfg = self.cfg
        accumulate = cfg.optim.accumulate_steps
        self.steps_per_epoch = self.sampler.per_rank // cfg.data.batch_size // accumulate
        self.global_batch = cfg.data.batch_size * self.ctx.world_size * accumulate
        if self.steps_per_epoch < 1:
            raise ConfigError(
                f"data.train_list has {len(self.train_set)} samples, fewer than one global "
                f"batch of {self.global_batch} clips (data.batch_size x processes x "
                "optim.accumulate_steps)"
            )
        self.lr = scaled_lr(cfg.optim, self.global_batch)
        self.optimizer = build_optimizer(self.model, cfg.optim, self.lr)
        self.schedule = LRSchedule(self.optimizer, cfg.schedule, self.steps_per_epoch)
        self.schedule.set_step(0)
        self.scaler = torch.amp.GradScaler(self.ctx.device.type, enabled=cfg.train.amp == "fp16")

    # -- checkpoints -----------------------------------------------------------------------

    def _gather_skipped(self) -> list[str]:
        """The first skipped paths of every process (every process takes part)."""
        parts = all_gather_objects(self.skipped_paths, self.ctx)
        return list(dict.fromkeys(p for part in parts for p in part))[:SHOWN_SKIPPED]

    def _checkpoint(self, *, full: bool, metrics: dict | None = None) -> dict[str, Any]:
        rng = None
        skipped_paths: list[str] = []
        if full:
            rng = ckpt.gathered_rng(all_gather_objects(ckpt.capture_rng(), self.ctx))
            skipped_paths = self._gather_skipped()
        return ckpt.build_training_checkpoint(
            model=self.model,
            model_name=self.cfg.model.name,
            num_classes=self.num_classes,
            num_segments=self.cfg.model.num_segments,
            model_kwargs=model_kwargs(self.cfg),
            classes=self.classes,
            data=self.prep.to_dict(),
            config=self.cfg.to_dict(),
            epoch=self.epoch,
            step=self.step,
            batch_in_epoch=self.batch_in_epoch,
            optimizer=self.optimizer if full else None,
            scheduler=self.schedule,
            scaler=self.scaler,
            rng=rng,
            state={
                "best_top1": self.best_top1,
                "best_row": dict(self.best_row),
                "epoch_row": dict(self.epoch_row),
                "epoch_sums": self.epoch_sums.to_tensor(),
                "window": self.window.to_tensor(),
                "skipped": {"count": self.skipped_count, "paths": skipped_paths},
                "global_batch": self.global_batch,
            },
            world_size=self.ctx.world_size,
            metrics=metrics,
        )

    def save_last(self) -> None:
        """Write ``last.pt`` (every process takes part: random states are gathered)."""
        checkpoint = self._checkpoint(full=True)
        if self.ctx.is_main:
            self.last_good = ckpt.save(checkpoint, self.work_dir / ckpt.LAST)
        barrier(self.ctx)

    def save_best(self, row: dict[str, Any]) -> None:
        if self.ctx.is_main:
            ckpt.save(self._checkpoint(full=False, metrics=row), self.work_dir / ckpt.BEST)

    def check_resumable(self, checkpoint: dict[str, Any], path: Path) -> None:
        """A ``ValueError`` when ``checkpoint`` holds another model than the config's."""
        saved = checkpoint["model"]
        if (saved["name"], saved["num_classes"]) != (self.cfg.model.name, self.num_classes):
            raise ValueError(
                f"{path} holds a {saved['name']} with {saved['num_classes']} classes; the config "
                f"builds a {self.cfg.model.name} with {self.num_classes} classes: resume with "
                "the model and classes of the run, or start a new run"
            )

    def resume(self, checkpoint: dict[str, Any], path: Path) -> None:
        """Take the model, optimizer, schedule, position and random states of ``checkpoint``
        (read from ``path``); nothing is written."""
        from tcm.models import check_state_dict

        self.check_resumable(checkpoint, path)
        try:
            check_state_dict(checkpoint["state_dict"], self.model.state_dict())
        except ValueError as error:
            raise ValueError(f"{path} does not fit the config's model: {error}") from None
        self.model.load_state_dict(checkpoint["state_dict"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.schedule.load_state_dict(checkpoint["scheduler"])
        if checkpoint.get("scaler") is not None and self.scaler.is_enabled():
            self.scaler.load_state_dict(checkpoint["scaler"])
        self.epoch = int(checkpoint["epoch"])
        self.step = int(checkpoint["step"])
        self.batch_in_epoch = int(checkpoint["batch_in_epoch"])
        state = checkpoint.get("state", {})
        self.best_top1 = float(state.get("best_top1", -math.inf))
        self.best_row = dict(state.get("best_row", {}))
        self.epoch_row = dict(state.get("epoch_row", {}))
        self.epoch_sums = RunningSums.from_tensor(state.get("epoch_sums"))
        self.window = RunningSums.from_tensor(state.get("window"))
        skipped = state.get("skipped", {})
        self.skipped_count = int(skipped.get("count", 0))
        self.skipped_paths = list(skipped.get("paths", [])) if self.ctx.is_main else []
        if state.get("global_batch", self.global_batch) != self.global_batch:
            logger.warning(
                "resuming with a global batch of %d clips; the checkpoint was trained with %d",
                self.global_batch,
                state["global_batch"],
            )
        rng = checkpoint["rng"]
        if checkpoint.get("world_size", 1) == self.ctx.world_size:
            try:
                ckpt.restore_rng(ckpt.rank_rng(rng, self.ctx.rank))
            except (ValueError, KeyError, TypeError) as error:
                raise ValueError(f"{path}: unusable random states ({error})") from None
        else:
            logger.warning(
                "the checkpoint was written by %d processes, this run has %d: random states "
                "are re-seeded, so the run will not repeat the original exactly",
                checkpoint.get("world_size", 1),
                self.ctx.world_size,
            )
            seed_everything(self.cfg.train.seed + self.ctx.rank + 1000 * self.step)
        self.last_good = Path(path)

    # -- one epoch ---------------------------------------------------------------------------

    def _non_finite(self, what: str, value: float) -> NonFiniteLossError:
        last = self.last_good or "none (no checkpoint was written yet)"
        return NonFiniteLossError(
            f"non-finite {what} ({value}) at step {self.step + 1} (epoch {self.epoch + 1}, "
            f"learning rate {self.schedule.get_last_lr()[0]:.4g}); the run stopped without writing a "
            f"checkpoint. Last good checkpoint: {last}. Try a lower optim.lr, "
            "optim.clip_grad_norm, a warm-up (schedule.warmup_epochs) or train.amp=none."
        )

    def train_epoch(self) -> dict[str, Any]:
        """Train the rest of the epoch; its row's training part."""
        from tqdm.auto import tqdm

        from tcm.data import loader_errors

        total = self._start_epoch()
        bar = tqdm(
            total=self.steps_per_epoch,
            initial=self.batch_in_epoch // self.cfg.optim.accumulate_steps,
            desc=f"epoch {self.epoch + 1}/{self.cfg.schedule.epochs}",
            disable=not self.progress,
            dynamic_ncols=True,
            leave=False,
        )
        with loader_errors("training data"):
            iterator = iter(self.loader)
        try:
            for micro in range(self.batch_in_epoch, total):
                with loader_errors("training data"):
                    batch = next(iterator)
                if not self._micro_batch(batch, micro):
                    continue
                bar.update(1)
                last = micro + 1 == total
                if self.step % self.cfg.train.log_interval == 0 or last:
                    self._log_step(bar, (micro + 1) / total)
                interval = self.cfg.train.checkpoint_interval
                if interval and self.step % interval == 0 and not last:
                    self.epoch_sums.bank()
                    self.window.bank()
                    self.save_last()
        finally:
            bar.close()
            del iterator
        self.epoch_sums.bank()
        return self._epoch_training_row()

    def _start_epoch(self) -> int:
        """Position the data at ``batch_in_epoch`` and start the clocks; the epoch's
        micro-batches."""
        cfg = self.cfg
        set_train_mode(self.model, cfg.model.freeze_bn)
        self.train_set.set_epoch(self.epoch)
        self.sampler.set_epoch(self.epoch)
        self.sampler.set_start(self.batch_in_epoch * cfg.data.batch_size)
        if self.batch_in_epoch == 0:
            self.epoch_sums.reset()
            self.window.reset()
            self.skipped_count = 0
            self.skipped_paths = []
        self.epoch_sums.start_clock()
        self.window.start_clock()
        self.grad_norm = float("nan")
        return self.steps_per_epoch * cfg.optim.accumulate_steps

    def _micro_batch(self, batch, micro: int) -> bool:
        """Forward and backward one micro-batch; then, after the last of an optimizer step,
        the step. Whether a step was taken."""
        for entry in batch.skipped:
            if len(self.skipped_paths) < SHOWN_SKIPPED and entry.path not in self.skipped_paths:
                self.skipped_paths.append(entry.path)
        last_micro = (micro + 1) % self.cfg.optim.accumulate_steps == 0
        stats = self._forward_backward(batch, sync=last_micro)
        self.epoch_sums.add(*stats[:3])
        self.window.add(*stats[:3])
        self.skipped_count += int(stats[3])
        self.batch_in_epoch = micro + 1
        if last_micro:
            self._optimizer_step()
        return last_micro

    def _forward_backward(self, batch, *, sync: bool) -> list[float]:
        """Loss and gradients of one micro-batch (gradients all-reduced when ``sync``).

        Returns:
            Summed over every process: the loss sum, correct clips, clips, skipped samples.

        Raises:
            NonFiniteLossError: the loss is not finite on some process.
        """
        ctx, cfg = self.ctx, self.cfg
        clips, labels = batch
        clips = clips.to(ctx.device, non_blocking=True)
        labels = labels.to(ctx.device, non_blocking=True)
        n = clips.shape[0]
        x = clips.view(n, -1, cfg.model.num_segments, *clips.shape[2:])[:, 0]  # (N, T, 3, H, W)
        no_sync = self.ddp is not None and not sync
        with self.ddp.no_sync() if no_sync else contextlib.nullcontext():
            with autocast_context(ctx.device, cfg.train.amp):
                logits = (self.ddp or self.model)(to_layout(x, cfg.model.channels_last))
            loss = F.cross_entropy(logits.float(), labels)
            finite = bool(torch.isfinite(loss))
            stats = torch.tensor(
                [
                    loss.item() * n if finite else 0.0,
                    (logits.argmax(1) == labels).sum().item(),
                    n,
                    0.0 if finite else 1.0,
                    len(batch.skipped),
                ],
                dtype=torch.float64,
                device=ctx.device if ctx.device.type == "cuda" else "cpu",
            )
            stats = all_reduce_sum(stats, ctx).cpu()
            if stats[3] > 0:
                raise self._non_finite("loss", loss.item())
            self.scaler.scale(loss / cfg.optim.accumulate_steps).backward()
        loss_sum, correct, clips_seen, _, skipped = stats.tolist()
        return [loss_sum, correct, clips_seen, skipped]

    def _optimizer_step(self) -> None:
        """Clip the gradients, step the optimizer and the schedule."""
        self.lr_of_step = self.schedule.get_last_lr()[0]
        clip_norm = self.cfg.optim.clip_grad_norm
        if clip_norm is not None:
            self.scaler.unscale_(self.optimizer)
            self.grad_norm = float(nn.utils.clip_grad_norm_(self.model.parameters(), clip_norm))
            if not math.isfinite(self.grad_norm) and not self.scaler.is_enabled():
                raise self._non_finite("gradient norm", self.grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.schedule.set_step(self.step)

    def _log_step(self, bar, epoch_fraction: float) -> None:
        """Write the window's step row; the window starts again."""
        window = self.window
        row = {
            "kind": "step",
            "epoch": self.epoch + epoch_fraction,
            "step": self.step,
            "loss": window.mean_loss,
            "top1": window.top1,
            "lr": self.lr_of_step,
            "grad_norm": self.grad_norm,
            "clips_per_s": window.clips_per_s,
        }
        self.log.write(row)
        bar.set_postfix(
            loss=f"{row['loss']:.3f}",
            lr=f"{row['lr']:.3g}",
            clips_s=f"{row['clips_per_s']:.1f}",
        )
        window.reset()

    def _epoch_training_row(self) -> dict[str, Any]:
        sums = self.epoch_sums
        row = {
            "train_loss": sums.mean_loss,
            "train_top1": sums.top1,
            # the learning rate of the epoch's last step
            "lr": self.optimizer.param_groups[0]["base_lr"] * self.schedule.factor(self.step - 1),
            "train_time": sums.seconds,
            "clips_per_s": sums.clips / max(sums.seconds, 1e-9),
            "train_skipped": self.skipped_count,
        }
        paths = self._gather_skipped()
        if self.skipped_count:
            row["train_skipped_paths"] = paths
            if self.ctx.is_main:
                logger.warning(
                    "epoch %d: %d training samples could not be read and were replaced "
                    "(data.bad_sample_policy=skip): %s%s",
                    self.epoch + 1,
                    self.skipped_count,
                    ", ".join(paths),
                    ", ..." if self.skipped_count > len(paths) else "",
                )
        return row

    # -- the run -----------------------------------------------------------------------------

    def run(self, resume_path: Path | None, resume: str | os.PathLike | None) -> TrainResult:
        """Train to the last epoch, writing the training log (``metrics.jsonl``) and, at the
        end, the curves. ``resume_path``: the checkpoint :meth:`resume` took, if any."""
        self.log = MetricsWriter(
            self.work_dir, enabled=self.ctx.is_main, tensorboard=self.cfg.train.tensorboard
        )
        try:
            if resume_path is not None:
                if self.ctx.is_main:
                    logger.info(
                        "resumed from %s: epoch %d, step %d (%d batches into the epoch)",
                        resume_path,
                        self.epoch,
                        self.step,
                        self.batch_in_epoch,
                    )
                self.log.truncate_after(self.step)
                self._finish_epoch_files(resumed=True)
            else:
                if resume == "auto" and self.ctx.is_main:
                    logger.info("no checkpoint to resume from in %s: starting", self.work_dir)
                self.log.truncate_after(-1)
            result = self.fit()
        finally:
            self.log.close()
        if self.ctx.is_main:
            plot_curves(
                read_metrics(self.work_dir), self.work_dir / CURVES_FILE, title=self.cfg.name
            )
        return result

    def fit(self) -> TrainResult:
        """The epochs left: train, validate when due, log, checkpoint."""
        cfg, ctx = self.cfg, self.ctx
        epochs = cfg.schedule.epochs
        if ctx.is_main:
            logger.info(
                "training %s (%d classes, %d frames) on %s x %d: %d train clips, %d steps per "
                "epoch, global batch %d, lr %.4g",
                cfg.model.name,
                self.num_classes,
                cfg.model.num_segments,
                ctx.device,
                ctx.world_size,
                len(self.train_set),
                self.steps_per_epoch,
                self.global_batch,
                self.lr,
            )
        while self.epoch < epochs:
            row: dict[str, Any] = {"kind": "epoch", "epoch": self.epoch + 1}
            row.update(self.train_epoch())
            eval_start = time.perf_counter()
            evaluate_now = self.val_set is not None and (
                (self.epoch + 1) % cfg.train.eval_interval == 0 or self.epoch + 1 == epochs
            )
            if evaluate_now:
                row.update(self._validation_row())
            row["step"] = self.step
            row["time"] = row.pop("train_time") + time.perf_counter() - eval_start
            self.epoch += 1
            self.batch_in_epoch = 0
            if evaluate_now and row["val_top1"] > self.best_top1:
                self.best_top1 = row["val_top1"]
                self.best_row = dict(row)
            self.epoch_row = dict(row)
            # last.pt first: it holds the row and the best, so a run stopped before the row
            # or best.pt is written writes them when resumed (_finish_epoch_files).
            self.save_last()
            if ctx.is_main:
                logger.info(_epoch_line(row, epochs))
            self._finish_epoch_files()
        return self._result()

    def _finish_epoch_files(self, *, resumed: bool = False) -> None:
        """After the ``last.pt`` of an epoch's end: the epoch's row in ``metrics.jsonl`` and,
        when the epoch was the best, ``best.pt``. ``resumed``: only what is not there yet (the
        run that wrote ``last.pt`` may have stopped before or between these writes)."""
        row, epoch = self.epoch_row, self.epoch
        if not row or self.batch_in_epoch != 0 or row.get("epoch") != epoch:
            return  # last.pt is not an epoch's end
        if self.ctx.is_main:
            logged = resumed and any(
                r.get("kind") == "epoch" and r.get("epoch") == epoch
                for r in read_metrics(self.work_dir)
            )
            if not logged:
                self.log.write(row)
        best = self.best_row.get("epoch") == epoch
        if best and not (resumed and ckpt.holds_epoch(self.work_dir / ckpt.BEST, epoch)):
            self.save_best(row)

    def validate(self) -> EvalResult:
        cfg = self.cfg
        workers = cfg.eval.num_workers
        return evaluate_dataset(
            self.model,
            self.val_set,
            list_file=cfg.data.val_list,
            views=self.prep.views,
            classes=self.classes,
            batch_size=cfg.eval.batch_size,
            num_workers=workers if workers is not None else cfg.data.num_workers,
            ctx=self.ctx,
            amp=cfg.train.amp,
            channels_last=cfg.model.channels_last,
            progress=self.progress,
            desc="validate",
        )

    def _validation_row(self) -> dict[str, Any]:
        """Validate; the epoch row's validation part."""
        if self.cfg.data.bad_sample_policy == "raise":
            # A video that cannot be read stops the run: keep the epoch's training first (a
            # resumed run repeats only the validation).
            self.save_last()
        result = self.validate()
        row = {
            "val_loss": result.loss,
            "val_top1": result.top1,
            "val_top5": result.top5,
            "val_mean_class": result.mean_class_acc,
            "val_skipped": len(result.skipped),
        }
        if result.skipped:
            row["val_skipped_paths"] = [s.path for s in result.skipped[:SHOWN_SKIPPED]]
            if self.ctx.is_main:
                logger.warning(
                    "epoch %d: %d validation videos could not be read and are left out of "
                    "val_top1: %s%s",
                    self.epoch + 1,
                    len(result.skipped),
                    ", ".join(row["val_skipped_paths"]),
                    ", ..." if len(result.skipped) > SHOWN_SKIPPED else "",
                )
        return row

    def _result(self) -> TrainResult:
        rows = read_metrics(self.work_dir) if self.ctx.is_main else []
        history = [r for r in rows if r.get("kind") == "epoch"]
        best = self.work_dir / ckpt.BEST
        return TrainResult(
            work_dir=self.work_dir,
            checkpoint=self.work_dir / ckpt.LAST,
            best_checkpoint=best if best.is_file() else None,
            epochs=self.epoch,
            steps=self.step,
            final=history[-1] if history else {},
            best=dict(self.best_row),
            history=history,
        )


def _epoch_line(row: dict[str, Any], epochs: int) -> str:
    text = (
        f"epoch {row['epoch']}/{epochs}: train loss {row['train_loss']:.4f}, "
        f"top-1 {row['train_top1']:.2f}%, lr {row['lr']:.4g}, {row['clips_per_s']:.1f} clips/s"
    )
    if "val_top1" in row:
        text += (
            f"; val top-1 {row['val_top1']:.2f}%, top-5 {row['val_top5']:.2f}%, "
            f"mean class {row['val_mean_class']:.2f}%"
        )
    return text


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def default_work_dir(cfg: TrainConfig) -> Path:
    return Path("work_dirs") / (cfg.name or cfg.model.name)


@contextlib.contextmanager
def _run_logging(work_dir: Path, enabled: bool):
    """Log the ``tcm`` loggers of the main process to ``work_dir/train.log`` too."""
    if not enabled:
        yield
        return
    package_logger = logging.getLogger("tcm")
    handler = logging.FileHandler(work_dir / LOG_FILE, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    previous = package_logger.level
    if package_logger.getEffectiveLevel() > logging.INFO:
        package_logger.setLevel(logging.INFO)
    package_logger.addHandler(handler)
    try:
        yield
    finally:
        package_logger.removeHandler(handler)
        package_logger.setLevel(previous)
        handler.close()


def train(
    config: TrainConfig,
    work_dir: str | os.PathLike | None = None,
    *,
    resume: str | os.PathLike | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train a model as ``config`` says; write the run into ``work_dir``.

    Args:
        config: the configuration (:func:`~tcm.engine.config.load_config`, or built in Python).
        work_dir: the run's folder (default ``work_dirs/<config name>``), locked for the life
            of the run. A folder that holds a run (``last.pt``, ``best.pt`` or
            ``metrics.jsonl``) is an error unless the run is resumed.
        resume: ``"auto"`` (continue from the work dir's ``last.pt`` when there is one, else
            start) or the path of a training checkpoint (of this folder's run, or into an
            empty folder). Processes restarted by ``torchrun --max-restarts`` resume
            automatically.
        progress: progress bars (main process only).

    Returns:
        :class:`TrainResult` with the final and best epoch rows and the checkpoint paths.

    Raises:
        ConfigError: an invalid config (checked before any data is read).
        WorkDirError: the folder is in use by another run, or holds a run this one may not
            replace or continue.
        NonFiniteLossError: the loss diverged; no checkpoint was overwritten.

    Example:
        >>> cfg = TrainConfig(model=ModelConfig(name="tsm_resnet10", num_segments=8),
        ...                   data=DataConfig(root="videos", train_list="train.txt",
        ...                                   val_list="val.txt", classes="classes.txt"))
        >>> result = train(cfg, "runs/tsm10")                      # doctest: +SKIP
        >>> result.final["val_top1"], result.checkpoint            # doctest: +SKIP
    """
    work_dir = Path(work_dir) if work_dir is not None else default_work_dir(config)
    check_values(config)  # dist.timeout_min among them, before the process group is made
    ctx = init_distributed(config.train.device, config.dist.backend, config.dist.timeout_min)
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    lock = WorkDirLock(work_dir) if ctx.is_main else None
    started = False
    processes = None
    try:
        processes = gather_processes(ctx)  # where each runs, before any can fail alone
        trainer = Trainer(config, work_dir, ctx, progress)  # checks the config: no data read yet
        if resume is None and int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0:
            resume = "auto"
        resume_path = _claim_work_dir(lock, ctx, resume)
        checkpoint = None
        if resume_path is not None:
            checkpoint = ckpt.load_training_checkpoint(resume_path)
            trainer.check_resumable(checkpoint, resume_path)
        if config.train.deterministic:
            torch.use_deterministic_algorithms(True)
        with _tqdm_logging(progress and ctx.is_main):
            trainer.build()
            if checkpoint is not None:
                trainer.resume(checkpoint, resume_path)
            del checkpoint
            # Every check has passed: the run's files may be written.
            started = True
            elsewhere = resume_path is not None and is_elsewhere(resume_path, work_dir)
            if ctx.is_main:
                ckpt.remove_stale_temporaries(work_dir)
                (work_dir / CONFIG_FILE).write_text(trainer.cfg.to_yaml(), encoding="utf-8")
                if elsewhere:  # this folder takes the run over: its log rows and best.pt
                    take_over_run(resume_path.parent, work_dir, trainer.step, trainer.best_row)
            barrier(ctx)
            with _run_logging(work_dir, ctx.is_main):
                if elsewhere:
                    trainer.save_last()  # resumable here from the start, whatever is left
                return trainer.run(resume_path, resume)
    except RuntimeError as error:
        lost = lost_process_error(error, processes, ctx, work_dir / LOG_FILE)
        if lost is None:
            raise
        raise lost from None
    finally:
        if lock is not None:
            lock.release(remove_dir=not started)
        torch.use_deterministic_algorithms(previous_deterministic)
        cleanup(ctx)


def _claim_work_dir(
    lock: WorkDirLock | None, ctx: DistContext, resume: str | os.PathLike | None
) -> Path | None:
    """Lock the work dir (main process) and decide what the run does with it: the checkpoint
    to resume from, or ``None``. The other processes follow the decision, or the refusal."""
    decision: tuple[str, Any] = ("ok", None)
    refusal: BaseException | None = None
    if lock is not None:
        try:
            lock.acquire()
            decision = ("ok", resume_checkpoint(lock.work_dir, resume))
        except (ValueError, OSError) as error:
            refusal, decision = error, ("refused", str(error))
    decision = broadcast_object(decision, ctx)
    if decision[0] == "refused":
        raise refusal if refusal is not None else WorkDirError(decision[1])
    return decision[1]


@contextlib.contextmanager
def _tqdm_logging(enabled: bool):
    """Route console log lines through tqdm so that they do not break the progress bars."""
    if not enabled:
        yield
        return
    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm():
        yield
