"""A run resumed into another folder (``--resume OLD/last.pt --work-dir NEW``): the new folder
takes the whole run over, its log, its best checkpoint and its own ``last.pt``."""

from __future__ import annotations

import pytest
import torch
from test_bad_inputs import refused, stable, train_args, write_config

from tcm.checkpoint import load_checkpoint
from tcm.cli.main import main
from tcm.engine import read_metrics
from tcm.engine.trainer import Trainer


@pytest.fixture(scope="module")
def two_epochs(tiny_set, tmp_path_factory):
    """``(config, work dir)`` of an uninterrupted two-epoch run."""
    folder = tmp_path_factory.mktemp("two_epochs")
    config = write_config(folder / "run.yaml", tiny_set, **{"schedule.epochs": 2})
    assert main(train_args(config, folder / "run")) == 0
    return config, folder / "run"


def test_a_run_resumed_elsewhere_is_whole_there(tiny_set, tmp_path, monkeypatch, capsys):
    config = write_config(tmp_path / "run.yaml", tiny_set, **{"schedule.epochs": 2})
    train_epoch, validation_row = Trainer.train_epoch, Trainer._validation_row

    def stopped_in_epoch_2(self):
        if self.loop.epoch == 1:  # epoch 1 is done and checkpointed, best.pt included
            raise KeyboardInterrupt
        return train_epoch(self)

    def worse_in_epoch_2(self):
        # So that best.pt stays epoch 1's, which only the old folder has, whatever the
        # processor's rounding makes of the two epochs.
        row = validation_row(self)
        return {**row, "val_top1": -1.0} if self.loop.epoch == 1 else row

    monkeypatch.setattr(Trainer, "_validation_row", worse_in_epoch_2)
    reference, old, new = tmp_path / "reference", tmp_path / "old", tmp_path / "new"
    assert main(train_args(config, reference)) == 0
    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "train_epoch", stopped_in_epoch_2)
        assert main(train_args(config, old)) == 130
    assert main(train_args(config, new, "--resume", str(old / "last.pt"))) == 0
    assert stable(read_metrics(new)) == stable(read_metrics(reference))
    best, expected = load_checkpoint(new / "best.pt"), load_checkpoint(reference / "best.pt")
    assert stable([best["metrics"]]) == stable([expected["metrics"]])
    assert best["metrics"]["epoch"] == 1  # not bettered in epoch 2: only the old folder had it
    for key, value in expected["state_dict"].items():
        assert torch.equal(best["state_dict"][key], value), key
    assert load_checkpoint(new / "last.pt")["epoch"] == 2
    assert load_checkpoint(old / "last.pt")["epoch"] == 1  # the old folder is left as it was


def test_a_finished_run_resumed_elsewhere_ends_with_its_checkpoint_there(
    two_epochs, tmp_path, caplog
):
    config, reference = two_epochs
    empty = tmp_path / "empty"
    with caplog.at_level("INFO", logger="tcm"):
        assert main(train_args(config, empty, "--resume", str(reference / "last.pt"))) == 0
    assert f"checkpoint {empty / 'last.pt'}" in caplog.text
    assert load_checkpoint(empty / "last.pt")["epoch"] == 2
    assert (empty / "best.pt").read_bytes() == (reference / "best.pt").read_bytes()
    assert stable(read_metrics(empty)) == stable(read_metrics(reference))
    # and the new folder continues as its own run
    assert main(train_args(config, empty, "--resume", "auto")) == 0


def test_resume_messages(two_epochs, tmp_path, capsys):
    config, reference = two_epochs
    text = tmp_path / "notes.pt"
    text.write_text("my notes\n")
    argv = train_args(config, tmp_path / "run", "--resume", str(text))
    refused(capsys, argv, "notes.pt: not a checkpoint (a text file")
    other = train_args(config, tmp_path / "run", "--resume", str(reference / "last.pt"))
    line = refused(capsys, [*other, "--set", "data.classes=null", "--set", "model.num_classes=5"])
    assert line.endswith("or start a new run") and "with 5 classes" in line
