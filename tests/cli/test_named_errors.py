"""Model names, weights and exported files that cannot serve a command: one line naming the
file or setting and the problem, never a traceback."""

from __future__ import annotations

import pytest
import torch

from tcm.cli.main import main
from tiny_set import tiny_config
from video_files import write_moving_square


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (".nets:SmallCNN", "a relative import path cannot be resolved"),
        ("tcm:create_model", "a function of tcm itself, not a backbone"),
    ],
)
def test_backbone_names_that_are_not_backbones(name, message, tiny_set, tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(tiny_config(tiny_set, **{"model.name": name}).to_yaml())
    assert main(["train", str(config), "--work-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert f"model.name: model {name!r}" in err[0]


def test_convert_names_a_value_that_is_not_a_tensor(tmp_path, capsys):
    source = tmp_path / "release.pth"
    torch.save({"state_dict": {"module.base_model.conv1.weight": [1, 2, 3]}}, source)
    assert main(["convert", str(source), str(tmp_path / "out.pt")]) == 2
    err = capsys.readouterr().err
    assert "'module.base_model.conv1.weight' is a list, not a tensor" in err
    assert not (tmp_path / "out.pt").exists()


def test_a_torchscript_file_given_as_checkpoint_is_named(tmp_path, capsys):
    scripted = tmp_path / "model.pt"
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(scripted))
    clip = write_moving_square(tmp_path / "clip.mp4")
    assert main(["predict", str(clip), "--checkpoint", str(scripted)]) == 2
    err = capsys.readouterr().err
    assert "a TorchScript model" in err and "weights_only" not in err
