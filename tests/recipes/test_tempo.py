"""The visual-tempo comparison end to end, at a toy size."""

import json

import numpy as np
import pytest
import torch

from tcm.cli.main import main
from tcm.data.synth import SHAPES
from tcm.engine.workdir import WorkDirLock
from tcm.errors import WorkDirError
from tcm.models import create_model
from tcm.recipes.stills import StillsConfig, pretrain_trunk, render_stills
from tcm.recipes.tempo import (
    TempoSettings,
    chance_levels,
    group_accuracy,
    run_tempo_comparison,
    variant_config,
)


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
    assert [r.variant for r in results] == ["tsn", "tcm_tsn", "tsm", "tcm"]
    assert [r.model for r in results] == [
        "tsn_resnet10",
        "tcm_tsn_resnet10",
        "tsm_resnet10",
        "tcm_tsm_resnet10",
    ]
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


def test_still_image_trunk_initialises_every_variant_alike(tmp_path):
    config = StillsConfig(widths=(8, 8, 16, 16), stem_width=8, size=32, images=64, epochs=1)
    images, labels = render_stills(config, workers=1)
    assert images.shape == (64, 3, 32, 32) and images.dtype == torch.uint8
    assert set(labels.tolist()) <= set(range(len(SHAPES)))
    path = pretrain_trunk(tmp_path / "stills", config)
    written = path.stat().st_mtime_ns
    assert pretrain_trunk(tmp_path / "stills", config) == path  # cached: not trained again
    assert path.stat().st_mtime_ns == written
    trunk = torch.load(path, weights_only=True)
    for variant in ("tsn", "tcm"):
        settings = TempoSettings(
            size=32, widths=(8, 8, 16, 16), num_segments=4, pretrain=True, variants=(variant,)
        )
        config = variant_config(variant, tmp_path, settings, trunk=path)
        model = create_model(
            config.model.name,
            num_classes=10,
            num_segments=4,
            pretrained=config.model.pretrained,
            **config.model.kwargs,
        )
        for key, value in trunk.items():
            torch.testing.assert_close(model.backbone.state_dict()[key], value)


def test_a_second_comparison_in_the_same_folder_is_refused(tmp_path):
    with WorkDirLock(tmp_path), pytest.raises(WorkDirError, match="in use by another run"):
        run_tempo_comparison(tmp_path, TempoSettings(clips_per_class=5), progress=False)
    assert not (tmp_path / "data").exists()  # refused before anything was written
