"""``tcm train`` on a backbone of the user's own, named in the config by import path."""

from __future__ import annotations

import textwrap

import pytest
import torch

import tcm
from tcm.cli.main import main
from tcm.models import shifted_layers, tcm_layers
from tiny_set import tiny_config

BACKBONE_MODULE = '''
from torch import nn


class TinyCNN(nn.Module):
    """Two strided conv stages, no residual block: (N*T, 3, H, W) -> (N*T, 2w, H/4, W/4)."""

    def __init__(self, width: int = 8):
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1), nn.BatchNorm2d(width), nn.ReLU())
        self.block2 = nn.Sequential(
            nn.Conv2d(width, 2 * width, 3, 2, 1), nn.BatchNorm2d(2 * width), nn.ReLU()
        )

    def forward(self, x):
        return self.block2(self.block1(x))


def tiny_sequential(width: int = 8):
    """The same two stages as one nn.Sequential (as cut from a torchvision model)."""
    return nn.Sequential(*TinyCNN(width).children())
'''


@pytest.fixture
def backbone_package(tmp_path, monkeypatch):
    (tmp_path / "my_backbones.py").write_text(textwrap.dedent(BACKBONE_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_backbones:TinyCNN"


def test_a_backbone_by_import_path_trains_and_reloads(tiny_set, tmp_path, backbone_package):
    kwargs = {
        "backbone_kwargs": {"width": 8},
        "temporal_shift": True,
        "shift_blocks": ["block2"],
        "tcm_stages": ["block1"],
        "patch_size": 5,
    }
    cfg = tiny_config(
        tiny_set, **{"model.name": backbone_package, "model.kwargs": kwargs, "schedule.epochs": 1}
    )
    config = tmp_path / "custom.yaml"
    config.write_text(cfg.to_yaml())
    work_dir = tmp_path / "run"
    assert main(["train", str(config), "--work-dir", str(work_dir)]) == 0
    model, checkpoint = tcm.model_from_checkpoint(
        work_dir / "last.pt", allow_modules=["my_backbones"]
    )
    assert checkpoint["model"]["name"] == backbone_package
    assert shifted_layers(model.backbone) == ["block2"]
    assert tcm_layers(model.backbone)["block1"].in_channels == 8
    assert model.fc.in_features == 16
    with torch.no_grad():
        assert model(torch.randn(1, 4, 3, 32, 32)).shape == (1, 3)


def test_a_sequential_backbone_trains_with_tcm_and_the_shift(tiny_set, tmp_path, backbone_package):
    name = backbone_package.replace("TinyCNN", "tiny_sequential")
    kwargs = {"temporal_shift": True, "shift_blocks": "1", "tcm_stages": "0", "patch_size": 5}
    cfg = tiny_config(
        tiny_set, **{"model.name": name, "model.kwargs": kwargs, "schedule.epochs": 1}
    )
    config = tmp_path / "sequential.yaml"
    config.write_text(cfg.to_yaml())
    assert main(["train", str(config), "--work-dir", str(tmp_path / "run")]) == 0
    last = tmp_path / "run" / "last.pt"
    model, _ = tcm.model_from_checkpoint(last, allow_modules=["my_backbones"])
    assert shifted_layers(model.backbone) == ["1"] and list(tcm_layers(model.backbone)) == ["0"]
    with torch.no_grad():
        assert model(torch.randn(1, 4, 3, 32, 32)).shape == (1, 3)


@pytest.mark.parametrize(
    "name, message",
    [
        ("no_such_package.nets:Net", "cannot import no_such_package.nets"),
        ("my_backbones:Missing", "my_backbones has no attribute 'Missing'"),
        ("os:system", "a backbone cannot come from the standard library"),
    ],
)
def test_a_bad_import_path_is_one_line_before_training(
    tiny_set, tmp_path, backbone_package, capsys, name, message
):
    config = tmp_path / "bad.yaml"
    config.write_text(tiny_config(tiny_set, **{"model.name": name}).to_yaml())
    assert main(["train", str(config), "--work-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"model.name: model '{name}': {message}" in err
    assert not (tmp_path / "run" / "last.pt").exists()
