"""The trainer of one run: its model, data and optimisation built, resumed, trained epoch by
epoch, validated and checkpointed. :func:`tcm.engine.run.train` is the entry point.

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
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from tcm.engine import training_checkpoint as ckpt
from tcm.engine.config import RunConfig
from tcm.engine.config_checks import check_config
from tcm.engine.distributed import DistContext, EpochSampler, all_gather_objects, barrier
from tcm.engine.evaluation import evaluate_dataset
from tcm.engine.model_setup import build_model, model_kwargs, seed_everything
from tcm.engine.optim import (
    LRSchedule,
    apply_group_settings,
    build_optimizer,
    group_settings,
    scaled_lr,
)
from tcm.engine.preprocessing import preprocessing_from_config, storage_from_config
from tcm.engine.scores import EvalResult
from tcm.engine.shared_memory import check_shared_memory
from tcm.engine.training_epoch import SHOWN_SKIPPED, EpochLoop
from tcm.engine.training_log import (
    CURVES_FILE,
    TRAINING_LOG_FILE,
    MetricsWriter,
    plot_curves,
    read_metrics,
)
from tcm.engine.training_state import RunRecord, TrainingState
from tcm.errors import ConfigError
from tcm.models.compiled import compile_model

logger = logging.getLogger(__name__)


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


class Trainer(EpochLoop):
    """One training run; :func:`~tcm.engine.run.train` is the entry point.

    Built in steps (:meth:`build`: model, data, optimisation), then :meth:`run` trains it,
    writing its own training log (``metrics.jsonl``); the epochs are :class:`EpochLoop`'s.
    Everything a checkpoint holds is :attr:`state` (:class:`TrainingState`).
    """

    def __init__(self, cfg: RunConfig, work_dir: Path, ctx: DistContext, progress: bool) -> None:
        self.ctx = ctx
        self.work_dir = work_dir
        self.progress = progress and ctx.is_main
        num_classes, classes = check_config(cfg, training=True)
        check_shared_memory(cfg, training=True)
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
        record = RunRecord(
            model_name=self.cfg.model.name,
            num_classes=self.num_classes,
            num_segments=self.cfg.model.num_segments,
            model_kwargs=model_kwargs(self.cfg),
            classes=self.classes,
            preprocessing=self.prep.to_dict(),
            config=self.cfg.to_dict(),
            world_size=self.ctx.world_size,
        )
        self.state = TrainingState(
            record, self.model, self.optimizer, self.schedule, self.scaler, self.global_batch
        )
        self.last_good: Path | None = None
        self.grad_norm = float("nan")
        self.lr_of_step = self.lr

    def _build_model(self) -> None:
        cfg, ctx = self.cfg, self.ctx
        model = build_model(cfg, self.num_classes)
        self.prep = preprocessing_from_config(cfg, mean=model.mean, std=model.std)
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
        # What the training step calls: the same parameters, compiled on request.
        self.train_model = self.ddp or model
        if cfg.train.compile:
            self.train_model = compile_model(self.train_model)

    def _build_data(self) -> None:
        from tcm.data import build_dataset, collate_clips

        cfg, ctx, data = self.cfg, self.ctx, self.cfg.data
        torch.multiprocessing.set_sharing_strategy(data.sharing_strategy)
        self.train_set = build_dataset(
            data.train_list,
            data.root,
            self.prep,
            train=True,
            class_names=self.classes,
            num_classes=self.num_classes,
            storage=storage_from_config(cfg, seed=cfg.train.seed),
        )
        self.val_set = None
        if data.val_list and cfg.train.eval_interval > 0:
            self.val_set = build_dataset(
                data.val_list,
                data.root,
                self.prep,
                train=False,
                num_classes=self.num_classes,
                storage=storage_from_config(cfg),
            )
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

    def _checkpoint(self, *, full: bool, metrics: dict | None = None) -> dict[str, Any]:
        """The training state as a checkpoint; ``full`` (every process takes part) with the
        random states and skipped paths of every process."""
        if not full:
            return self.state.to_checkpoint(full=False, metrics=metrics)
        rng = ckpt.gathered_rng(all_gather_objects(ckpt.capture_rng(), self.ctx))
        return self.state.to_checkpoint(rng=rng, skipped_paths=self._gather_skipped())

    def save_last(self) -> None:
        """Write ``last.pt`` (every process takes part: random states are gathered)."""
        checkpoint = self._checkpoint(full=True)
        if self.ctx.is_main:
            self.last_good = ckpt.save(checkpoint, self.work_dir / ckpt.LAST)
        barrier(self.ctx)

    def save_best(self, row: dict[str, Any]) -> None:
        if self.ctx.is_main:
            ckpt.save(self._checkpoint(full=False, metrics=row), self.work_dir / ckpt.BEST)

    def resume(self, checkpoint: dict[str, Any], path: Path) -> None:
        """Take the model, optimizer, schedule, position and random states of ``checkpoint``
        (read from ``path``); nothing is written."""
        from tcm.models import check_state_dict

        ckpt.check_same_model(checkpoint, path, self.cfg.model.name, self.num_classes)
        try:
            check_state_dict(checkpoint["state_dict"], self.model.state_dict())
        except ValueError as error:
            raise ValueError(f"{path} does not fit the config's model: {error}") from None
        configured = group_settings(self.optimizer)
        self.state.restore(checkpoint, keep_paths=self.ctx.is_main)
        changes = apply_group_settings(self.optimizer, configured)
        self.schedule.set_step(self.loop.step)
        if changes and self.ctx.is_main:
            logger.info(
                "the config's optimizer settings differ from the checkpoint's; the run goes on "
                "with the config's from step %d: %s",
                self.loop.step,
                ", ".join(changes),
            )
        self._place_in_epoch(checkpoint)
        if not ckpt.restore_process_rng(checkpoint, path, self.ctx.rank, self.ctx.world_size):
            logger.warning(
                "the checkpoint was written by %d processes, this run has %d: random states "
                "are re-seeded, so the run will not repeat the original exactly",
                checkpoint.get("world_size", 1),
                self.ctx.world_size,
            )
            seed_everything(self.cfg.train.seed + self.ctx.rank + 1000 * self.loop.step)
        self.last_good = Path(path)

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
                        self.loop.epoch,
                        self.loop.step,
                        self.loop.batch_in_epoch,
                    )
                self.log.truncate_after(self.loop.step)
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
        while self.loop.epoch < epochs:
            row: dict[str, Any] = {"kind": "epoch", "epoch": self.loop.epoch + 1}
            row.update(self.train_epoch())
            eval_start = time.perf_counter()
            evaluate_now = self.val_set is not None and (
                (self.loop.epoch + 1) % cfg.train.eval_interval == 0
                or self.loop.epoch + 1 == epochs
            )
            if evaluate_now:
                row.update(self._validation_row())
            row["step"] = self.loop.step
            row["time"] = row.pop("train_time") + time.perf_counter() - eval_start
            self.loop.epoch += 1
            self.loop.batch_in_epoch = self.loop.clips_in_epoch = 0
            if evaluate_now and row["val_top1"] > self.loop.best_top1:
                self.loop.best_top1 = row["val_top1"]
                self.loop.best_row = dict(row)
            self.loop.epoch_row = dict(row)
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
        row, epoch = self.loop.epoch_row, self.loop.epoch
        if not row or self.loop.batch_in_epoch != 0 or row.get("epoch") != epoch:
            return  # last.pt is not an epoch's end
        if self.ctx.is_main:
            logged = resumed and any(
                r.get("kind") == "epoch" and r.get("epoch") == epoch
                for r in read_metrics(self.work_dir)
            )
            if not logged:
                self.log.write(row)
        best = self.loop.best_row.get("epoch") == epoch
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
                    self.loop.epoch + 1,
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
            epochs=self.loop.epoch,
            steps=self.loop.step,
            final=history[-1] if history else {},
            best=dict(self.loop.best_row),
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
