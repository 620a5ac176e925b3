"""Weights from elsewhere: MobileNetV2 ImageNet files in two layouts, and the TSM release's
checkpoints (written here in that release's layout) converted and used as ``pretrained``."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

import tcm
from tcm.checkpoint import load_checkpoint
from tcm.cli.main import main
from tcm.models import MobileNetV2, shifted_layers
from tcm.models.convert import release_model_name

FRAMES = 8


def _randomised(state: dict) -> dict:
    generator = torch.Generator().manual_seed(5)
    return {
        k: torch.randn(v.shape, generator=generator) * 0.1 if v.is_floating_point() else v
        for k, v in state.items()
    }


def _torchvision_layout(state: dict) -> dict:
    """:class:`MobileNetV2`'s names as torchvision's ``mobilenet_v2`` spells them."""
    flat_to_nested = {
        True: {0: "0.0", 1: "0.1", 3: "1.0", 4: "1.1", 6: "2", 7: "3"},
        False: {0: "0.0", 1: "0.1", 3: "1", 4: "2"},
    }
    expanded = {
        k.split(".")[1]: v.shape[1] != 1 for k, v in state.items() if k.endswith("conv.0.weight")
    }
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if len(parts) > 3 and parts[2] == "conv":
            index = flat_to_nested[expanded[parts[1]]][int(parts[3])]
            key = ".".join([*parts[:3], index, *parts[4:]])
        out[key] = value
    return out


def _imagenet_mobilenetv2(layout: str) -> dict:
    state = _randomised(MobileNetV2().state_dict())
    head = {"weight": torch.randn(1000, 1280), "bias": torch.randn(1000)}
    if layout == "torchvision":
        return {**_torchvision_layout(state), **{f"classifier.1.{k}": v for k, v in head.items()}}
    return {**state, **{f"classifier.{k}": v for k, v in head.items()}}


@pytest.mark.parametrize("layout", ["release", "torchvision"])
def test_mobilenetv2_imagenet_weights_load_strictly_in_either_layout(tmp_path, layout, caplog):
    state = _imagenet_mobilenetv2(layout)
    if layout == "torchvision":
        assert "features.3.conv.0.0.weight" in state and "features.3.conv.2.weight" in state
    path = tmp_path / f"mobilenet_v2_{layout}.pth"
    torch.save(state, path)
    with caplog.at_level(logging.INFO, logger="tcm.models.pretrained"):
        model = tcm.create_model("tcm_tsm_mobilenetv2", 4, FRAMES, pretrained=str(path))
    reference = _randomised(MobileNetV2().state_dict())
    own = model.backbone.state_dict()
    for key, value in reference.items():
        torch.testing.assert_close(own[key], value, rtol=0, atol=0)
    assert "new: tcm_layers.features_6" in caplog.text and "not used: classifier." in caplog.text


def test_mobilenetv2_weights_that_do_not_fit_are_named(tmp_path):
    state = _imagenet_mobilenetv2("release")
    del state["features.4.conv.3.weight"]
    state["features.18.0.weight"] = torch.zeros(1280, 320, 3, 3)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(ValueError) as error:
        tcm.create_model("tsm_mobilenetv2", 4, FRAMES, pretrained=str(path))
    assert "missing keys: ['features.4.conv.3.weight']" in str(error.value)
    assert "features.18.0.weight (1280, 320, 3, 3) (model (1280, 320, 1, 1))" in str(error.value)


def _tsm_release_checkpoint(model: nn.Module) -> dict:
    """A TSM release file of ``model``'s weights: ``module.base_model.*`` with ``.net.`` around
    every shifted convolution, ``module.new_fc.*``, and the release's other entries."""
    shifted = set(shifted_layers(model.backbone))
    state = {}
    for key, value in model.state_dict().items():
        if key.startswith("backbone."):
            key = key.removeprefix("backbone.")
            layer, _, name = key.rpartition(".")
            if layer in shifted:
                key = f"{layer}.net.{name}"
            state[f"module.base_model.{key}"] = value
        else:
            state[f"module.new_{key}"] = value
    return {"epoch": 50, "arch": "resnet50", "state_dict": state, "best_prec1": 71.2}


