"""ImageNet initialisation from a local file and from a URL (a local file:// URL here)."""

import pytest
import torch

import tcm
from tcm.models.resnet import RESNET_LAYOUTS, ResNet


def _imagenet_file(tmp_path, depth=18, wrap=False):
    block, layers = RESNET_LAYOUTS[depth]
    state = ResNet(block, layers).state_dict()
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in state.items()}
    state["fc.weight"] = torch.randn(1000, 512 * block.expansion)
    state["fc.bias"] = torch.randn(1000)
    path = tmp_path / f"resnet{depth}.pth"
    torch.save({"state_dict": state} if wrap else state, path)
    return path, state


@pytest.mark.parametrize("wrap", [False, True])
def test_local_file_loads_into_backbone(tmp_path, wrap):
    path, state = _imagenet_file(tmp_path, wrap=wrap)
    model = tcm.create_model("tcm_tsm_resnet18", num_classes=7, pretrained=str(path))
    torch.testing.assert_close(
        model.backbone.layer3[1].conv2.weight, state["layer3.1.conv2.weight"]
    )
    assert model.fc.weight.shape == (7, 512)


def test_url_is_downloaded_and_cached(tmp_path, monkeypatch):
    path, state = _imagenet_file(tmp_path)
    cache = tmp_path / "cache"
    monkeypatch.setenv("TORCH_HOME", str(cache))
    model = tcm.create_model("tsn_resnet18", num_classes=2, pretrained=path.as_uri())
    torch.testing.assert_close(model.backbone.conv1.weight, state["conv1.weight"])
    assert (cache / "hub" / "checkpoints" / path.name).is_file()


def test_mismatching_weights_name_the_keys(tmp_path):
    path, _ = _imagenet_file(tmp_path, depth=18)
    with pytest.raises(ValueError, match=r"missing keys: \['layer1\.0\.conv3\.weight'"):
        tcm.create_model("tsm_resnet50", num_classes=2, pretrained=str(path))
    with pytest.raises(FileNotFoundError, match="no such weights file"):
        tcm.create_model("tsm_resnet18", num_classes=2, pretrained=str(tmp_path / "nope.pth"))
