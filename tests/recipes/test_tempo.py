"""The visual-tempo comparison end to end, at a toy size."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tcm.cli.main import main
from tcm.data.annotations import read_classes
from tcm.data.synth import read_groups
from tcm.engine.workdir import WorkDirLock
from tcm.errors import WorkDirError
from tcm.recipes.tempo import (
    TempoSettings,
    chance_levels,
    group_accuracy,
    run_tempo_comparison,
    run_variant_job,
)


def test_group_accuracy_and_chance_levels():
    classes = ["left", "right", "slow", "fast"]
    groups = {"left": "direction", "right": "direction", "slow": "tempo", "fast": "tempo"}
    scores = np.array([[0.9, 0.1, 0, 0], [0.8, 0.2, 0, 0], [0, 0, 0.4, 0.6], [0, 0, 0.3, 0.7]])
    labels = np.array([0, 1, 2, 3])
    assert group_accuracy(scores, labels, classes, groups) == {"direction": 50.0, "tempo": 50.0}
    assert chance_levels(classes, groups) == {"direction": 50.0, "tempo": 50.0}


def _saved_config(run_dir: Path) -> dict:
    return yaml.safe_load((run_dir / "config.yaml").read_text())


def test_comparison_trains_every_variant_alike_and_reports_each(tmp_path):
    settings = TempoSettings(
        clips_per_class=5,
        size=32,
        frames=8,
        num_segments=4,
        epochs=1,
        batch_size=8,
        widths=(8, 8, 16, 16),
        num_workers=0,
    )
    results = run_tempo_comparison(tmp_path, settings, progress=False)
    assert [r.variant for r in results] == ["tsn", "tcm_tsn", "tsm", "tcm"]
    assert [r.model for r in results] == [
        "tsn_resnet10",
        "tcm_tsn_resnet10",
        "tsm_resnet10",
        "tcm_tsm_resnet10",
    ]

    # Same data, trunk, schedule and seed for every variant; only the model differs.
    configs = {r.variant: _saved_config(tmp_path / "runs" / r.variant) for r in results}
    trunk = str(tmp_path / "stills" / "trunk.pth")
    for variant, config in configs.items():
        assert config["data"] == configs["tsn"]["data"]
        assert config["data"]["train_list"] == str(tmp_path / "data" / "train.txt")
        for section in ("optim", "schedule", "train", "eval"):
            assert config[section] == configs["tsn"][section], (variant, section)
        assert config["model"]["pretrained"] == trunk
        assert config["model"]["kwargs"]["widths"] == [8, 8, 16, 16]
        assert ("tcm_stages" in config["model"]["kwargs"]) == (variant in ("tcm_tsn", "tcm"))
    assert Path(trunk).is_file()

    # The report has one row per variant with its figures, and the chance levels.
    rows = (tmp_path / "results.md").read_text().splitlines()
    assert rows[0] == "| model | top-1 | direction | tempo | order | train time |"
    chance = chance_levels(
        read_classes(tmp_path / "data" / "classes.txt"),
        read_groups(tmp_path / "data" / "groups.json"),
    )
    for row, result in zip(rows[2:6], results, strict=True):
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[0] == f"{result.variant} ({result.model})"
        assert cells[1] == f"{result.top1:.1f}"
        assert cells[2:5] == [f"{result.groups[g]:.1f}" for g in ("direction", "tempo", "order")]
        assert 0 <= result.top1 <= 100
    assert rows[6].startswith("| chance within group |")
    assert len(rows) == 7
    report = json.loads((tmp_path / "results.json").read_text())
    assert report["settings"]["epochs"] == 1
    assert report["chance_within_group"] == chance
    assert [row["top1"] for row in report["results"]] == [r.top1 for r in results]
    assert (tmp_path / "curves.png").stat().st_size > 0

    # One seed gives the same numbers: TCM trained again, alone, on one thread as in the pool.
    threads = torch.get_num_threads()
    try:
        again = run_variant_job(
            ("tcm", tmp_path / "data", tmp_path / "again", settings, Path(trunk))
        )
    finally:
        torch.set_num_threads(threads)
    assert again.top1 == results[3].top1 and again.groups == results[3].groups
    assert [row["train_loss"] for row in again.history] == [
        row["train_loss"] for row in results[3].history
    ]

    # The demo command reuses the data set and shows predict and visualize on held-out clips.
    status = main(
        [
            "demo",
            "--out",
            str(tmp_path),
            "--epochs",
            "1",
            "--clips-per-class",
            "5",
            "--variants",
            "tcm",
        ]
    )
    assert status == 0
    assert list((tmp_path / "visualize").glob("*.png"))


def test_a_second_comparison_in_the_same_folder_is_refused(tmp_path):
    with WorkDirLock(tmp_path), pytest.raises(WorkDirError, match="in use by another run"):
        run_tempo_comparison(tmp_path, TempoSettings(clips_per_class=5), progress=False)
    assert not (tmp_path / "data").exists()  # refused before anything was written
