"""The training loop: :func:`train` turns a :class:`~tcm.engine.config.TrainConfig` into a run.

A run lives in a work dir, locked for the life of the run (:mod:`tcm.engine.workdir`: a
second run there is refused, as is a new run into a folder that holds one)::

    config.yaml      the resolved config
    train.log        the log of the main process
    metrics.jsonl    one row per logged step and per epoch (see :mod:`tcm.engine.metrics`)
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
processes, with deterministic kernels).

Distributed: started by ``torchrun`` (see :mod:`tcm.engine.distributed`), every process
trains on its share of each global batch (DDP averages the gradients); only rank 0 logs and
writes files.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from tcm.engine import checkpointing as ckpt
from tcm.engine.config import ConfigError, TrainConfig, check_config
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
from tcm.engine.evaluation import (
    EvalResult,
    autocast_context,
    build_test_dataset,
    check_scored,
    predict,
)
from tcm.engine.metrics import CURVES_FILE, MetricsWriter, plot_curves, read_metrics
from tcm.engine.optim import LRSchedule, build_optimizer, scaled_lr
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
        return self.work_dir / "metrics.jsonl"


# --------------------------------------------------------------------------------------------
# Model set-up
# --------------------------------------------------------------------------------------------


def batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The model's BatchNorm layers in definition order (the stem's first)."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def frozen_batch_norms(model: nn.Module, mode: str) -> list[nn.Module]:
    """BatchNorm layers frozen by ``model.freeze_bn``: ``none``, ``partial`` (all but the
    first, TSM's partial BN) or ``all``."""
    norms = batch_norms(model)
    if mode == "partial":
        return norms[1:]
    return norms if mode == "all" else []


def freeze_batch_norms(model: nn.Module, mode: str) -> None:
    """Stop the affine parameters of the frozen BatchNorm layers from training."""
    for norm in frozen_batch_norms(model, mode):
        for param in norm.parameters():
            param.requires_grad_(False)


def set_train_mode(model: nn.Module, mode: str) -> None:
    """``model.train()`` with the frozen BatchNorm layers kept in eval mode (running stats)."""
    model.train()
    for norm in frozen_batch_norms(model, mode):
        norm.eval()


def load_initial_weights(model: nn.Module, path: str) -> None:
    """Start from a tcm checkpoint (fine-tuning): every tensor must fit, except the
    classifier, which is dropped when its shape differs (another class count)."""
    from tcm.checkpoint import load_checkpoint
    from tcm.models import check_state_dict

    state = dict(load_checkpoint(path)["state_dict"])
    own = model.state_dict()
    dropped = [
        k
        for k in list(state)
        if k.startswith("fc.") and k in own and state[k].shape != own[k].shape
    ]
    for key in dropped:
        del state[key]
    if dropped:
        logger.info("init_from %s: classifier re-initialised (%s)", path, ", ".join(dropped))
        for key in dropped:
            state[key] = own[key]
    try:
        check_state_dict(state, own)
    except ValueError as error:
        raise ValueError(f"model.init_from {path}: {error}") from None
    model.load_state_dict(state)
    logger.info("initialised from %s", path)


def model_kwargs(cfg: TrainConfig) -> dict[str, Any]:
    """Options of ``create_model`` that describe the architecture (stored in checkpoints)."""
    kwargs = {k: v for k, v in cfg.model.kwargs.items() if k != "pretrained"}
    return {"dropout": cfg.model.dropout, **kwargs}


def data_section(cfg: TrainConfig, model: nn.Module) -> dict[str, Any]:
    """The checkpoint's ``data`` section: how to preprocess a video as in testing."""
    d = cfg.data
    return {
        "num_segments": cfg.model.num_segments,
        "sampling": d.sampling,
        "dense_stride": d.dense_stride,
        "resize": d.resize,
        "input_size": d.input_size,
        "mean": [float(m) for m in model.mean],
        "std": [float(s) for s in model.std],
        "frame_template": d.frame_template,
        "frame_start_index": d.frame_start_index,
        "num_clips": cfg.eval.num_clips,
        "num_crops": cfg.eval.num_crops,
    }


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------


class Trainer:
    """One training run; :func:`train` is the entry point."""

    def __init__(self, cfg: TrainConfig, work_dir: Path, ctx: DistContext, progress: bool) -> None:
        self.ctx = ctx
        self.work_dir = work_dir
        self.progress = progress and ctx.is_main
        num_classes, classes = check_config(cfg, training=True)
        self.cfg = cfg.replace({"model.num_classes": num_classes})
        self.classes = classes
        self.num_classes = num_classes
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
        from tcm.data import build_dataset, collate_clips
        from tcm.models import create_model

        cfg, ctx = self.cfg, self.ctx
        _seed_everything(cfg.train.seed)  # identical initial weights on every process
        model = create_model(
            cfg.model.name,
            self.num_classes,
            cfg.model.num_segments,
            pretrained=cfg.model.pretrained,
            **model_kwargs(cfg),
        )
        if cfg.model.init_from:
            load_initial_weights(model, cfg.model.init_from)
        freeze_batch_norms(model, cfg.model.freeze_bn)
        self.data_info = data_section(cfg, model)
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
        _seed_everything(cfg.train.seed + ctx.rank)  # dropout draws differ between processes

        d = cfg.data
        self.train_set = build_dataset(
            d.train_list,
            d.root,
            train=True,
            num_segments=cfg.model.num_segments,
            sampling=d.sampling,
            dense_stride=d.dense_stride,
            input_size=d.input_size,
            resize=tuple(d.resize) if isinstance(d.resize, list) else d.resize,
            short_side_range=tuple(d.short_side_range) if d.short_side_range else None,
            train_crop=d.train_crop,
            scales=tuple(d.scales),
            flip=d.flip,
            class_names=self.classes,
            num_classes=self.num_classes,
            mean=model.mean,
            std=model.std,
            frame_template=d.frame_template,
            frame_start_index=d.frame_start_index,
            bad_sample_policy=d.bad_sample_policy,
            seed=cfg.train.seed,
            decode_threads=d.decode_threads,
        )
        self.val_set = None
        if d.val_list and cfg.train.eval_interval > 0:
            self.val_set = build_test_dataset(
                d.val_list,
                d.root,
                self.data_info,
                num_clips=cfg.eval.num_clips,
                num_crops=cfg.eval.num_crops,
                num_classes=self.num_classes,
                decode_threads=d.decode_threads,
                bad_sample_policy=d.bad_sample_policy,
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
            batch_size=d.batch_size,
            sampler=self.sampler,
            num_workers=d.num_workers,
            collate_fn=collate_clips,
            pin_memory=ctx.device.type == "cuda",
            drop_last=True,
            persistent_workers=d.num_workers > 0,
            # A private generator: iterating the loader never touches the global RNG, whose
            # state (dropout) is saved and restored exactly.
            generator=torch.Generator().manual_seed(cfg.train.seed),
        )
        accumulate = cfg.optim.accumulate_steps
        self.steps_per_epoch = self.sampler.per_rank // d.batch_size // accumulate
        self.global_batch = d.batch_size * ctx.world_size * accumulate
        if self.steps_per_epoch < 1:
            raise ConfigError(
                f"data.train_list has {len(self.train_set)} samples, fewer than one global "
                f"batch of {self.global_batch} clips (data.batch_size x processes x "
                "optim.accumulate_steps)"
            )
        self.lr = scaled_lr(cfg.optim, self.global_batch)
        self.optimizer = build_optimizer(model, cfg.optim, self.lr)
        self.schedule = LRSchedule(self.optimizer, cfg.schedule, self.steps_per_epoch)
        self.schedule.set_step(0)
        self.scaler = torch.amp.GradScaler(ctx.device.type, enabled=cfg.train.amp == "fp16")

        self.epoch = 0
        self.batch_in_epoch = 0
        self.step = 0
        self.best_top1 = -math.inf
        self.best_row: dict[str, Any] = {}
        self.epoch_sums = torch.zeros(4, dtype=torch.float64)  # loss sum, correct, clips, seconds
        # The step rows' window since the last one: loss sum, correct, clips, seconds.
        self.window = torch.zeros(4, dtype=torch.float64)
        self.skipped_count = 0  # training samples replaced this epoch, over every process
        self.skipped_paths: list[str] = []  # the first of them (this process's)
        self.last_good: Path | None = None

    # -- checkpoints -----------------------------------------------------------------------

    def _gather_skipped(self) -> list[str]:
        """The first skipped paths of every process (every process takes part)."""
        parts = all_gather_objects(self.skipped_paths, self.ctx)
        return list(dict.fromkeys(p for part in parts for p in part))[:SHOWN_SKIPPED]

    def _checkpoint(self, *, full: bool, metrics: dict | None = None) -> dict[str, Any]:
        rng = None
        skipped_paths: list[str] = []
        if full:
            rngs = all_gather_objects(ckpt.capture_rng(), self.ctx)
            rng = dict(rngs[0])
            rng["torch_ranks"] = torch.stack([r["torch"] for r in rngs])
            skipped_paths = self._gather_skipped()
        return ckpt.build_training_checkpoint(
            model=self.model,
            model_name=self.cfg.model.name,
            num_classes=self.num_classes,
            num_segments=self.cfg.model.num_segments,
            model_kwargs=model_kwargs(self.cfg),
            classes=self.classes,
            data=self.data_info,
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
                "epoch_sums": self.epoch_sums.clone(),
                "window": self.window.clone(),
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
                f"builds a {self.cfg.model.name} with {self.num_classes}"
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
        self.epoch_sums = state.get("epoch_sums", torch.zeros(4, dtype=torch.float64)).clone()
        self.window = state.get("window", torch.zeros(4, dtype=torch.float64)).clone()
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
            ckpt.restore_rng({**rng, "torch": rng["torch_ranks"][self.ctx.rank]})
        else:
            logger.warning(
                "the checkpoint was written by %d processes, this run has %d: random states "
                "are re-seeded, so the run will not repeat the original exactly",
                checkpoint.get("world_size", 1),
                self.ctx.world_size,
            )
            _seed_everything(self.cfg.train.seed + self.ctx.rank + 1000 * self.step)
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
        from tcm.data import loader_errors

        cfg, ctx = self.cfg, self.ctx
        accumulate = cfg.optim.accumulate_steps
        model = self.ddp or self.model
        set_train_mode(self.model, cfg.model.freeze_bn)
        self.train_set.set_epoch(self.epoch)
        self.sampler.set_epoch(self.epoch)
        self.sampler.set_start(self.batch_in_epoch * cfg.data.batch_size)
        if self.batch_in_epoch == 0:
            self.epoch_sums.zero_()
            self.window.zero_()
            self.skipped_count = 0
            self.skipped_paths = []
        total = self.steps_per_epoch * accumulate
        from tqdm.auto import tqdm

        bar = tqdm(
            total=self.steps_per_epoch,
            initial=self.batch_in_epoch // accumulate,
            desc=f"epoch {self.epoch + 1}/{cfg.schedule.epochs}",
            disable=not self.progress,
            dynamic_ncols=True,
            leave=False,
        )
        window = self.window  # loss sum, correct, clips, seconds since the last step row
        window_start = time.perf_counter()
        epoch_start = time.perf_counter()
        seconds_before = float(self.epoch_sums[3])
        grad_norm = float("nan")
        with loader_errors("training data"):
            iterator = iter(self.loader)
        try:
            for micro in range(self.batch_in_epoch, total):
                with loader_errors("training data"):
                    batch = next(iterator)
                clips, labels = batch
                for entry in batch.skipped:
                    if (
                        len(self.skipped_paths) < SHOWN_SKIPPED
                        and entry.path not in self.skipped_paths
                    ):
                        self.skipped_paths.append(entry.path)
                clips = clips.to(ctx.device, non_blocking=True)
                labels = labels.to(ctx.device, non_blocking=True)
                n = clips.shape[0]
                x = clips.view(n, -1, cfg.model.num_segments, *clips.shape[2:])[:, 0]
                if cfg.model.channels_last:
                    x = x.flatten(0, 1).contiguous(memory_format=torch.channels_last).view(x.shape)
                last_micro = (micro + 1) % accumulate == 0
                sync = (
                    contextlib.nullcontext()
                    if self.ddp is None or last_micro
                    else self.ddp.no_sync()
                )
                with sync:
                    with autocast_context(ctx.device, cfg.train.amp):
                        logits = model(x)  # (N, K)
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
                    self.scaler.scale(loss / accumulate).backward()
                self.epoch_sums[:3] += stats[:3]
                window[:3] += stats[:3]
                self.skipped_count += int(stats[4])
                self.batch_in_epoch = micro + 1
                if not last_micro:
                    continue
                lr = self.schedule.get_last_lr()[0]
                if cfg.optim.clip_grad_norm is not None:
                    self.scaler.unscale_(self.optimizer)
                    grad_norm = float(
                        nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.clip_grad_norm)
                    )
                    if not math.isfinite(grad_norm) and not self.scaler.is_enabled():
                        raise self._non_finite("gradient norm", grad_norm)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
                self.step += 1
                self.schedule.set_step(self.step)
                bar.update(1)
                if self.step % cfg.train.log_interval == 0 or micro + 1 == total:
                    elapsed = max(float(window[3]) + time.perf_counter() - window_start, 1e-9)
                    row = {
                        "kind": "step",
                        "epoch": self.epoch + (micro + 1) / total,
                        "step": self.step,
                        "loss": float(window[0] / window[2]),
                        "top1": float(100 * window[1] / window[2]),
                        "lr": lr,
                        "grad_norm": grad_norm,
                        "clips_per_s": float(window[2]) / elapsed,
                    }
                    self.metrics.write(row)
                    bar.set_postfix(
                        loss=f"{row['loss']:.3f}",
                        lr=f"{lr:.3g}",
                        clips_s=f"{row['clips_per_s']:.1f}",
                    )
                    window.zero_()
                    window_start = time.perf_counter()
                if (
                    cfg.train.checkpoint_interval
                    and self.step % cfg.train.checkpoint_interval == 0
                    and micro + 1 < total
                ):
                    now = time.perf_counter()
                    self.epoch_sums[3] = seconds_before + now - epoch_start
                    window[3] += now - window_start
                    window_start = now
                    self.save_last()
        finally:
            bar.close()
            del iterator
        self.epoch_sums[3] = seconds_before + time.perf_counter() - epoch_start
        sums = self.epoch_sums
        row = {
            "train_loss": float(sums[0] / sums[2]),
            "train_top1": float(100 * sums[1] / sums[2]),
            # the learning rate of the epoch's last step
            "lr": self.optimizer.param_groups[0]["base_lr"] * self.schedule.factor(self.step - 1),
            "train_time": float(sums[3]),
            "clips_per_s": float(sums[2] / max(float(sums[3]), 1e-9)),
            "train_skipped": self.skipped_count,
        }
        paths = self._gather_skipped()
        if self.skipped_count:
            row["train_skipped_paths"] = paths
            if ctx.is_main:
                logger.warning(
                    "epoch %d: %d training samples could not be read and were replaced "
                    "(data.bad_sample_policy=skip): %s%s",
                    self.epoch + 1,
                    self.skipped_count,
                    ", ".join(paths),
                    ", ..." if self.skipped_count > len(paths) else "",
                )
        return row

    def validate(self) -> EvalResult:
        predictions = predict(
            self.model,
            self.val_set,
            batch_size=self.cfg.eval.batch_size,
            num_workers=self.cfg.eval.num_workers
            if self.cfg.eval.num_workers is not None
            else self.cfg.data.num_workers,
            ctx=self.ctx,
            amp=self.cfg.train.amp,
            channels_last=self.cfg.model.channels_last,
            progress=self.progress,
            desc="validate",
        )
        check_scored(predictions, self.cfg.data.val_list, len(self.val_set))
        return EvalResult(
            predictions.scores,
            predictions.labels,
            [self.val_set.records[i].path for i in predictions.indices],
            self.classes,
            (self.cfg.eval.num_clips, self.cfg.eval.num_crops),
            skipped=predictions.skipped,
        )

    def fit(self) -> TrainResult:
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
                if cfg.data.bad_sample_policy == "raise":
                    # A video that cannot be read stops the run: keep the epoch's training
                    # first (a resumed run repeats only the validation).
                    self.save_last()
                result = self.validate()
                row.update(
                    val_loss=result.loss,
                    val_top1=result.top1,
                    val_top5=result.top5,
                    val_mean_class=result.mean_class_acc,
                    val_skipped=len(result.skipped),
                )
                if result.skipped:
                    row["val_skipped_paths"] = [s.path for s in result.skipped[:SHOWN_SKIPPED]]
                    if ctx.is_main:
                        logger.warning(
                            "epoch %d: %d validation videos could not be read and are left out "
                            "of val_top1: %s%s",
                            self.epoch + 1,
                            len(result.skipped),
                            ", ".join(row["val_skipped_paths"]),
                            ", ..." if len(result.skipped) > SHOWN_SKIPPED else "",
                        )
            row["step"] = self.step
            row["time"] = row.pop("train_time") + time.perf_counter() - eval_start
            self.epoch += 1
            self.batch_in_epoch = 0
            improved = evaluate_now and row["val_top1"] > self.best_top1
            if improved:
                self.best_top1 = row["val_top1"]
                self.best_row = dict(row)
            if ctx.is_main:
                self.metrics.write(row)
                logger.info(_epoch_line(row, epochs))
            if improved:
                self.save_best(row)  # before last.pt: a kill in between repeats the epoch
            self.save_last()
        return self._result()

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
    ctx = init_distributed(config.train.device, config.dist.backend, config.dist.timeout_min)
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    lock = None
    started = False
    try:
        work_dir = Path(work_dir) if work_dir is not None else default_work_dir(config)
        trainer = Trainer(config, work_dir, ctx, progress)  # checks the config: no data read yet
        if resume is None and int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0:
            resume = "auto"
        # The main process locks the folder and decides what the run does with it; the other
        # processes follow its decision (or its refusal).
        decision: tuple[str, Any] = ("ok", None)
        refusal: BaseException | None = None
        if ctx.is_main:
            lock = WorkDirLock(work_dir)
            try:
                lock.acquire()
                decision = ("ok", resume_checkpoint(work_dir, resume))
            except (ValueError, OSError) as error:
                refusal, decision = error, ("refused", str(error))
        decision = broadcast_object(decision, ctx)
        if decision[0] == "refused":
            raise refusal if refusal is not None else WorkDirError(decision[1])
        resume_path = decision[1]
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
            if ctx.is_main:
                ckpt.remove_stale_temporaries(work_dir)
                (work_dir / CONFIG_FILE).write_text(trainer.cfg.to_yaml(), encoding="utf-8")
            barrier(ctx)
            with _run_logging(work_dir, ctx.is_main):
                trainer.metrics = MetricsWriter(
                    work_dir, enabled=ctx.is_main, tensorboard=trainer.cfg.train.tensorboard
                )
                try:
                    if resume_path is not None:
                        if ctx.is_main:
                            logger.info(
                                "resumed from %s: epoch %d, step %d (%d batches into the epoch)",
                                resume_path,
                                trainer.epoch,
                                trainer.step,
                                trainer.batch_in_epoch,
                            )
                        trainer.metrics.truncate_after(trainer.step)
                    else:
                        if resume == "auto" and ctx.is_main:
                            logger.info("no checkpoint to resume from in %s: starting", work_dir)
                        trainer.metrics.truncate_after(-1)
                    result = trainer.fit()
                finally:
                    trainer.metrics.close()
                if ctx.is_main:
                    plot_curves(
                        read_metrics(work_dir), work_dir / CURVES_FILE, title=trainer.cfg.name
                    )
        return result
    finally:
        if lock is not None:
            lock.release(remove_dir=not started)
        torch.use_deterministic_algorithms(previous_deterministic)
        cleanup(ctx)


@contextlib.contextmanager
def _tqdm_logging(enabled: bool):
    """Route console log lines through tqdm so that they do not break the progress bars."""
    if not enabled:
        yield
        return
    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm():
        yield
