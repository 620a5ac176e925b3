"""torchrun with 2 CPU processes (gloo) trains like one process with the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tcm.checkpoint import load_checkpoint
from tcm.engine import read_metrics, train
from tcm.engine.distributed import EpochSampler
from tiny_set import tiny_config

REPO = Path(__file__).resolve().parents[2]


def test_epoch_sampler_shares_global_batches():
    single = EpochSampler(10, seed=3)
    ranks = [EpochSampler(10, seed=3, rank=r, world_size=2) for r in range(2)]
    for sampler in (single, *ranks):
        sampler.set_epoch(4)
    order = list(single)
    for r, sampler in enumerate(ranks):
        assert list(sampler) == order[r::2]
    ranks[1].set_start(2)
    assert list(ranks[1]) == order[1::2][2:]


@pytest.mark.slow
def test_torchrun_two_cpu_processes_match_one_process(tiny_set, tmp_path):
    # BatchNorm statistics of a per-process batch differ from those of the global batch, and
    # SyncBatchNorm has no CPU kernel: compare with every BN frozen and without dropout.
    common = {"model.freeze_bn": "all", "model.dropout": 0.0, "schedule.epochs": 2}
    single = train(
        tiny_config(tiny_set, **common, **{"data.batch_size": 4}), tmp_path / "one", progress=False
    )

    cfg = tiny_config(tiny_set, **common, **{"data.batch_size": 2})
    config_file = tmp_path / "two.yaml"
    config_file.write_text(cfg.to_yaml())
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--standalone",
        "-m",
        "tcm.cli.main",
        "train",
        str(config_file),
        "--work-dir",
        str(tmp_path / "two"),
        "--no-progress",
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    two = load_checkpoint(tmp_path / "two" / "last.pt")
    assert two["world_size"] == 2 and two["step"] == single.steps == 6
    expected = load_checkpoint(single.checkpoint)["state_dict"]
    for key, value in expected.items():
        torch.testing.assert_close(two["state_dict"][key], value, rtol=1e-4, atol=1e-5, msg=key)
    rows_one = [r for r in read_metrics(single.work_dir) if r["kind"] == "epoch"]
    rows_two = [r for r in read_metrics(tmp_path / "two") if r["kind"] == "epoch"]
    assert len(rows_two) == 2
    for a, b in zip(rows_one, rows_two):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert b["val_top1"] == a["val_top1"] and b["lr"] == pytest.approx(a["lr"])
