"""A 2-process torchrun run (gloo, CPU) stopped and started again: SIGTERM or SIGKILL of the
whole group and a relaunch with ``--resume auto``, one rank killed and restarted by torchrun
(``--max-restarts``), and a finished run resumed, all end as the uninterrupted run did, bit for
bit; the rank left behind names the one that died in one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tcm.checkpoint import load_checkpoint
from tcm.engine import read_metrics
from tcm.utils.processes import has_ended
from tiny_set import tiny_config

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
VOLATILE = {"time", "clips_per_s"}  # wall-clock fields of metrics rows
STEPS = 6  # 2 epochs of 3 steps, a global batch of 2 x 2 clips
STOP_AT = 4  # a step of epoch 2


def _stable(rows):
    return [{k: v for k, v in row.items() if k not in VOLATILE} for row in rows]


def _torchrun(config: Path, work: Path, *extra: str, launcher: tuple[str, ...] = ()) -> list[str]:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", "2", *launcher, "-m", "tcm.cli.main", "train", str(config)]
    return [*command, "--work-dir", str(work), "--no-progress", *extra]


def _start(command: list[str], log: Path) -> subprocess.Popen:
    """torchrun in a process group of its own (its workers in it too)."""
    with open(log, "w") as out:
        return subprocess.Popen(
            command, env=ENV, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _wait_for_step(process: subprocess.Popen, work: Path, step: int, log: Path) -> None:
    deadline = time.monotonic() + 240
    while not any(row.get("step", 0) >= step for row in read_metrics(work)):
        assert process.poll() is None, f"the run ended before step {step}: {log.read_text()}"
        assert time.monotonic() < deadline, f"no step {step} within 240 s"
        time.sleep(0.02)


def _rank_pid(torchrun_pid: int, rank: int) -> int:
    children = subprocess.run(
        ["pgrep", "-P", str(torchrun_pid)], capture_output=True, text=True
    ).stdout.split()
    for pid in children:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        if f"RANK={rank}".encode() in environ:
            return int(pid)
    raise AssertionError(f"no process of rank {rank} under torchrun {torchrun_pid}")


def _assert_same_run(work: Path, reference: Path) -> None:
    final, expected = load_checkpoint(work / "last.pt"), load_checkpoint(reference / "last.pt")
    assert final["step"] == expected["step"] == STEPS and final["world_size"] == 2
    assert final["state_dict"].keys() == expected["state_dict"].keys()
    for key, value in expected["state_dict"].items():
        assert torch.equal(final["state_dict"][key], value), key
    rows = _stable(read_metrics(work))
    assert rows == _stable(read_metrics(reference))
    assert [row["epoch"] for row in rows if row["kind"] == "epoch"] == [1, 2]


@pytest.fixture(scope="module")
def reference(tiny_set, tmp_path_factory) -> tuple[Path, Path]:
    """``(config file, work dir)`` of an uninterrupted 2-process run, last.pt at every step."""
    folder = tmp_path_factory.mktemp("two_processes")
    settings = {"data.batch_size": 2, "schedule.epochs": 2, "train.checkpoint_interval": 1}
    cfg = tiny_config(tiny_set, **settings, **{"train.eval_interval": 2})
    config = folder / "two.yaml"
    config.write_text(cfg.to_yaml())
    done = subprocess.run(
        _torchrun(config, folder / "run"), env=ENV, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return config, folder / "run"


def _resume(config: Path, work: Path) -> subprocess.CompletedProcess:
    resumed = subprocess.run(
        _torchrun(config, work, "--resume", "auto"),
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Traceback" not in resumed.stderr, resumed.stderr[-3000:]
    return resumed


def test_a_group_stopped_twice_resumes_at_once_to_the_same_result(reference, tmp_path):
    # SIGTERM in epoch 1, relaunch at once; SIGKILL of the whole group in epoch 2, relaunch.
    config, reference_run = reference
    work, log = tmp_path / "run", tmp_path / "torchrun.log"
    for stop, step, extra in (
        (signal.SIGTERM, 2, ()),
        (signal.SIGKILL, STOP_AT, ("--resume", "auto")),
    ):
        process = _start(_torchrun(config, work, *extra), log)
        try:
            _wait_for_step(process, work, step, log)
            os.killpg(process.pid, stop)
        finally:
            process.wait(timeout=60)
        assert process.returncode != 0
        assert load_checkpoint(work / "last.pt")["step"] < STEPS, "the run ended before the stop"
    assert "resumed from" in (work / "train.log").read_text()
    resumed = _resume(config, work)
    assert "resumed from" in resumed.stderr
    _assert_same_run(work, reference_run)
    # A finished run resumed again changes nothing.
    assert f"done: 2 epochs, {STEPS} steps" in _resume(config, work).stderr
    _assert_same_run(work, reference_run)


def test_a_killed_rank_is_named_and_torchrun_restarts_the_run(reference, tmp_path):
    config, reference_run = reference
    work, log = tmp_path / "run", tmp_path / "torchrun.log"
    # torchrun stops the ranks left at its next look at the workers (every 0.1 s by default):
    # give rank 0 the time to reach a collective and find rank 1 gone.
    launcher = ("--max-restarts", "1", "--monitor-interval", "2")
    process = _start(_torchrun(config, work, launcher=launcher), log)
    try:
        _wait_for_step(process, work, STOP_AT, log)
        rank1 = _rank_pid(process.pid, 1)
        os.kill(rank1, signal.SIGKILL)
        process.wait(timeout=300)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    output = log.read_text()
    assert process.returncode == 0, output[-3000:]
    # Rank 0, left alone in a collective, says which rank stopped, in one line.
    lost = [line for line in output.splitlines() if "tcm train: error:" in line]
    assert len(lost) == 1, output[-3000:]
    assert f"rank 1 of 2 (pid {rank1}) stopped, so rank 0 cannot go on" in lost[0]
    assert f"the run's log {work / 'train.log'}" in lost[0]
    assert "torchrun starts the run again from its last checkpoint" in lost[0]
    assert "Traceback" not in output and "gloo" not in output, output[-3000:]
    assert "resumed from" in (work / "train.log").read_text()
    _assert_same_run(work, reference_run)


def _descendants(pid: int) -> list[int]:
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    found = [int(child) for child in children.stdout.split()]
    return found + [grand for child in found for grand in _descendants(child)]


def test_ranks_and_their_workers_end_with_a_killed_launcher(reference, tmp_path):
    # torchrun starts its ranks in sessions of their own: a SIGKILL of the launcher's group
    # reaches torchrun alone. The ranks and their loader workers must end with it at once, and
    # a relaunch straight after continues the run to the uninterrupted result.
    config, reference_run = reference
    with_workers = tmp_path / "workers.yaml"
    with_workers.write_text(
        config.read_text().replace("num_workers: 0", "num_workers: 1", 1), encoding="utf-8"
    )
    assert "num_workers: 1" in with_workers.read_text()
    work, log = tmp_path / "run", tmp_path / "torchrun.log"
    process = _start(_torchrun(with_workers, work), log)
    ranks: list[int] = []
    workers: list[int] = []
    try:
        _wait_for_step(process, work, STOP_AT, log)
        ranks += [_rank_pid(process.pid, rank) for rank in (0, 1)]
        workers += [pid for rank in ranks for pid in _descendants(rank)]
        assert len(workers) >= 2, "every rank has a loader worker"
        assert all(os.getsid(pid) != os.getsid(process.pid) for pid in ranks)
        os.killpg(process.pid, signal.SIGKILL)
        killed = time.monotonic()
        process.wait(timeout=60)
        left = ranks + workers
        while left and time.monotonic() - killed < 10:
            left = [pid for pid in left if not has_ended(pid)]
            time.sleep(0.01)
        ended_after = time.monotonic() - killed
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        for pid in ranks + workers:  # left over by a failure: not into the next test
            if not has_ended(pid):
                os.kill(pid, signal.SIGKILL)
    assert not left, f"processes {left} outlived their launcher by 10 s"
    assert ended_after < 1.5, f"the ranks ended {ended_after:.2f} s after their launcher"
    assert load_checkpoint(work / "last.pt")["step"] < STEPS, "the run ended before the kill"
    _resume(with_workers, work)
    _assert_same_run(work, reference_run)
