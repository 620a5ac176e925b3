"""Processes started by ``torchrun``: process group, device, sharded sampling, reductions.

A single process (no ``WORLD_SIZE`` in the environment, or 1) runs without a process group;
every helper here then degrades to the single-process case, so the training loop has one code
path. ``torchrun`` sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and
``MASTER_PORT``; the backend is NCCL on GPUs and gloo on CPUs unless the config says otherwise.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as torch_dist
from torch.utils.data import Sampler

from tcm.utils.devices import pick_device

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: rank, world size, device; ``owns_group`` when this context
    created the process group (and must destroy it)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(
    device: str = "auto", backend: str = "auto", timeout_min: int = 30
) -> DistContext:
    """Join the process group ``torchrun`` describes (a no-op for a single process).

    Reuses a process group that is already initialised (the caller then owns it).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank=local_rank, setting="train.device")
    if world_size <= 1:
        return DistContext(device=dev)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if torch_dist.is_initialized():
        return DistContext(rank, world_size, local_rank, dev, owns_group=False)
    if backend == "auto":
        backend = "nccl" if dev.type == "cuda" else "gloo"
    if backend == "nccl" and dev.type != "cuda":
        raise ValueError("dist.backend 'nccl' needs CUDA devices; use gloo on CPUs")
    timeout = datetime.timedelta(minutes=timeout_min)
    store = _attempt_store(world_size, timeout)
    torch_dist.init_process_group(
        backend=backend,
        timeout=timeout,
        device_id=dev if dev.type == "cuda" else None,
        **({"store": store, "rank": rank, "world_size": world_size} if store else {}),
    )
    logger.debug("rank %d/%d joined the %s process group on %s", rank, world_size, backend, dev)
    return DistContext(rank, world_size, local_rank, dev, owns_group=True)


def _attempt_store(world_size: int, timeout: datetime.timedelta) -> torch_dist.Store | None:
    """The store of this attempt of a one-machine ``torchrun`` group, which keeps its agent's
    store across restarts (``--max-restarts``); else ``None`` (the default store).

    The agent's store keeps the keys of the attempts before: without a prefix of its own, a
    restarted process may read the address of a process of the failed attempt and fail to
    connect to it (or wait for it). The attempt's number is the same for every process only
    where one agent counts the restarts: on one machine.
    """
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT")
    one_agent = os.environ.get("GROUP_WORLD_SIZE") == "1"
    if attempt is None or not one_agent or os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    store = torch_dist.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        world_size,
        is_master=False,
        timeout=timeout,
    )
    return torch_dist.PrefixStore(f"tcm/attempt_{attempt}", store)


def cleanup(ctx: DistContext) -> None:
    """Destroy the process group if ``ctx`` created it."""
    if ctx.owns_group and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        torch_dist.barrier()


def all_reduce_sum(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum ``tensor`` over the processes (in place; returned for chaining)."""
    if ctx.distributed:
        torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.SUM)
    return tensor


def all_gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every process."""
    if not ctx.distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    torch_dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, ctx: DistContext) -> Any:
    """Rank 0's ``obj`` on every process."""
    if not ctx.distributed:
        return obj
    box = [obj]
    torch_dist.broadcast_object_list(box, src=0)
    return box[0]


class EpochSampler(Sampler[int]):
    """Dataset indices for one process, a function of ``(seed, epoch)`` only.

    The order is a permutation drawn from a generator seeded with ``seed + epoch`` (or
    ``0..n-1`` without shuffling), truncated to a multiple of ``world_size``; process ``rank``
    takes every ``world_size``-th index from ``rank``. A global batch of ``B * world_size``
    clips is therefore the same set of samples whatever the number of processes.
    :meth:`set_start` skips this process's first indices; :meth:`skip_clips` skips the
    epoch's first clips over every process, whatever the number of processes that took them
    (resuming mid-epoch): the rest of the order is dealt out among the processes as before.

    Example:
        >>> sampler = EpochSampler(10, shuffle=True, seed=0)
        >>> sampler.set_epoch(3); first = list(sampler)
        >>> sampler.set_start(4); list(sampler) == first[4:]
        True
        >>> sampler.skip_clips(4); list(sampler) == first[4:]
        True
    """

    def __init__(
        self, size: int, *, shuffle: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1
    ) -> None:
        if size < world_size:
            raise ValueError(f"{size} samples cannot be shared by {world_size} processes")
        self.size = size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start = 0
        self.skipped = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.start = 0
        self.skipped = 0

    def set_start(self, start: int) -> None:
        """Begin this epoch at this process's ``start``-th index."""
        self.start, self.skipped = int(start), 0

    def skip_clips(self, clips: int) -> None:
        """Begin this epoch after its first ``clips`` indices (of every process together):
        the rest, cut to a multiple of ``world_size``, is shared as a whole epoch is."""
        self.start, self.skipped = 0, int(clips)

    @property
    def per_rank(self) -> int:
        return self.size // self.world_size

    def left_per_rank(self, clips: int) -> int:
        """This process's indices of the epoch after its first ``clips``."""
        return max(self.per_rank * self.world_size - clips, 0) // self.world_size

    def __len__(self) -> int:
        if self.skipped:
            return self.left_per_rank(self.skipped)
        return max(self.per_rank - self.start, 0)

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.size, generator=generator)
        else:
            order = torch.arange(self.size)
        order = order[: self.per_rank * self.world_size]
        if self.skipped:
            left = self.left_per_rank(self.skipped) * self.world_size
            order = order[self.skipped : self.skipped + left]
        return iter(order[self.rank :: self.world_size][self.start :].tolist())


class ShardSampler(Sampler[int]):
    """Evaluation: indices ``rank, rank + world_size, ...`` in order, without padding, so the
    union over processes is every sample exactly once."""

    def __init__(self, size: int, rank: int = 0, world_size: int = 1) -> None:
        self.indices = list(range(rank, size, world_size))

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)
