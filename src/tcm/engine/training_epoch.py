"""One epoch of training: micro-batches, optimizer steps, step rows and the epoch's training
row. A part of :class:`~tcm.engine.trainer.Trainer`, which builds what it uses (model, loader,
optimizer, schedule, loss scaler) and keeps the loop's state in ``self.state.loop``.

An optimizer step is :meth:`EpochLoop._forward_backward` on each of ``optim.accumulate_steps``
micro-batches, then :meth:`EpochLoop._optimizer_step`. Clips arrive as ``(N, V*T, 3, H, W)``
(training has one view, ``V = 1``).
"""

from __future__ import annotations

import contextlib
import logging
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tcm.engine.distributed import all_gather_objects, all_reduce_sum
from tcm.engine.evaluation import autocast_context, to_layout
from tcm.engine.model_setup import set_train_mode
from tcm.engine.training_state import LoopState
from tcm.errors import NonFiniteLossError

logger = logging.getLogger(__name__)

SHOWN_SKIPPED = 5
"""Paths of skipped samples named in an epoch row and in the log."""


class EpochLoop:
    """The epoch methods of the trainer (see the module docstring)."""

    @property
    def loop(self) -> LoopState:
        """Where the loop stands (the training state's, replaced when a run resumes)."""
        return self.state.loop

    def _gather_skipped(self) -> list[str]:
        """The first skipped paths of every process (every process takes part)."""
        parts = all_gather_objects(self.loop.skipped_paths, self.ctx)
        return list(dict.fromkeys(p for part in parts for p in part))[:SHOWN_SKIPPED]

    def _non_finite(self, what: str, value: float) -> NonFiniteLossError:
        last = self.last_good or "none (no checkpoint was written yet)"
        return NonFiniteLossError(
            f"non-finite {what} ({value}) at step {self.loop.step + 1} (epoch {self.loop.epoch + 1}, "
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
            initial=self.loop.batch_in_epoch // self.cfg.optim.accumulate_steps,
            desc=f"epoch {self.loop.epoch + 1}/{self.cfg.schedule.epochs}",
            disable=not self.progress,
            dynamic_ncols=True,
            leave=False,
        )
        with loader_errors("training data"):
            iterator = iter(self.loader)
        try:
            for micro in range(self.loop.batch_in_epoch, total):
                with loader_errors("training data"):
                    batch = next(iterator)
                if not self._micro_batch(batch, micro):
                    continue
                bar.update(1)
                last = micro + 1 == total
                if self.loop.step % self.cfg.train.log_interval == 0 or last:
                    self._log_step(bar, (micro + 1) / total)
                interval = self.cfg.train.checkpoint_interval
                if interval and self.loop.step % interval == 0 and not last:
                    self.loop.epoch_sums.bank()
                    self.loop.window.bank()
                    self.save_last()
        finally:
            bar.close()
            del iterator
        self.loop.epoch_sums.bank()
        return self._epoch_training_row()

    def _place_in_epoch(self, checkpoint: dict[str, Any]) -> None:
        """Go on after the clips of the epoch the checkpoint's run took, counted in this run's
        micro-batches (another number of processes or batch size divides the epoch anew)."""
        loop, cfg, world = self.loop, self.cfg, self.ctx.world_size
        accumulate = cfg.optim.accumulate_steps
        total = self.steps_per_epoch * accumulate
        left = self.sampler.left_per_rank(loop.clips_in_epoch) // cfg.data.batch_size
        left = left // accumulate * accumulate  # micro-batches of this process
        same = loop.clips_in_epoch == loop.batch_in_epoch * cfg.data.batch_size * world
        loop.batch_in_epoch = total - left
        if self.ctx.is_main and not same:
            untaken = max(self.sampler.per_rank * world - loop.clips_in_epoch, 0)
            logger.info(
                "the checkpoint was written by %d processes of %d clips a batch: epoch %d goes "
                "on after the %d clips they took, with %d steps of %d clips (%d clips left "
                "over, less than a global batch, are dropped as at every epoch's end)",
                checkpoint.get("world_size", 1),
                checkpoint.get("config", {}).get("data", {}).get("batch_size", 0),
                loop.epoch + 1,
                loop.clips_in_epoch,
                left // accumulate,
                self.global_batch,
                untaken - left * cfg.data.batch_size * world,
            )

    def _start_epoch(self) -> int:
        """Position the data at ``batch_in_epoch`` and start the clocks; the epoch's
        micro-batches."""
        cfg = self.cfg
        set_train_mode(self.model, cfg.model.freeze_bn)
        self.train_set.set_epoch(self.loop.epoch)
        self.sampler.set_epoch(self.loop.epoch)
        if self.loop.batch_in_epoch == 0:
            self.loop.clips_in_epoch = 0
        self.sampler.skip_clips(self.loop.clips_in_epoch)
        if self.loop.batch_in_epoch == 0:
            self.loop.epoch_sums.reset()
            self.loop.window.reset()
            self.loop.skipped_count = 0
            self.loop.skipped_paths = []
        self.loop.epoch_sums.start_clock()
        self.loop.window.start_clock()
        self.grad_norm = float("nan")
        return self.steps_per_epoch * cfg.optim.accumulate_steps

    def _micro_batch(self, batch, micro: int) -> bool:
        """Forward and backward one micro-batch; then, after the last of an optimizer step,
        the step. Whether a step was taken."""
        for entry in batch.skipped:
            if (
                len(self.loop.skipped_paths) < SHOWN_SKIPPED
                and entry.path not in self.loop.skipped_paths
            ):
                self.loop.skipped_paths.append(entry.path)
        last_micro = (micro + 1) % self.cfg.optim.accumulate_steps == 0
        stats = self._forward_backward(batch, sync=last_micro)
        self.loop.epoch_sums.add(*stats[:3])
        self.loop.window.add(*stats[:3])
        self.loop.skipped_count += int(stats[3])
        self.loop.batch_in_epoch = micro + 1
        self.loop.clips_in_epoch += self.cfg.data.batch_size * self.ctx.world_size
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
                logits = self.train_model(to_layout(x, cfg.model.channels_last))
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
        self.loop.step += 1
        self.schedule.set_step(self.loop.step)

    def _log_step(self, bar, epoch_fraction: float) -> None:
        """Write the window's step row; the window starts again."""
        window = self.loop.window
        row = {
            "kind": "step",
            "epoch": self.loop.epoch + epoch_fraction,
            "step": self.loop.step,
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
        sums = self.loop.epoch_sums
        row = {
            "train_loss": sums.mean_loss,
            "train_top1": sums.top1,
            # the learning rate of the epoch's last step
            "lr": self.optimizer.param_groups[0]["base_lr"]
            * self.schedule.factor(self.loop.step - 1),
            "train_time": sums.seconds,
            "clips_per_s": sums.clips / max(sums.seconds, 1e-9),
            "train_skipped": self.loop.skipped_count,
        }
        paths = self._gather_skipped()
        if self.loop.skipped_count:
            row["train_skipped_paths"] = paths
            if self.ctx.is_main:
                logger.warning(
                    "epoch %d: %d training samples could not be read and were replaced "
                    "(data.bad_sample_policy=skip): %s%s",
                    self.loop.epoch + 1,
                    self.loop.skipped_count,
                    ", ".join(paths),
                    ", ..." if self.loop.skipped_count > len(paths) else "",
                )
        return row
