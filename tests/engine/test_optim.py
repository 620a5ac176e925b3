"""Optimizer: learning-rate scaling, parameter groups, per-step schedules."""

from __future__ import annotations

import pytest

from tcm.engine.optim import LRSchedule, param_groups, scaled_lr


def test_lr_scaling_param_groups_and_schedules():
    from tcm.engine.config import OptimConfig, ScheduleConfig
    from tcm.models import create_model

    assert scaled_lr(OptimConfig(lr=0.01, base_batch_size=32), 128) == pytest.approx(0.04)
    model = create_model("tsm_resnet10", 5, 2, widths=(8, 16, 32, 64), stem_width=8)
    groups = {g["name"]: g for g in param_groups(model, OptimConfig(head_lr_mult=5), 0.1)}
    assert groups["no_decay"]["weight_decay"] == 0 and groups["decay"]["weight_decay"] == 5e-4
    assert all(p.ndim > 1 for p in groups["decay"]["params"])
    assert groups["head_decay"]["lr"] == pytest.approx(0.5)
    assert groups["head_no_decay"]["params"][0] is model.fc.bias
    step = LRSchedule(None, ScheduleConfig(epochs=50, milestones=[30, 40, 45]), 10)
    assert [step.factor(e * 10) for e in (0, 29, 30, 40, 45)] == pytest.approx(
        [1, 1, 0.1, 0.01, 0.001]
    )
    cosine = LRSchedule(None, ScheduleConfig(epochs=10, type="cosine", warmup_epochs=2), 10)
    assert cosine.factor(0) == pytest.approx(0.1) and cosine.factor(20) == pytest.approx(1)
    assert cosine.factor(60) == pytest.approx(0.5) and cosine.factor(100) == pytest.approx(0)
