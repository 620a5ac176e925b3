"""Evaluation starts one set of loader workers: the data processes alive while a batch is
scored, counted during training's validation and during ``tcm test``."""

from __future__ import annotations

import multiprocessing

import pytest

from tcm.cli.main import main
from tcm.engine import evaluation, train
from tiny_set import tiny_config

WORKERS = 2


def _count_data_processes(monkeypatch) -> list[int]:
    """The number of child processes alive at each batch scored by evaluation, from now on."""
    counts = []
    score = evaluation.view_probabilities

    def counting(*args, **kwargs):
        counts.append(len(multiprocessing.active_children()))
        return score(*args, **kwargs)

    monkeypatch.setattr(evaluation, "view_probabilities", counting)
    return counts


@pytest.fixture(scope="module")
def trained(tiny_set, tmp_path_factory):
    """A one-epoch run with loader workers and progress bars, validated at its end: the run
    and the data processes counted during its validation."""
    cfg = tiny_config(
        tiny_set,
        **{
            "schedule.epochs": 1,
            "data.num_workers": WORKERS,
            "eval.num_workers": WORKERS,
            "eval.batch_size": 2,
        },
    )
    with pytest.MonkeyPatch.context() as monkeypatch:
        counts = _count_data_processes(monkeypatch)
        run = train(cfg, tmp_path_factory.mktemp("run") / "run", progress=True)
    return cfg, run, counts


def test_validation_adds_one_set_of_workers(trained):
    _, _, counts = trained
    # The training loader's persistent workers and the validation loader's, nothing more.
    assert counts and set(counts) == {2 * WORKERS}


def test_tcm_test_starts_one_set_of_workers(trained, tmp_path, monkeypatch):
    cfg, run, _ = trained
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(cfg.to_yaml())
    counts = _count_data_processes(monkeypatch)
    assert main(["test", str(config_file), "--checkpoint", str(run.checkpoint)]) == 0
    assert counts and set(counts) == {WORKERS}