@pytest.mark.parametrize("name", ["tsm_resnet50", "tsm_mobilenetv2", "tsn_mobilenetv2"])
def test_tsm_release_checkpoints_convert_to_the_same_logits(tmp_path, name):
    released = tcm.create_model(name, num_classes=6, num_segments=FRAMES)
    with torch.no_grad():  # non-trivial statistics and head
        for key, value in _randomised(released.state_dict()).items():
            released.state_dict()[key].copy_(value.abs() + 0.5 if "running_var" in key else value)
    checkpoint = _tsm_release_checkpoint(released)
    if name != "tsn_mobilenetv2":
        assert any(".net." in key for key in checkpoint["state_dict"])
    assert release_model_name(checkpoint) == name
    src, dst = tmp_path / "TSM_release.pth", tmp_path / "converted.pt"
    torch.save(checkpoint, src)
    assert main(["convert", str(src), str(dst), "--num-segments", str(FRAMES)]) == 0
    assert load_checkpoint(dst)["model"]["name"] == name
    converted, _ = tcm.model_from_checkpoint(dst)
    clip = torch.randn(1, FRAMES, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(converted(clip), released.eval()(clip), rtol=0, atol=0)


def test_a_release_checkpoint_shifting_elsewhere_is_refused(tmp_path, capsys):
    checkpoint = _tsm_release_checkpoint(tcm.create_model("tsm_mobilenetv2", 3, FRAMES))
    state = checkpoint["state_dict"]
    for suffix in ("weight",):  # also shift features.2's expansion, which tcm does not
        state[f"module.base_model.features.2.conv.0.net.{suffix}"] = state.pop(
            f"module.base_model.features.2.conv.0.{suffix}"
        )
    src = tmp_path / "elsewhere.pth"
    torch.save(checkpoint, src)
    assert main(["convert", str(src), str(tmp_path / "out.pt")]) == 2
    err = capsys.readouterr().err
    assert "elsewhere.pth: the checkpoint shifts other layers than the model" in err
    assert "only in the file ['features.2.conv.0']" in err


@pytest.mark.parametrize("name", ["tsn_resnet50", "tcm_tsm_resnet50"])
def test_a_tsm_release_checkpoint_starts_every_variant_of_its_backbone(tmp_path, name, caplog):
    released = tcm.create_model("tsm_resnet50", num_classes=400, num_segments=FRAMES)
    checkpoint = _tsm_release_checkpoint(released)
    path = tmp_path / "TSM_kinetics_RGB_resnet50_shift8_blockres_avg_segment8_e50.pth"
    torch.save(checkpoint, path)
    with caplog.at_level(logging.INFO, logger="tcm.models.pretrained"):
        model = tcm.create_model(name, num_classes=10, num_segments=FRAMES, pretrained=str(path))
    torch.testing.assert_close(
        model.backbone.layer3[2].conv1.weight, released.backbone.layer3[2].conv1.weight
    )
    assert model.fc.weight.shape == (10, 2048)  # the head starts fresh
    assert f"{len(released.backbone.state_dict())} tensors from the file" in caplog.text
    assert "not used: new_fc.weight, new_fc.bias" in caplog.text
    new = "tcm_layers.layer2" if name.startswith("tcm_") else "none"
    assert f"new: {new};" in caplog.text


def _tcm_release_checkpoint(model: nn.Module) -> dict:
    """A TCM release file of ``model``'s weights: its TCM layer as ``base_model.tcm_layer.*``,
    no ``.net.`` wrappers although the backbone is shifted, a Conv1d head."""
    state = {}
    for key, value in model.state_dict().items():
        if key.startswith("backbone.tcm_layers.layer2."):
            key = "base_model.tcm_layer." + key.removeprefix("backbone.tcm_layers.layer2.")
        elif key.startswith("backbone."):
            key = "base_model." + key.removeprefix("backbone.")
        else:
            key, value = f"new_{key}", value[..., None] if key == "fc.weight" else value
        state[f"module.{key}"] = value
    return {"epoch": 20, "state_dict": state, "best_prec1": 50.0}


def test_convert_refuses_a_model_that_adds_or_drops_the_files_shift(tmp_path, capsys):
    tsn = _tsm_release_checkpoint(tcm.create_model("tsn_resnet50", 3, FRAMES))
    assert not any(".net." in key for key in tsn["state_dict"])
    tcm_release = _tcm_release_checkpoint(tcm.create_model("tcm_tsm_resnet50", 3, FRAMES))
    assert release_model_name(tcm_release) == "tcm_tsm_resnet50"
    for checkpoint, model, expected in (
        (
            tsn,
            "tsm_resnet50",
            "the checkpoint has no temporally shifted layer (a tsn_resnet50), but the model "
            "tsm_resnet50 shifts 16 layers (layer1.0.conv1, layer1.1.conv1, layer1.2.conv1, "
            "...): convert to tsn_resnet50, or leave out --model",
        ),
        (
            tcm_release,
            "tcm_tsn_resnet50",
            "the checkpoint is of the TCM release, trained with the temporal shift (a "
            "tcm_tsm_resnet50), but the model tcm_tsn_resnet50 shifts no layer: convert to a "
            "tcm_tsm_ model, or leave out --model",
        ),
    ):
        src, dst = tmp_path / "release.pth", tmp_path / "converted.pt"
        torch.save(checkpoint, src)
        argv = ["convert", str(src), str(dst), "--num-segments", str(FRAMES)]
        assert main([*argv, "--model", model]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"tcm convert: error: {src}: {expected}"]
        assert not dst.exists()
    # Without --model, or with the model the file holds, it converts.
    assert main([*argv, "--model", "tcm_tsm_resnet50"]) == 0
    assert load_checkpoint(dst)["model"]["name"] == "tcm_tsm_resnet50"


def test_convert_refuses_a_file_that_inflates_far_beyond_its_size(tmp_path, capsys):
    import zipfile

    stored = tmp_path / "stored.pth"
    torch.save({"state_dict": {"module.new_fc.weight": torch.zeros(10_000_000)}}, stored)
    packed = tmp_path / "recompressed.pth"
    with zipfile.ZipFile(stored) as source, zipfile.ZipFile(packed, "w") as target:
        for entry in source.infolist():
            target.writestr(entry, source.read(entry), compress_type=zipfile.ZIP_DEFLATED)
    assert packed.stat().st_size < stored.stat().st_size / 100  # 40 MB of zeros, some KB
    assert main(["convert", str(packed), str(tmp_path / "out.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"tcm convert: error: {packed}: not a readable ")
    assert "its entries inflate to 40 MB from " in err[0]
    assert "more than 20 times the file (torch.save stores them uncompressed)" in err[0]
    # The file as torch.save wrote it is read (and refused for what it holds).
    assert main(["convert", str(stored), str(tmp_path / "out.pt")]) == 2
    assert "inflate" not in capsys.readouterr().err
