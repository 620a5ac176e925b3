"""Room in ``/dev/shm`` for the batches loader workers hand over, checked before a run starts.

DataLoader workers pass each batch to their process through shared memory (files in
``/dev/shm``, whichever of torch's sharing strategies is set): up to ``prefetch_factor`` (2)
batches per worker wait there, and the batch being used is still there. A container's default
``/dev/shm`` (64 MB under Docker) holds less than two 224-pixel training batches of 8 clips x 8
frames (38.5 MB each in float32), and a worker that writes past its end dies of a bus error. The
check below names the shortfall and the ways out before anything starts.
"""

from __future__ import annotations

import logging
import os

from tcm.engine.config import RunConfig
from tcm.errors import ConfigError

logger = logging.getLogger(__name__)

SHARED_MEMORY = "/dev/shm"
PREFETCH_FACTOR = 2  # torch's DataLoader default: batches prepared ahead per worker
MB = 1e6


def batch_bytes(cfg: RunConfig, *, training: bool) -> int:
    """Bytes of one float32 batch: ``(N, V*T, 3, S, S)`` clips."""
    side = cfg.data.input_size
    if training:
        clips, views = cfg.data.batch_size, 1
    else:
        clips, views = cfg.eval.batch_size, cfg.eval.num_clips * cfg.eval.num_crops
    return clips * views * cfg.model.num_segments * 3 * side * side * 4


def _workers(cfg: RunConfig, training: bool) -> tuple[int, int]:
    """``(training loader workers, evaluation loader workers)`` of a run or of a test."""
    evaluation = cfg.eval.num_workers if cfg.eval.num_workers is not None else cfg.data.num_workers
    validates = bool(cfg.data.val_list) and cfg.train.eval_interval > 0
    if not training:
        return 0, evaluation
    return cfg.data.num_workers, evaluation if validates else 0


def loader_shared_memory(cfg: RunConfig, *, training: bool = True, processes: int = 1) -> int:
    """Bytes of ``/dev/shm`` the loaders of ``processes`` processes on one machine fill at most.

    Training keeps its workers between epochs, and validation's workers run beside them; a
    loader holds ``workers * PREFETCH_FACTOR`` batches ahead and the one in use.
    """
    train_workers, eval_workers = _workers(cfg, training)
    need = 0
    if train_workers:
        need += (train_workers * PREFETCH_FACTOR + 1) * batch_bytes(cfg, training=True)
    if eval_workers:
        need += (eval_workers * PREFETCH_FACTOR + 1) * batch_bytes(cfg, training=False)
    return need * processes


def shared_memory_size(folder: str = SHARED_MEMORY) -> int | None:
    """Bytes free in ``folder`` (``None`` where it does not exist)."""
    try:
        stat = os.statvfs(folder)
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize


def check_shared_memory(
    cfg: RunConfig, *, training: bool = True, available: int | None = None
) -> None:
    """Refuse to start loaders that would overflow ``/dev/shm``.

    Args:
        training: a training run (training and validation loaders) or a test.
        available: bytes free in ``/dev/shm``; by default measured.

    Raises:
        ConfigError: one line: what is needed, what is there and what to do.
    """
    processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    need = loader_shared_memory(cfg, training=training, processes=processes)
    available = shared_memory_size() if available is None else available
    if not need or available is None or need <= available:
        return
    train_workers, eval_workers = _workers(cfg, training)
    workers = train_workers + eval_workers
    fitting = _workers_that_fit(cfg, training, processes, available)
    who = f"{processes} processes x " if processes > 1 else ""
    raise ConfigError(
        f"{SHARED_MEMORY} has {available / MB:.0f} MB free but the data loaders need about "
        f"{need / MB:.0f} MB ({who}{workers} workers x {PREFETCH_FACTOR} prefetched batches of "
        f"up to {max(batch_bytes(cfg, training=True), batch_bytes(cfg, training=False)) / MB:.1f}"
        f" MB); give the container more (docker run --shm-size={_suggested_size(need)}), or "
        f"set data.num_workers={fitting} (and eval.num_workers), or a smaller batch"
    )


def _workers_that_fit(cfg: RunConfig, training: bool, processes: int, available: int) -> int:
    """The most workers per loader whose batches fit in ``available`` bytes (0: none)."""
    for workers in range(cfg.data.num_workers, 0, -1):
        trial = cfg.replace({"data.num_workers": workers, "eval.num_workers": workers})
        if loader_shared_memory(trial, training=training, processes=processes) <= available:
            return workers
    return 0


def _suggested_size(need: int) -> str:
    """``--shm-size`` covering ``need`` with room to spare, in whole gigabytes."""
    return f"{max(1, -(-int(need * 1.5) // 10**9))}g"
