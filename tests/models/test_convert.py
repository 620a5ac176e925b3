"""Reference checkpoints: conversion, strict loading, the project's checkpoint format."""

import json

import pytest
import torch

import tcm
from tcm.checkpoint import load_checkpoint
from tcm.cli.main import main


@pytest.fixture(scope="module")
def reference_state(shared_dir):
    keys = json.loads((shared_dir / "golden" / "official_tcm_r50_keys.json").read_text())
    generator = torch.Generator().manual_seed(0)
    return {
        name: torch.randn(shape, generator=generator) if shape else torch.tensor(0)
        for name, shape in keys
    }


@pytest.mark.parametrize("wrapped", [True, False])
@pytest.mark.parametrize("strip_module", [True, False])
def test_reference_checkpoint_loads_strictly(reference_state, wrapped, strip_module):
    state = reference_state
    if strip_module:
        state = {k.removeprefix("module."): v for k, v in state.items()}
    checkpoint = {"state_dict": state, "epoch": 50, "best_prec1": 52.2} if wrapped else state
    model = tcm.create_model("tcm_tsm_resnet50", num_classes=174, num_segments=8)
    converted = tcm.convert_official_checkpoint(checkpoint, model.state_dict())
    model.load_state_dict(converted, strict=True)
    torch.testing.assert_close(
        model.backbone.tcm_layers["layer2"].tam.ETA.conv.weight,
        reference_state["module.base_model.tcm_layer.tam.ETA.conv.weight"],
    )
    torch.testing.assert_close(model.fc.weight, reference_state["module.new_fc.weight"].squeeze(-1))


def test_unknown_and_missing_keys_are_named(reference_state):
    model = tcm.create_model("tcm_tsm_resnet50", num_classes=174, num_segments=8)
    extra = dict(reference_state, **{"module.consensus.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"module\.consensus\.weight"):
        tcm.convert_official_checkpoint(extra, model.state_dict())
    partial = {k: v for k, v in reference_state.items() if "layer4.2.bn3" not in k}
    with pytest.raises(ValueError, match=r"missing keys: \['backbone.layer4.2.bn3.weight'"):
        tcm.convert_official_checkpoint(partial, model.state_dict())
    other_classes = tcm.create_model("tcm_tsm_resnet50", num_classes=10, num_segments=8)
    with pytest.raises(ValueError, match=r"shape mismatches: \['fc\.weight"):
        tcm.convert_official_checkpoint(reference_state, other_classes.state_dict())


def test_convert_command_writes_a_self_describing_checkpoint(reference_state, tmp_path, shared_dir):
    src = tmp_path / "TCM_something_RGB_resnet50_shift8_blockres_avg_segment8_e50.pth.tar"
    torch.save({"state_dict": reference_state, "epoch": 50, "best_prec1": 52.2}, src)
    dst = tmp_path / "tcm_sthv1.pt"
    labels = shared_dir / "data" / "labels" / "something_something.txt"
    assert main(["convert", str(src), str(dst), "--labels", str(labels)]) == 0
    checkpoint = load_checkpoint(dst)
    assert checkpoint["model"] == {
        "name": "tcm_tsm_resnet50",
        "num_classes": 174,
        "num_segments": 8,
        "kwargs": {},
    }
    assert checkpoint["classes"][0] == labels.read_text().splitlines()[0]
    model, _ = tcm.model_from_checkpoint(dst)
    torch.testing.assert_close(model.fc.bias, reference_state["module.new_fc.bias"])


def test_convert_command_reports_bad_files(tmp_path, capsys):
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    assert main(["convert", str(text), str(tmp_path / "out.pt")]) == 2
    assert "notes.pth: not a readable checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "out.pt").exists()
