"""The README's two-machine command, run as two "machines" on loopback (one process each, gloo,
c10d rendezvous): it trains to the weights of one process with the same global batch, and when
one machine is lost mid-run, the rank left names it and the run, started again on both machines,
continues from ``last.pt`` to the same weights."""

from __future__ import annotations

import contextlib
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
from tiny_set import tiny_config

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
EPOCHS = 8
STEPS = 3 * EPOCHS  # epochs of 3 steps, a global batch of 2 x 2 clips
# Batch-independent BatchNorm and no dropout: a process's share of the global batch gives the
# gradients the whole batch gives in one process.
COMMON = {
    "model.freeze_bn": "all",
    "model.dropout": 0.0,
    "schedule.epochs": EPOCHS,
    "train.checkpoint_interval": 1,
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _machine(node: int, port: int, config: Path, work: Path) -> list[str]:
    """The README's command for machine ``node`` of 2, one process per machine."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2"]
    command += ["--node_rank", str(node), "--nproc_per_node", "1", "--rdzv_backend", "c10d"]
    command += ["--rdzv_endpoint", f"127.0.0.1:{port}", "--rdzv_id", "tcm_two_machines"]
    command += ["--max-restarts", "3", "--monitor-interval", "1"]
    command += ["-m", "tcm.cli.main", "train", str(config), "--work-dir", str(work)]
    return [*command, "--no-progress", "--resume", "auto"]


def _start(command: list[str], log: Path) -> subprocess.Popen:
    """A "machine": torchrun and its worker in a process group of their own."""
    with open(log, "a") as out:
        return subprocess.Popen(
            command, env=ENV, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _finish(machines: list[subprocess.Popen], logs: list[Path], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    try:
        for machine, log in zip(machines, logs, strict=True):
            machine.wait(timeout=max(1.0, deadline - time.monotonic()))
            assert machine.returncode == 0, log.read_text()[-3000:]
    finally:
        for machine in machines:
            if machine.poll() is None:
                os.killpg(machine.pid, signal.SIGKILL)
                machine.wait()


def _lose(machine: subprocess.Popen) -> None:
    """Machine lost: SIGKILL to its torchrun agent and to every process under it (the agent
    starts its workers in sessions of their own)."""
    pids, look = [machine.pid], [machine.pid]
    while look:
        found = subprocess.run(["pgrep", "-P", str(look.pop())], capture_output=True, text=True)
        children = [int(pid) for pid in found.stdout.split()]
        pids += children
        look += children
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    machine.wait()


def _assert_weights_of(work: Path, expected: dict) -> None:
    final = load_checkpoint(work / "last.pt")
    assert final["world_size"] == 2 and final["step"] == STEPS
    for key, value in expected.items():
        torch.testing.assert_close(final["state_dict"][key], value, rtol=1e-4, atol=1e-5, msg=key)


@pytest.fixture(scope="module")
def setting(tiny_set, tmp_path_factory) -> tuple[Path, dict]:
    """The two machines' config file, and the weights one process trains with their global
    batch."""
    folder = tmp_path_factory.mktemp("two_machines")
    single = train(
        tiny_config(tiny_set, **COMMON, **{"data.batch_size": 4}), folder / "one", progress=False
    )
    config = folder / "two.yaml"
    config.write_text(tiny_config(tiny_set, **COMMON, **{"data.batch_size": 2}).to_yaml())
    return config, load_checkpoint(single.checkpoint)["state_dict"]


def test_two_machines_train_as_one_process(setting, tmp_path):
    config, expected = setting
    port, work = _free_port(), tmp_path / "run"
    logs = [tmp_path / f"machine{node}.log" for node in (0, 1)]
    machines = [_start(_machine(node, port, config, work), logs[node]) for node in (0, 1)]
    _finish(machines, logs)
    _assert_weights_of(work, expected)


def test_a_lost_machine_is_named_and_the_relaunched_run_continues(setting, tmp_path):
    config, expected = setting
    port, work = _free_port(), tmp_path / "run"
    logs = [tmp_path / f"machine{node}.log" for node in (0, 1)]
    machines = [_start(_machine(node, port, config, work), logs[node]) for node in (0, 1)]
    try:
        deadline = time.monotonic() + 240
        while not any(row.get("step", 0) >= 2 for row in read_metrics(work)):
            assert all(m.poll() is None for m in machines), logs[0].read_text()[-3000:]
            assert time.monotonic() < deadline, "no step 2 within 240 s"
            time.sleep(0.02)
        _lose(machines[1])
        assert load_checkpoint(work / "last.pt")["step"] < STEPS, "the run ended before the loss"
        # The rank left on machine 0 names the one lost, in one line; its torchrun restarts it
        # and waits for a second machine to join.
        while "tcm train: error: rank 1 of 2" not in logs[0].read_text():
            assert time.monotonic() < deadline, logs[0].read_text()[-3000:]
            time.sleep(0.1)
        assert machines[0].poll() is None, logs[0].read_text()[-3000:]
        # Both machines started again with the same command continue from last.pt.
        _lose(machines[0])
        machines = [_start(_machine(node, port, config, work), logs[node]) for node in (0, 1)]
        _finish(machines, logs)
    finally:
        for machine in machines:
            if machine.poll() is None:
                _lose(machine)
    assert "resumed from" in (work / "train.log").read_text()
    _assert_weights_of(work, expected)
