"""A 2-process torchrun run killed mid-epoch and resumed with 1 and with 3 processes: the
resumed run takes the clips of the epoch the first did not, each once, and the epoch's row
counts every clip trained."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tcm.checkpoint import load_checkpoint
from tcm.engine import read_metrics
from tiny_set import tiny_config

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
CLIPS = 10  # the epoch: 5 steps of 2 x 1 clips for the first run


def _command(processes: int, config: Path, work: Path, *extra: str) -> list[str]:
    train = ["-m", "tcm.cli.main", "train", str(config), "--work-dir", str(work), "--no-progress"]
    if processes == 1:
        return [sys.executable, *train, *extra]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    return [*launcher, "--nproc_per_node", str(processes), *train, *extra]


def _killed_mid_epoch(config: Path, work: Path, log: Path) -> dict:
    with open(log, "w") as out:
        process = subprocess.Popen(
            _command(2, config, work),
            env=ENV,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 240
        while not any(row.get("step", 0) >= 2 for row in read_metrics(work)):
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "no step 2 within 240 s"
            time.sleep(0.02)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the ranks end with torchrun
        process.wait(timeout=60)
    time.sleep(0.5)
    return load_checkpoint(work / "last.pt")


def test_a_run_resumed_with_other_process_counts_trains_each_clip_of_the_epoch_once(
    tiny_set, tmp_path
):
    train_list = tmp_path / "train10.txt"
    lines = tiny_set.train_list.read_text().splitlines()
    train_list.write_text("\n".join(lines[:CLIPS]) + "\n")
    settings = {
        "data.train_list": str(train_list),
        "data.batch_size": 1,
        "schedule.epochs": 1,
        "train.checkpoint_interval": 1,
        "train.eval_interval": 0,
    }
    config = tmp_path / "run.yaml"
    config.write_text(tiny_config(tiny_set, **settings).to_yaml())
    first = _killed_mid_epoch(config, tmp_path / "first", tmp_path / "first.log")
    seen, steps = first["state"]["clips_in_epoch"], first["step"]
    assert first["epoch"] == 0 and 0 < seen < CLIPS and seen == 2 * first["batch_in_epoch"]

    for processes in (1, 3):
        work = tmp_path / f"resumed_{processes}"
        shutil.copytree(tmp_path / "first", work)
        done = subprocess.run(
            _command(processes, config, work, "--resume", "auto"),
            env=ENV,
            capture_output=True,
            text=True,
            timeout=400,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        epoch = CLIPS // processes * processes
        left_steps = (epoch - seen) // processes
        untrained = epoch - seen - left_steps * processes
        said = [line for line in done.stderr.splitlines() if "goes on after the" in line]
        assert len(said) == 1, done.stderr[-3000:]  # rank 0 alone says it
        if processes == 3:  # and warns once, not once per process
            assert done.stderr.count("random states are re-seeded") == 1, done.stderr[-3000:]
        assert (
            f"written by 2 processes of 1 clips a batch: epoch 1 goes on after the {seen} clips "
            f"they took, with {left_steps} steps of {processes} clips ({untrained} clips left"
        ) in said[0]
        final = load_checkpoint(work / "last.pt")
        assert final["epoch"] == 1 and final["step"] == steps + left_steps
        clips_trained = float(final["state"]["epoch_sums"][2])
        assert clips_trained == seen + left_steps * processes
        row = [r for r in read_metrics(work) if r["kind"] == "epoch"]
        assert len(row) == 1 and row[0]["step"] == steps + left_steps and row[0]["lr"] > 0
        assert 0 <= row[0]["train_top1"] <= 100
    # With one process every clip of the epoch is trained once.
    one = load_checkpoint(tmp_path / "resumed_1" / "last.pt")
    assert float(one["state"]["epoch_sums"][2]) == CLIPS
