"""A run stopped while it writes the files of its first epoch's end (``last.pt``, the epoch's
row of ``metrics.jsonl``, ``best.pt``), by a kill or a full disk, resumes to the result of an
uninterrupted run."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import tcm.checkpoint
from tcm.checkpoint import load_checkpoint
from tcm.cli.main import main
from tcm.engine import read_metrics, train
from tiny_set import tiny_config

REPO = Path(__file__).resolve().parents[2]
VOLATILE = {"time", "clips_per_s"}  # wall-clock fields of metrics rows
SETTINGS = {"schedule.epochs": 2, "train.checkpoint_interval": 0}  # last.pt at epoch ends only

# `tcm train ...`, killed with SIGKILL right after it wrote the first last.pt (epoch 1).
KILLED_AFTER_LAST = """
import os, signal, sys
from pathlib import Path
from tcm.cli.main import main
from tcm.engine import training_checkpoint

save = training_checkpoint.save

def saving(checkpoint, path):
    save(checkpoint, path)
    if Path(path).name == "last.pt":
        os.kill(os.getpid(), signal.SIGKILL)

training_checkpoint.save = saving
sys.exit(main(sys.argv[1:]))
"""


def _stable(rows):
    return [{k: v for k, v in row.items() if k not in VOLATILE} for row in rows]


def _epoch_rows(work: Path) -> list[int]:
    return [row["epoch"] for row in read_metrics(work) if row.get("kind") == "epoch"]


@pytest.fixture(scope="module")
def reference(tiny_set, tmp_path_factory):
    """``(config file, work dir)`` of an uninterrupted two-epoch run."""
    folder = tmp_path_factory.mktemp("reference")
    cfg = tiny_config(tiny_set, **SETTINGS)
    (folder / "tiny.yaml").write_text(cfg.to_yaml())
    train(cfg, folder / "run", progress=False)
    return folder / "tiny.yaml", folder / "run"


def _assert_same_run(work: Path, reference: Path) -> None:
    for name in ("last.pt", "best.pt"):
        got, expected = load_checkpoint(work / name), load_checkpoint(reference / name)
        assert got["epoch"] == expected["epoch"], name
        assert _stable([got["metrics"]]) == _stable([expected["metrics"]]), name
        assert got["state_dict"].keys() == expected["state_dict"].keys()
        for key, value in expected["state_dict"].items():
            assert torch.equal(got["state_dict"][key], value), (name, key)
    assert _stable(read_metrics(work)) == _stable(read_metrics(reference))


def _train_args(config: Path, work: Path, *extra: str) -> list[str]:
    return ["train", str(config), "--work-dir", str(work), "--no-progress", *extra]


@pytest.mark.slow
def test_a_run_killed_after_its_first_last_checkpoint_resumes(reference, tmp_path):
    config, reference_run = reference
    work = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_AFTER_LAST, *_train_args(config, work)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    # last.pt comes first: the epoch's row and best.pt are not written yet.
    assert load_checkpoint(work / "last.pt")["epoch"] == 1
    assert _epoch_rows(work) == [] and not (work / "best.pt").exists()

    assert main(_train_args(config, work, "--resume", "auto")) == 0
    _assert_same_run(work, reference_run)


@pytest.mark.slow
@pytest.mark.parametrize("full", ["last.pt", "best.pt"])
def test_a_full_disk_at_the_first_epoch_end_loses_nothing(
    reference, tmp_path, capsys, monkeypatch, full
):
    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full")
    config, reference_run = reference
    create = tcm.checkpoint._create_temporary
    writes = []

    def on_a_disk_full_at_the_first(path):
        fd, tmp = create(path)
        writes.append(path.name)
        if path.name == full and writes.count(full) == 1:
            os.close(fd)
            return os.open("/dev/full", os.O_WRONLY), tmp
        return fd, tmp

    work = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(tcm.checkpoint, "_create_temporary", on_a_disk_full_at_the_first)
        assert main(_train_args(config, work)) == 2
    err = capsys.readouterr().err
    assert err.strip().endswith(f"{work / full}: {os.strerror(errno.ENOSPC)}"), err
    assert not list(work.glob(".*.tmp"))
    if full == "last.pt":  # nothing of the epoch's end was written: the run starts over
        assert not (work / "last.pt").exists() and not (work / "best.pt").exists()
        assert _epoch_rows(work) == []
    assert main(_train_args(config, work, "--resume", "auto")) == 0
    _assert_same_run(work, reference_run)
