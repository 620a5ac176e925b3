"""The run-folder lock ends with its holder: forked loader workers do not keep it, a lock kept
by an heir of a holder that ended is taken over, and a killed run resumes at once."""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tcm.checkpoint import load_checkpoint
from tcm.engine import read_metrics, train
from tcm.engine.workdir import LOCK_FILE, WorkDirLock
from tcm.errors import WorkDirError
from tcm.utils.processes import has_ended, pid_namespace
from tiny_set import tiny_config

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src")}
VOLATILE = {"time", "clips_per_s"}  # wall-clock fields of metrics rows

# Takes the lock, forks a child that outlives it (as a DataLoader worker does), says both pids.
HOLDER_WITH_CHILD = """
import os, sys, time
from tcm.engine.workdir import WorkDirLock
WorkDirLock(sys.argv[1]).acquire()
child = os.fork()
if child == 0:
    time.sleep(60)
    os._exit(0)
print(os.getpid(), child, flush=True)
time.sleep(60)
"""


def _stable(rows):
    return [{k: v for k, v in row.items() if k not in VOLATILE} for row in rows]


def _children(pid: int) -> list[int]:
    listing = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in listing.split()]


def _ended_pid() -> int:
    """The pid of a process that has ended (and was reaped)."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(done.stdout)


def test_a_forked_child_does_not_keep_the_lock_of_a_killed_holder(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER_WITH_CHILD, str(run)],
        env=ENV,
        stdout=subprocess.PIPE,
        text=True,
    )
    parent, child = (int(p) for p in holder.stdout.readline().split())
    try:
        with pytest.raises(WorkDirError, match=f"in use by another run \\(pid {parent}\\)"):
            WorkDirLock(run).acquire()
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        assert not has_ended(child)
        with WorkDirLock(run):  # at once, while the child lives on
            assert not has_ended(child)
    finally:
        os.kill(child, signal.SIGKILL)
        holder.stdout.close()


def test_a_lock_kept_by_an_heir_of_an_ended_holder_is_taken_over(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    dead = _ended_pid()
    # This descriptor plays a process that inherited the lock of the ended holder.
    heir = os.open(run / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(heir, fcntl.LOCK_EX)
        for holder, shown in (
            (f"{dead} elsewhere {pid_namespace()}", f"pid {dead} on elsewhere"),  # not checkable
            (f"{dead} {socket.gethostname()} pid:[1]", f"pid {dead})"),  # another pid namespace
            (f"{os.getppid()} {socket.gethostname()} {pid_namespace()}", f"{os.getppid()})"),
        ):
            os.ftruncate(heir, 0)
            os.pwrite(heir, f"{holder}\n".encode(), 0)
            with pytest.raises(WorkDirError, match=shown.replace("(", r"\(").replace(")", r"\)")):
                WorkDirLock(run).acquire()
        os.ftruncate(heir, 0)
        os.pwrite(heir, f"{dead} {socket.gethostname()} {pid_namespace()}\n".encode(), 0)
        with WorkDirLock(run) as lock:
            assert (run / LOCK_FILE).read_text().split()[0] == str(os.getpid())
            with pytest.raises(WorkDirError, match=f"pid {os.getpid()}"):
                WorkDirLock(run).acquire()
        assert not lock.path.exists()
    finally:
        os.close(heir)


@pytest.mark.slow
def test_a_killed_run_with_loader_workers_resumes_at_once(tiny_set, tmp_path):
    # The workers of a killed run live on for seconds (until they notice their parent is
    # gone); a resume started at once must not be refused because of them.
    settings = {"schedule.epochs": 2, "train.checkpoint_interval": 1, "data.num_workers": 2}
    cfg = tiny_config(tiny_set, **settings, **{"train.eval_interval": 2, "eval.num_workers": 0})
    reference = train(cfg, tmp_path / "reference", progress=False)
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(cfg.to_yaml())
    work = tmp_path / "killed"
    command = [sys.executable, "-m", "tcm.cli.main", "train", str(config_file)]
    command += ["--work-dir", str(work), "--no-progress"]
    process = subprocess.Popen(command, env=ENV, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not any(row.get("step", 0) >= 4 for row in read_metrics(work)):
            assert process.poll() is None, "the run ended before step 4"
            assert time.monotonic() < deadline, "no step 4 within 120 s"
            time.sleep(0.02)
        workers = _children(process.pid)
        process.send_signal(signal.SIGKILL)  # the main process only, as the OOM killer does
    finally:
        process.wait()
    assert len(workers) == 2
    killed_at = load_checkpoint(work / "last.pt")["step"]
    assert killed_at < reference.steps, "the run finished before it was killed"
    assert not all(has_ended(pid) for pid in workers), "the workers ended before the resume"

    done = subprocess.run([*command, "--resume", "auto"], env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"resumed from {work / 'last.pt'}: epoch" in done.stderr
    final = load_checkpoint(work / "last.pt")
    assert final["step"] == reference.steps == 6
    expected = load_checkpoint(reference.checkpoint)["state_dict"]
    assert final["state_dict"].keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(final["state_dict"][key], value), key
    assert _stable(read_metrics(work)) == _stable(read_metrics(reference.work_dir))
