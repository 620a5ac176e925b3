"""A process of a ``torchrun`` group that stops while the others wait for it.

The processes left see the collective they were in fail with a ``RuntimeError`` of gloo or
NCCL (``Connection reset by peer`` and the like), whose traceback names no process.
:func:`lost_process_error` turns it into a :class:`LostProcessError`, one line that names the
process that stopped (when it ran on this machine, where its pid can be checked), where its
output went, and the run's log; :func:`gather_processes` tells every process at the start
where the others run.
"""

from __future__ import annotations

import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import torch.distributed as torch_dist

from tcm.engine.distributed import DistContext, all_gather_objects
from tcm.errors import TcmError
from tcm.utils.processes import has_ended, pid_namespace

ENDED_WAIT_S = 2.0
"""How long to wait for a stopped process to show as ended after its connections closed."""

_TRANSPORT_WORDS = ("gloo", "nccl")  # in every message of their transports


class LostProcessError(TcmError):
    """Another process of the run stopped; this one cannot go on."""


@dataclass(frozen=True)
class ProcessInfo:
    """Where a process of the group runs, gathered by every process at the start."""

    rank: int
    host: str
    pid: int
    pid_namespace: str
    log_dir: str
    """torchrun's folder for this process (``stderr.log`` there with ``--redirects`` or
    ``--tee``), ``""`` outside torchrun."""

    @classmethod
    def of_this_process(cls, rank: int) -> ProcessInfo:
        error_file = os.environ.get("TORCHELASTIC_ERROR_FILE", "")
        return cls(
            rank=rank,
            host=socket.gethostname(),
            pid=os.getpid(),
            pid_namespace=pid_namespace(),
            log_dir=os.path.dirname(error_file) if error_file else "",
        )

    def has_ended(self) -> bool | None:
        """Whether the process has ended; ``None`` when it cannot be told from here."""
        same_machine = self.host == socket.gethostname() and self.pid_namespace == pid_namespace()
        if not same_machine or not self.pid_namespace:
            return None
        return has_ended(self.pid)

    def log_file(self) -> Path | None:
        """The file torchrun writes this process's error output into, if there is one."""
        path = Path(self.log_dir) / "stderr.log" if self.log_dir else None
        return path if path is not None and path.is_file() else None


def _transport_failure(error: BaseException) -> bool:
    text = str(error).lower()
    return isinstance(error, torch_dist.DistError) or any(w in text for w in _TRANSPORT_WORDS)


def _reason(error: BaseException) -> str:
    """The failure in a few words: gloo's message without its source location and advice."""
    text = " ".join(str(error).split())
    text = re.sub(r"^\[[^\]]*\]\s*", "", text)  # [.../gloo/transport/tcp/pair.cc:537]
    return text.split(". ")[0][:160]


def find_ended(processes: list[ProcessInfo], rank: int, wait_s: float) -> ProcessInfo | None:
    """The first other process seen to have ended within ``wait_s`` seconds, else ``None``."""
    others = [p for p in processes if p.rank != rank]
    deadline = time.monotonic() + wait_s
    while True:
        for process in others:
            if process.has_ended():
                return process
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.02)


def lost_process_message(
    error: BaseException,
    processes: list[ProcessInfo] | None,
    ctx: DistContext,
    run_log: Path,
) -> str | None:
    """The line for ``error`` when it comes from another process that stopped, else ``None``
    (``error`` is something else)."""
    transport = _transport_failure(error)
    ended = find_ended(processes or [], ctx.rank, ENDED_WAIT_S if transport else 0.0)
    if ended is None and not transport:
        return None
    logs = f" and the run's log {run_log}" if run_log.is_file() else ""
    restarts_left = int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0")) - int(
        os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    )
    then = (
        "torchrun starts the run again from its last checkpoint (--max-restarts)"
        if restarts_left > 0
        else "continue it with --resume auto"
    )
    if ended is None:
        return (
            f"another process of this {ctx.world_size}-process run stopped or cannot be "
            f"reached ({_reason(error)}), so rank {ctx.rank} cannot go on: see torchrun's "
            f"output for the process that failed{logs}; {then}"
        )
    own_log = ended.log_file()
    where = (
        f"rank {ended.rank}'s log {own_log}"
        if own_log is not None
        else f"rank {ended.rank}'s lines in torchrun's output (a file with --log-dir and --tee)"
    )
    return (
        f"rank {ended.rank} of {ctx.world_size} (pid {ended.pid}) stopped, so rank {ctx.rank} "
        f"cannot go on: see {where}{logs}; {then}"
    )


def gather_processes(ctx: DistContext) -> list[ProcessInfo] | None:
    """Every process's :class:`ProcessInfo`, in rank order (``None`` for a single process);
    every process takes part."""
    if not ctx.distributed:
        return None
    return all_gather_objects(ProcessInfo.of_this_process(ctx.rank), ctx)


def lost_process_error(
    error: BaseException,
    processes: list[ProcessInfo] | None,
    ctx: DistContext,
    run_log: Path,
) -> LostProcessError | None:
    """The :class:`LostProcessError` for ``error``, raised in this process of a group, when
    another process stopped; ``None`` when ``error`` is something else (a bug keeps its
    traceback).

    Example:
        >>> try:                                                  # doctest: +SKIP
        ...     train_the_epochs()
        ... except RuntimeError as error:
        ...     lost = lost_process_error(error, processes, ctx, work_dir / "train.log")
        ...     raise (lost or error) from None
    """
    # Only torch's own errors: a RuntimeError subclass of the project is no lost process.
    if not ctx.distributed or not (
        type(error) is RuntimeError or isinstance(error, torch_dist.DistError)
    ):
        return None
    message = lost_process_message(error, processes, ctx, run_log)
    return LostProcessError(message) if message is not None else None
