"""A run resumed with other optimizer settings (``--set optim.lr=...`` or an edited
``W/config.yaml``) trains with them from the step it resumes at, says so, and records only
what it used."""

from __future__ import annotations

import logging

import pytest
import yaml
from test_bad_inputs import train_args, write_config

from tcm.checkpoint import load_checkpoint
from tcm.cli.main import main
from tcm.engine import read_metrics
from tcm.engine.config import ScheduleConfig
from tcm.engine.optim import LRSchedule

STEPS_PER_EPOCH = 3  # 12 clips, batches of 4


@pytest.mark.parametrize("how", ["set", "edited config.yaml"])
def test_changed_optimizer_settings_are_used_from_the_resumed_step(tiny_set, tmp_path, caplog, how):
    config = write_config(tmp_path / "run.yaml", tiny_set, **{"train.eval_interval": 0})
    work = tmp_path / "run"
    assert main(train_args(config, work)) == 0
    first = load_checkpoint(work / "last.pt")
    assert {g["base_lr"] for g in first["optimizer"]["param_groups"]} == {0.05}
    if how == "set":
        changes = ["--set", "optim.lr=0.5", "--set", "optim.weight_decay=0.001"]
        resumed = train_args(config, work, "--resume", "auto", "--set", "schedule.epochs=2")
        resumed += changes
    else:
        edited = yaml.safe_load((work / "config.yaml").read_text())
        edited["optim"].update(lr=0.5, weight_decay=0.001)
        edited["schedule"]["epochs"] = 2
        (tmp_path / "edited.yaml").write_text(yaml.safe_dump(edited))
        resumed = train_args(tmp_path / "edited.yaml", work, "--resume", "auto")
    with caplog.at_level(logging.INFO, logger="tcm"):
        assert main(resumed) == 0
    said = [r.getMessage() for r in caplog.records if "optimizer settings differ" in r.message]
    assert len(said) == 1, caplog.text
    assert (
        "from step 3: base_lr of decay 0.05 -> 0.5, weight_decay of decay 0.0005 -> 0.001"
        in (said[0])
    )
    # The steps of epoch 2 ran at the new rate, as the schedule places it.
    schedule = LRSchedule(
        None, ScheduleConfig(epochs=2, type="cosine", warmup_epochs=0.5), STEPS_PER_EPOCH
    )
    rows = [r for r in read_metrics(work) if r["kind"] == "step" and r["step"] > 3]
    assert [r["lr"] for r in rows] == pytest.approx(
        [0.5 * schedule.factor(s - 1) for s in (4, 5, 6)]
    )
    # What is recorded is what was used.
    final = load_checkpoint(work / "last.pt")
    decay = next(g for g in final["optimizer"]["param_groups"] if g["name"] == "decay")
    assert (decay["base_lr"], decay["weight_decay"]) == (0.5, 0.001)
    assert final["config"]["optim"]["lr"] == 0.5
    assert yaml.safe_load((work / "config.yaml").read_text())["optim"]["lr"] == 0.5
