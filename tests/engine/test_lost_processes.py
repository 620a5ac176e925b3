"""The line a process prints when another process of its torchrun group stopped."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from tcm.engine.distributed import DistContext
from tcm.engine.lost_processes import ProcessInfo, lost_process_message
from tcm.utils.processes import pid_namespace

GLOO_RESET = RuntimeError(
    "[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error "
    "[127.0.0.1]:38277: Connection reset by peer. This is typically caused by a remote worker "
    "hanging or bugs in the application."
)
RANK0 = DistContext(rank=0, world_size=2)


def _process(rank: int, pid: int, host: str | None = None, log_dir: str = "") -> ProcessInfo:
    return ProcessInfo(rank, host or socket.gethostname(), pid, pid_namespace(), log_dir)


@pytest.fixture
def ended_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(done.stdout)


def test_the_rank_that_ended_is_named_with_its_log(ended_pid, tmp_path, monkeypatch):
    monkeypatch.delenv("TORCHELASTIC_MAX_RESTARTS", raising=False)
    (tmp_path / "stderr.log").write_text("")
    run_log = tmp_path / "train.log"
    run_log.write_text("")
    processes = [_process(0, os.getpid()), _process(1, ended_pid, log_dir=str(tmp_path))]
    message = lost_process_message(GLOO_RESET, processes, RANK0, run_log)
    assert message == (
        f"rank 1 of 2 (pid {ended_pid}) stopped, so rank 0 cannot go on: see rank 1's log "
        f"{tmp_path / 'stderr.log'} and the run's log {run_log}; continue it with --resume auto"
    )
    monkeypatch.setenv("TORCHELASTIC_MAX_RESTARTS", "3")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    message = lost_process_message(GLOO_RESET, processes, RANK0, tmp_path / "none.log")
    assert message.endswith(
        "rank 0 cannot go on: see rank 1's log "
        f"{tmp_path / 'stderr.log'}; torchrun starts the run again from its last checkpoint "
        "(--max-restarts)"
    )


def test_a_rank_of_another_machine_is_not_guessed(ended_pid, tmp_path, monkeypatch):
    monkeypatch.setattr("tcm.engine.lost_processes.ENDED_WAIT_S", 0.05)
    processes = [_process(0, os.getpid()), _process(1, ended_pid, host="elsewhere")]
    message = lost_process_message(GLOO_RESET, processes, RANK0, tmp_path / "train.log")
    assert message.startswith(
        "another process of this 2-process run stopped or cannot be reached (Read error "
        "[127.0.0.1]:38277: Connection reset by peer), so rank 0 cannot go on"
    )


def test_other_errors_are_not_blamed_on_a_process(tmp_path):
    processes = [_process(0, os.getpid()), _process(1, os.getppid())]  # both running
    error = RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x3 and 5x2)")
    assert lost_process_message(error, processes, RANK0, tmp_path / "train.log") is None
