"""The visual-tempo comparison end to end, at a toy size."""

import json

import numpy as np

from tcm.cli.main import main
from tcm.recipes.tempo import TempoSettings, chance_levels, group_accuracy, run_tempo_comparison


def test_group_accuracy_and_chance_levels():
    classes = ["left", "right", "slow", "fast"]
    groups = {"left": "direction", "right": "direction", "slow": "tempo", "fast": "tempo"}
    scores = np.array([[0.9, 0.1, 0, 0], [0.8, 0.2, 0, 0], [0, 0, 0.4, 0.6], [0, 0, 0.3, 0.7]])
    labels = np.array([0, 1, 2, 3])
    assert group_accuracy(scores, labels, classes, groups) == {"direction": 50.0, "tempo": 50.0}
    assert chance_levels(classes, groups) == {"direction": 50.0, "tempo": 50.0}


def test_comparison_writes_table_curves_and_runs(tmp_path):
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
    assert [r.variant for r in results] == ["tsn", "tsm", "tcm"]
    for result in results:
        assert 0 <= result.top1 <= 100
        assert set(result.groups) == {"direction", "tempo", "order"}
    table = (tmp_path / "results.md").read_text()
    assert "| tcm (tcm_tsm_resnet10) |" in table
    report = json.loads((tmp_path / "results.json").read_text())
    assert report["settings"]["epochs"] == 1
    assert (tmp_path / "curves.png").stat().st_size > 0
    assert (tmp_path / "runs" / "tcm" / "last.pt").is_file()

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
