"""The training state saves itself into a checkpoint and restores itself from one, with the
keys older checkpoints have, without any training."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tcm.checkpoint import atomic_save, load_checkpoint
from tcm.engine.config import ScheduleConfig
from tcm.engine.optim import LRSchedule
from tcm.engine.training_checkpoint import capture_rng, load_training_checkpoint
from tcm.engine.training_log import RunningSums
from tcm.engine.training_state import LoopState, RunRecord, TrainingState

RECORD = RunRecord(
    model_name="linear",
    num_classes=3,
    num_segments=2,
    model_kwargs={"dropout": 0.5},
    classes=["a", "b", "c"],
    preprocessing={"num_segments": 2, "input_size": 32},
    config={"name": "tiny"},
    world_size=1,
)


def make_state(seed: int, loop: LoopState | None = None) -> TrainingState:
    torch.manual_seed(seed)
    model = nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for group in optimizer.param_groups:
        group["base_lr"] = group["lr"]
    schedule = LRSchedule(optimizer, ScheduleConfig(epochs=4, milestones=[2]), steps_per_epoch=5)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    return TrainingState(RECORD, model, optimizer, schedule, scaler, 16, loop or LoopState())


def busy_loop() -> LoopState:
    return LoopState(
        epoch=2,
        step=11,
        batch_in_epoch=3,
        best_top1=62.5,
        best_row={"epoch": 1, "val_top1": 62.5},
        epoch_row={"epoch": 2, "val_top1": 50.0},
        epoch_sums=RunningSums(loss=4.0, correct=3.0, clips=8.0, seconds=1.5),
        window=RunningSums(loss=1.0, correct=1.0, clips=2.0, seconds=0.25),
        skipped_count=2,
        skipped_paths=["v/1.mp4", "v/7.mp4"],
    )


def sums(values: RunningSums) -> tuple[float, ...]:
    return values.loss, values.correct, values.clips, values.seconds


def test_the_loop_state_survives_the_checkpoint_entries():
    loop = busy_loop()
    again = LoopState.from_checkpoint(loop.to_checkpoint(global_batch=16))
    assert again == loop  # the running sums compare by their numbers, clocks aside
    assert sums(again.epoch_sums) == (4.0, 3.0, 8.0, 1.5)
    assert sums(again.window) == (1.0, 1.0, 2.0, 0.25)
    others = LoopState.from_checkpoint(loop.to_checkpoint(global_batch=16), keep_paths=False)
    assert others.skipped_paths == [] and others.skipped_count == 2


def test_the_checkpoint_keeps_the_keys_on_disk():
    checkpoint = make_state(0, busy_loop()).to_checkpoint(rng={"torch": torch.zeros(2)})
    assert (checkpoint["epoch"], checkpoint["step"], checkpoint["batch_in_epoch"]) == (2, 11, 3)
    assert set(checkpoint["state"]) == {
        "best_top1",
        "best_row",
        "epoch_row",
        "epoch_sums",
        "window",
        "skipped",
        "global_batch",
        "clips_in_epoch",
    }
    assert checkpoint["state"]["skipped"] == {"count": 2, "paths": ["v/1.mp4", "v/7.mp4"]}
    assert checkpoint["state"]["global_batch"] == 16
    assert checkpoint["state"]["epoch_sums"].dtype == torch.float64
    for key in ("optimizer", "scheduler", "scaler", "rng", "config", "world_size", "metrics"):
        assert key in checkpoint, key
    assert checkpoint["scaler"] is None  # no loss scaling without fp16
    assert checkpoint["model"] == {
        "name": "linear",
        "num_classes": 3,
        "num_segments": 2,
        "kwargs": {"dropout": 0.5},
    }
    assert checkpoint["classes"] == ["a", "b", "c"]
    assert checkpoint["data"] == {"num_segments": 2, "input_size": 32}


def test_a_best_checkpoint_holds_no_training_state():
    checkpoint = make_state(0, busy_loop()).to_checkpoint(full=False, metrics={"epoch": 2})
    for key in ("optimizer", "scheduler", "scaler", "rng", "state"):
        assert key not in checkpoint, key
    assert checkpoint["metrics"] == {"epoch": 2}
    assert checkpoint["epoch"] == 2


def test_a_saved_state_restores_into_a_fresh_one(tmp_path):
    saved = make_state(0, busy_loop())
    saved.optimizer.zero_grad()
    saved.model(torch.ones(2, 4)).sum().backward()
    saved.optimizer.step()  # momentum buffers to carry over
    saved.schedule.set_step(11)
    path = atomic_save(saved.to_checkpoint(rng=capture_rng()), tmp_path / "last.pt")

    fresh = make_state(1)
    assert not torch.equal(fresh.model.weight, saved.model.weight)
    fresh.restore(load_training_checkpoint(path))
    for key, value in saved.model.state_dict().items():
        assert torch.equal(fresh.model.state_dict()[key], value), key
    momentum = fresh.optimizer.state_dict()["state"][0]["momentum_buffer"]
    assert torch.equal(momentum, saved.optimizer.state_dict()["state"][0]["momentum_buffer"])
    assert fresh.schedule.step_count == 11
    assert fresh.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.1)  # past milestone 2
    assert fresh.loop == saved.loop
    assert fresh.to_checkpoint(full=False).keys() == saved.to_checkpoint(full=False).keys()


def test_a_checkpoint_of_an_older_version_restores_with_defaults(tmp_path):
    checkpoint = make_state(0, busy_loop()).to_checkpoint(rng={})
    del checkpoint["state"]  # written before the loop's bookkeeping was saved
    atomic_save(checkpoint, tmp_path / "old.pt")
    fresh = make_state(1)
    fresh.restore(load_checkpoint(tmp_path / "old.pt"))
    assert (fresh.loop.epoch, fresh.loop.step, fresh.loop.batch_in_epoch) == (2, 11, 3)
    assert fresh.loop.best_top1 == -math.inf
    assert fresh.loop.best_row == {} and fresh.loop.skipped_paths == []
    assert sums(fresh.loop.epoch_sums) == (0.0, 0.0, 0.0, 0.0)


def test_another_global_batch_is_warned_about(caplog):
    checkpoint = make_state(0, busy_loop()).to_checkpoint(rng={})
    fresh = make_state(1)
    fresh.global_batch = 32
    with caplog.at_level("WARNING", logger="tcm"):
        fresh.restore(checkpoint)
    assert "global batch of 32 clips; the checkpoint was trained with 16" in caplog.text
