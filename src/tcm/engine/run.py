"""The entry point of training, :func:`train`: a config becomes a run in its work dir.

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

The work dir is claimed first (locked by the main process, the decision to start or resume
shared with every process), then the trainer is built and resumed, and only then the run's
files are written.

Distributed: started by ``torchrun`` (see :mod:`tcm.engine.distributed`), every process
trains on its share of each global batch (DDP averages the gradients); only rank 0 logs and
writes files. A process that stops ends the others with one line naming it
(:mod:`tcm.engine.lost_processes`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

import torch

from tcm.engine import training_checkpoint as ckpt
from tcm.engine.config import RunConfig
from tcm.engine.config_checks import check_values
from tcm.engine.distributed import (
    DistContext,
    barrier,
    broadcast_object,
    cleanup,
    init_distributed,
)
from tcm.engine.lost_processes import gather_processes, lost_process_error
from tcm.engine.run_transfer import is_elsewhere, take_over_run
from tcm.engine.trainer import Trainer, TrainResult
from tcm.engine.workdir import WorkDirLock, resume_checkpoint
from tcm.errors import WorkDirError

CONFIG_FILE = "config.yaml"
LOG_FILE = "train.log"


def default_work_dir(cfg: RunConfig) -> Path:
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
    config: RunConfig,
    work_dir: str | os.PathLike | None = None,
    *,
    resume: str | os.PathLike | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train a model as ``config`` says; write the run into ``work_dir``.

    Args:
        config: the configuration (:func:`~tcm.engine.config_files.load_config`, or built in Python).
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
        >>> cfg = RunConfig(model=ModelConfig(name="tsm_resnet10", num_segments=8),
        ...                   data=DataConfig(root="videos", train_list="train.txt",
        ...                                   val_list="val.txt", classes="classes.txt"))
        >>> result = train(cfg, "runs/tsm10")                      # doctest: +SKIP
        >>> result.final["val_top1"], result.checkpoint            # doctest: +SKIP
    """
    work_dir = Path(work_dir) if work_dir is not None else default_work_dir(config)
    check_values(config)  # dist.timeout_min among them, before the process group is made
    ctx = init_distributed(config.train.device, config.dist.backend, config.dist.timeout_min)
    with _main_process_speaks(ctx):
        return _train(config, work_dir, ctx, resume, progress)


def _train(
    config: RunConfig,
    work_dir: Path,
    ctx: DistContext,
    resume: str | os.PathLike | None,
    progress: bool,
) -> TrainResult:
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
            ckpt.check_same_model(checkpoint, resume_path, config.model.name, trainer.num_classes)
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
                    take_over_run(
                        resume_path.parent, work_dir, trainer.loop.step, trainer.loop.best_row
                    )
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
def _main_process_speaks(ctx: DistContext):
    """Only rank 0 logs below ``ERROR`` (a resume warning once, not once per process)."""
    package_logger = logging.getLogger("tcm")
    previous = package_logger.level
    if not ctx.is_main:
        package_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        package_logger.setLevel(previous)


@contextlib.contextmanager
def _tqdm_logging(enabled: bool):
    """Route console log lines through tqdm so that they do not break the progress bars."""
    if not enabled:
        yield
        return
    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm():
        yield
