"""MetricsWriter and read_metrics: JSON lines, truncation on resume, the TensorBoard mirror."""

from __future__ import annotations

import json
import math
import sys
import types

import pytest
import torch

from tcm.engine.training_log import TRAINING_LOG_FILE, MetricsWriter, RunningSums, read_metrics

STEP = {"kind": "step", "epoch": 0, "step": 2, "loss": 1.5, "lr": 0.01}
EPOCH = {"kind": "epoch", "epoch": 1, "step": 4, "train_loss": 1.2, "val_top1": 50.0}


def test_rows_are_appended_as_json_lines(tmp_path):
    writer = MetricsWriter(tmp_path / "run", tensorboard=False)
    writer.write(STEP)
    writer.write(EPOCH)
    writer.close()
    path = tmp_path / "run" / TRAINING_LOG_FILE
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [STEP, EPOCH]
    # A second writer on the same folder (a resumed run) appends.
    again = MetricsWriter(tmp_path / "run", tensorboard=False)
    again.write({**STEP, "step": 6})
    assert read_metrics(path) == [STEP, EPOCH, {**STEP, "step": 6}]


def test_read_metrics_takes_a_folder_or_a_file_and_skips_a_cut_line(tmp_path):
    assert read_metrics(tmp_path) == []  # no file yet
    assert read_metrics(tmp_path / "missing.jsonl") == []
    path = tmp_path / TRAINING_LOG_FILE
    path.write_text(json.dumps(STEP) + "\n\n" + json.dumps(EPOCH) + '\n{"kind": "st', "utf-8")
    assert read_metrics(tmp_path) == read_metrics(path) == [STEP, EPOCH]


def test_truncate_after_keeps_the_rows_up_to_the_step(tmp_path):
    writer = MetricsWriter(tmp_path, tensorboard=False)
    rows = [{"kind": "step", "epoch": 0, "step": s, "loss": 1.0 / s} for s in (1, 2, 3, 4)]
    rows.insert(2, {"kind": "epoch", "epoch": 1, "step": 2, "val_top1": 10.0})
    no_step = {"kind": "note"}  # a row without a step counts as step 0 and is kept
    for row in [no_step, *rows]:
        writer.write(row)
    with open(writer.path, "a", encoding="utf-8") as handle:
        handle.write('{"kind": "step", "st')  # cut by a killed run
    writer.truncate_after(2)
    assert read_metrics(tmp_path) == [no_step, *rows[:3]]
    assert writer.path.read_text(encoding="utf-8").endswith("}\n")  # the cut line is gone
    writer.write(rows[3])  # the resumed run rewrites the later rows
    assert read_metrics(tmp_path)[-1] == rows[3]
    writer.truncate_after(0)
    assert read_metrics(tmp_path) == [no_step]


def test_truncate_after_without_a_file_starts_an_empty_one(tmp_path):
    writer = MetricsWriter(tmp_path / "new", tensorboard=False)
    writer.truncate_after(10)
    assert writer.path.read_text(encoding="utf-8") == ""


def test_a_disabled_writer_writes_nothing(tmp_path):
    (tmp_path / TRAINING_LOG_FILE).write_text(json.dumps(EPOCH) + "\n", encoding="utf-8")
    writer = MetricsWriter(tmp_path, enabled=False)
    writer.write(STEP)
    writer.truncate_after(0)
    writer.close()
    assert read_metrics(tmp_path) == [EPOCH]  # neither appended nor truncated
    assert sorted(p.name for p in tmp_path.iterdir()) == [TRAINING_LOG_FILE]
    idle = MetricsWriter(tmp_path / "other", enabled=False)
    idle.write(STEP)
    assert not (tmp_path / "other").exists()


def test_non_finite_values_round_trip(tmp_path):
    # A diverged run logs NaN or infinite losses; Python's JSON reads them back.
    writer = MetricsWriter(tmp_path, tensorboard=False)
    writer.write({"kind": "step", "step": 1, "loss": math.nan, "grad_norm": math.inf})
    (row,) = read_metrics(tmp_path)
    assert math.isnan(row["loss"]) and row["grad_norm"] == math.inf


class _FakeSummaryWriter:
    """Stands in for TensorBoard's writer (not installed here): records what it is given."""

    def __init__(self, log_dir: str) -> None:
        self.log_dir = log_dir
        self.scalars: list[tuple[str, float, int]] = []
        self.closed = 0

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.scalars.append((tag, value, step))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed += 1


@pytest.fixture
def fake_tensorboard(monkeypatch) -> list[_FakeSummaryWriter]:
    """``torch.utils.tensorboard`` replaced; returns the writers made, in order."""
    made: list[_FakeSummaryWriter] = []

    def summary_writer(log_dir: str) -> _FakeSummaryWriter:
        made.append(_FakeSummaryWriter(log_dir))
        return made[-1]

    module = types.ModuleType("torch.utils.tensorboard")
    module.SummaryWriter = summary_writer
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", module)
    return made


def test_numbers_are_mirrored_to_tensorboard(tmp_path, fake_tensorboard):
    writer = MetricsWriter(tmp_path)
    writer.write({**STEP, "note": "text is not a scalar"})
    writer.write(EPOCH)
    (board,) = fake_tensorboard
    assert board.log_dir == str(tmp_path / "tensorboard")
    assert board.scalars == [
        ("train_step/loss", 1.5, 2),
        ("train_step/lr", 0.01, 2),
        ("epoch/train_loss", 1.2, 4),
        ("epoch/val_top1", 50.0, 4),
    ]
    writer.close()
    writer.close()  # closing twice is harmless
    assert board.closed == 1
    writer.write(STEP)  # after close, rows still reach the file
    assert len(read_metrics(tmp_path)) == 3 and len(board.scalars) == 4


def test_no_tensorboard_when_disabled_or_not_asked(tmp_path, fake_tensorboard):
    MetricsWriter(tmp_path, enabled=False).write(STEP)
    MetricsWriter(tmp_path, tensorboard=False).write(STEP)
    assert fake_tensorboard == []


def test_running_sums_add_bank_and_survive_a_checkpoint(monkeypatch):
    clock = iter([10.0, 12.5, 14.0, 20.0, 30.0, 31.0])
    monkeypatch.setattr("tcm.engine.training_log.time.perf_counter", lambda: next(clock))
    sums = RunningSums()  # clock starts at 10.0
    sums.add(6.0, 3.0, 4.0)
    sums.add(2.0, 1.0, 4.0)
    assert (sums.mean_loss, sums.top1) == (1.0, 50.0)
    sums.bank()  # 12.5
    assert sums.seconds == 2.5
    assert sums.elapsed() == 4.0  # 2.5 banked + 1.5 since 12.5
    saved = sums.to_tensor()
    assert saved.dtype == torch.float64 and saved.tolist() == [8.0, 4.0, 8.0, 2.5]
    again = RunningSums.from_tensor(saved)  # its clock starts at 20.0
    assert (again.loss, again.correct, again.clips, again.seconds) == (8.0, 4.0, 8.0, 2.5)
    assert RunningSums.from_tensor(None) == RunningSums()
