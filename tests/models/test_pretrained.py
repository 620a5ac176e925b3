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


def test_a_tcm_checkpoint_initialises_the_backbone(tmp_path):
    from tcm.checkpoint import atomic_save, make_checkpoint

    options = {"widths": [8, 16, 32, 64], "stem_width": 8, "patch_size": 5}
    trained = tcm.create_model("tcm_tsm_resnet10", num_classes=3, num_segments=4, **options)
    path = atomic_save(
        make_checkpoint(
            trained.state_dict(),
            model_name="tcm_tsm_resnet10",
            num_classes=3,
            num_segments=4,
            model_kwargs=options,
        ),
        tmp_path / "best.pt",
    )
    model = tcm.create_model("tcm_tsm_resnet10", 5, 4, pretrained=str(path), **options)
    torch.testing.assert_close(
        model.backbone.layer4[0].conv1.weight, trained.backbone.layer4[0].conv1.weight
    )
    assert model.fc.out_features == 5


def test_unusable_weights_sources_are_named_in_one_line(tmp_path):
    import socket

    from video_files import write_moving_square

    text = tmp_path / "weights.txt"
    text.write_text("not weights\n")
    video = write_moving_square(tmp_path / "clip.mp4")
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cases = {
        str(tmp_path): "a folder, not a weights file",
        str(text): "not a weights file \\(a text file",
        str(video): "not a weights file \\(not a file torch.save writes",
        f"http://127.0.0.1:{port}/resnet18.pth": "cannot download .*give its local path",
    }
    for source, message in cases.items():
        with pytest.raises(ValueError, match=message) as error:
            tcm.create_model("tsn_resnet18", num_classes=2, pretrained=source)
        assert "weights_only" not in str(error.value)
        assert "\n" not in str(error.value)
