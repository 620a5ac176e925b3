"""Training checkpoints: which file ``--resume auto`` picks, temporaries, random states."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch
from torch import nn

from tcm.engine.config import ScheduleConfig
from tcm.engine.optim import LRSchedule
from tcm.engine.training_checkpoint import (
    BEST,
    LAST,
    capture_rng,
    find_resume_checkpoint,
    gathered_rng,
    load_training_checkpoint,
    rank_rng,
    remove_stale_temporaries,
    restore_rng,
    save,
)
from tcm.engine.training_state import LoopState, RunRecord, TrainingState


def checkpoint(*, training: bool) -> dict:
    """A small checkpoint, with a training state or (``training=False``) for inference only."""
    model = nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    state = TrainingState(
        RunRecord("linear", 3, 1, {}, None, {}, {}),
        model,
        optimizer,
        LRSchedule(optimizer, ScheduleConfig(), steps_per_epoch=10),
        torch.amp.GradScaler("cpu", enabled=False),
        global_batch=8,
        loop=LoopState(epoch=1, step=5),
    )
    if training:
        return state.to_checkpoint(rng=capture_rng())
    return state.to_checkpoint(full=False)


def write(path, *, training: bool = True, age: int = 0):
    """Save a checkpoint at ``path``, modified ``age`` seconds before a fixed time."""
    save(checkpoint(training=training), path)
    stamp = 1_700_000_000 - age
    os.utime(path, (stamp, stamp))
    return path


def test_last_is_taken_whenever_it_is_there(tmp_path):
    write(tmp_path / LAST, age=100)
    write(tmp_path / "epoch_9.pt", age=0)  # newer, but last.pt comes first
    assert find_resume_checkpoint(tmp_path) == tmp_path / LAST


def test_without_last_the_newest_training_checkpoint(tmp_path):
    write(tmp_path / "epoch_1.pt", age=300)
    expected = write(tmp_path / "epoch_2.pt", age=200)
    write(tmp_path / "exported.pt", training=False, age=100)  # no training state
    write(tmp_path / BEST, age=50)  # never resumed from
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")  # newest, unreadable
    (tmp_path / f".{LAST}.0a1b2c3d.tmp").write_bytes(b"half written")
    assert find_resume_checkpoint(tmp_path) == expected


@pytest.mark.parametrize("present", [[], [BEST], ["exported.pt"], ["notes.txt"]])
def test_nothing_to_resume_from(tmp_path, present):
    for name in present:
        if name.endswith(".pt"):
            write(tmp_path / name, training=name == BEST)
        else:
            (tmp_path / name).write_text("x")
    assert find_resume_checkpoint(tmp_path) is None


def test_a_missing_folder_has_nothing_to_resume(tmp_path):
    assert find_resume_checkpoint(tmp_path / "absent") is None


def test_stale_temporaries_are_removed_and_nothing_else(tmp_path):
    keep = [write(tmp_path / LAST), tmp_path / "notes.tmp", tmp_path / "a.pt.tmp"]
    for path in keep[1:]:
        path.write_text("x")
    stale = [tmp_path / f".{LAST}.0a1b2c3d.tmp", tmp_path / f".{BEST}.ffffffff.tmp"]
    for path in stale:
        path.write_bytes(b"half written")
    remove_stale_temporaries(tmp_path)
    assert sorted(tmp_path.iterdir()) == sorted(keep)


def draw() -> tuple[list[float], list[float], list[float], list[float], list[float]]:
    """Numbers from every generator a training step uses, Gaussian ones included."""
    return (
        torch.rand(5).tolist(),
        np.random.rand(5).tolist(),
        np.random.standard_normal(3).tolist(),
        [random.random() for _ in range(5)],
        [random.gauss(0, 1) for _ in range(3)],
    )


@pytest.mark.parametrize("cached_gaussian", [False, True])
def test_restoring_random_states_repeats_the_numbers(cached_gaussian):
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    if cached_gaussian:  # a Gaussian half-pair waits in the numpy and Python generators
        np.random.standard_normal(1)
        random.gauss(0, 1)
    state = capture_rng()
    first = draw()
    assert draw() != first
    restore_rng(state)
    assert draw() == first


def test_random_states_survive_a_checkpoint_file(tmp_path):
    np.random.standard_normal(1)
    random.gauss(0, 1)
    state = capture_rng()
    first = draw()
    torch.save({"rng": state}, tmp_path / "rng.pt")
    loaded = torch.load(tmp_path / "rng.pt", weights_only=True)["rng"]
    assert set(loaded) == set(state)
    assert all(isinstance(value, torch.Tensor) for value in loaded.values())
    draw()
    restore_rng(loaded)
    assert draw() == first


def test_random_states_in_a_saved_training_checkpoint(tmp_path):
    path = write(tmp_path / LAST)
    loaded = load_training_checkpoint(path)
    restore_rng(loaded["rng"])
    first = draw()
    restore_rng(loaded["rng"])
    assert draw() == first
    with pytest.raises(ValueError, match="no training state"):
        load_training_checkpoint(write(tmp_path / "exported.pt", training=False))


def test_every_process_gets_its_own_random_states_back(tmp_path):
    # Three processes' states gathered into one checkpoint: rows of a stacked tensor are views
    # at an offset, which torch.set_rng_state misreads (or crashes on) unless copied.
    states, numbers = [], []
    for rank in range(3):
        torch.manual_seed(10 + rank)
        np.random.seed(20 + rank)
        random.seed(30 + rank)
        states.append(capture_rng())
        numbers.append(draw())
    torch.save({"rng": gathered_rng(states)}, tmp_path / "rng.pt")
    rng = torch.load(tmp_path / "rng.pt", weights_only=True)["rng"]
    for rank in (2, 0, 1):
        restore_rng(rank_rng(rng, rank))
        assert draw() == numbers[rank], rank
    # A checkpoint of an older version holds only torch's state per process.
    older = {k: v for k, v in rng.items() if k != "ranks"}
    restore_rng(rank_rng(older, 1))
    assert torch.rand(5).tolist() == numbers[1][0]
    with pytest.raises(ValueError, match="process 3"):
        rank_rng(rng, 3)
    with pytest.raises(ValueError, match="bytes"):
        restore_rng({**rng, "torch": rng["torch"][:100]})
