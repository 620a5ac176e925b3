"""The plug-in API: TCM and the temporal shift in a ResNet, a MobileNetV2 and a plain CNN."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import tcm
from tcm.layers import temporal_shift
from tcm.models import (
    Bottleneck,
    MobileNetV2,
    ResNet,
    VideoRecognizer,
    shifted_layers,
    tcm_layers,
)
from tcm.models.plugin import ShiftedConv2d

FRAMES = 4


class PlainCNN(nn.Module):
    """Three conv stages and no residual block: ``(N*T, 3, H, W)`` -> ``(N*T, 32, H/8, W/8)``."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU())
        self.block1 = nn.Sequential(nn.Conv2d(8, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU())
        self.block2 = nn.Sequential(nn.Conv2d(16, 32, 3, 2, 1), nn.BatchNorm2d(32), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block2(self.block1(self.stem(x)))

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        return self.flat(self.pool(self.forward(x)))


def _clip(batch: int = 2, size: int = 32, frames: int = FRAMES) -> torch.Tensor:
    return torch.randn(batch, frames, 3, size, size)


def _same_function(ours: nn.Module, registered: nn.Module, clip: torch.Tensor) -> None:
    assert list(ours.state_dict()) == list(registered.state_dict())
    ours.load_state_dict(registered.state_dict())
    ours.eval(), registered.eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(clip), registered(clip), rtol=0, atol=0)


def test_plugins_on_a_resnet50_are_the_registered_tcm_tsm_resnet50():
    backbone = ResNet(Bottleneck, (3, 4, 6, 3))
    tcm.add_tcm(tcm.add_temporal_shift(backbone, num_segments=FRAMES), FRAMES, after="layer2")
    ours = VideoRecognizer(backbone, num_classes=5)
    registered = tcm.create_model("tcm_tsm_resnet50", num_classes=5, num_segments=FRAMES)
    _same_function(ours, registered, _clip(batch=1, size=64))
    assert ours.num_segments == FRAMES
    assert len(shifted_layers(backbone)) == 16  # every bottleneck, before conv1
    assert shifted_layers(backbone)[0] == "layer1.0.conv1"


def test_plugins_on_a_mobilenetv2_are_the_registered_tcm_tsm_mobilenetv2():
    backbone = tcm.add_temporal_shift(MobileNetV2(), num_segments=FRAMES)
    tcm.add_tcm(backbone, FRAMES, after="features.6")
    ours = VideoRecognizer(backbone, num_classes=5, num_segments=FRAMES)
    registered = tcm.create_model("tcm_tsm_mobilenetv2", num_classes=5, num_segments=FRAMES)
    _same_function(ours, registered, _clip(batch=1, size=64))
    # The TSM release's placement: the expansion of the inverted residuals with a skip.
    expected = [f"features.{i}.conv.0" for i in (3, 5, 6, 8, 9, 10, 12, 13, 15, 16)]
    assert shifted_layers(backbone) == expected
    layer = tcm_layers(backbone)["features.6"]
    assert layer.in_channels == 32
    assert "backbone.tcm_layers.features_6.mtdm.chnl_reduction.0.weight" in ours.state_dict()


def test_the_shift_acts_on_the_residual_branch_only():
    backbone = ResNet(Bottleneck, (1, 1, 1, 1), widths=(8, 8, 8, 8), stem_width=16).eval()
    block = backbone.layer1[0]
    reference = copy.deepcopy(block)
    reference.conv1.register_forward_pre_hook(lambda m, args: temporal_shift(args[0], FRAMES, 8))
    seen = {}
    block.downsample.register_forward_pre_hook(lambda m, args: seen.update(identity=args[0]))
    tcm.add_temporal_shift(backbone, num_segments=FRAMES)
    assert list(block.state_dict()) == list(reference.state_dict())
    stem = torch.randn(2 * FRAMES, 16, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(block(stem), reference(stem), rtol=0, atol=0)
    torch.testing.assert_close(seen["identity"], stem, rtol=0, atol=0)


def test_tcm_alone_in_a_plain_cnn_at_several_layers_forward_backward():
    backbone = tcm.add_tcm(PlainCNN(), FRAMES, after=["block1", "block2"], patch_size=5)
    assert {name: layer.in_channels for name, layer in tcm_layers(backbone).items()} == {
        "block1": 16,
        "block2": 32,
    }
    model = VideoRecognizer(backbone, num_classes=3, num_segments=FRAMES)
    logits = model(_clip())
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    logits.logsumexp(dim=1).sum().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not no_grad, f"parameters without gradient: {no_grad}"
    tcm_grads = [n for n, p in model.named_parameters() if "tcm_layers.block1" in n]
    assert tcm_grads and model.fc.in_features == 32


def test_the_probe_leaves_the_backbone_as_it_was():
    backbone = PlainCNN().train()
    before = copy.deepcopy(backbone.state_dict())
    tcm.add_tcm(backbone, FRAMES, after="block1")
    assert backbone.training and all(m.training for m in backbone.modules())
    for key, value in before.items():
        torch.testing.assert_close(backbone.state_dict()[key], value, rtol=0, atol=0)


def test_a_named_layer_of_a_plain_cnn_can_be_shifted():
    plain = PlainCNN()
    backbone = tcm.add_temporal_shift(copy.deepcopy(plain), FRAMES, blocks=["block2"])
    assert shifted_layers(backbone) == ["block2"]
    x = torch.randn(FRAMES, 3, 16, 16)
    with torch.no_grad():
        expected = plain.block2(temporal_shift(plain.block1(plain.stem(x)), FRAMES, 8))
        torch.testing.assert_close(backbone(x), expected)


def test_a_copy_runs_its_own_tcm():
    model = VideoRecognizer(tcm.add_tcm(PlainCNN(), FRAMES, after="block1"), 3).eval()
    twin = copy.deepcopy(model)
    clip = _clip(batch=1)
    with torch.no_grad():
        torch.testing.assert_close(twin(clip), model(clip))
        tcm_layers(twin.backbone)["block1"].tam.conv4[0].weight.mul_(3.0)
        assert not torch.allclose(twin(clip), model(clip))


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: tcm.add_tcm(PlainCNN(), FRAMES, after="blok2"), r"no layer named 'blok2'.*block2"),
        (
            lambda: tcm.add_tcm(PlainCNN(), FRAMES, after="flat"),
            r"'flat' of PlainCNN is not run by its forward\(\)",
        ),
        (lambda: tcm.add_tcm(PlainCNN(), FRAMES, after="block1", patch=5), "unknown TCM option"),
        (lambda: tcm.add_temporal_shift(PlainCNN(), FRAMES), "PlainCNN has no residual blocks"),
        (
            lambda: tcm.add_temporal_shift(MobileNetV2(), FRAMES, blocks=["features.2"]),
            r"features.2 \(InvertedResidual\) has no residual branch",
        ),
        (
            lambda: tcm.add_temporal_shift(ResNet(Bottleneck, (1, 1, 1, 1)), blocks=["layer1"]),
            r"layer1 holds residual blocks; name them \(layer1.0, \.\.\.\)",
        ),
        (
            lambda: tcm.add_tcm(tcm.add_tcm(PlainCNN(), FRAMES, "block1"), FRAMES, "block1"),
            "block1 already has a TCM layer",
        ),
    ],
)
def test_misuse_is_one_clear_error(build, message):
    with pytest.raises(ValueError, match=message):
        build()


class Flattening(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = PlainCNN()
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x):
        return self.head(self.features(x))


def test_a_layer_whose_output_is_not_a_feature_map_is_refused():
    with pytest.raises(ValueError, match=r"layer 'head' outputs \(4, 32\), not a feature map"):
        tcm.add_tcm(Flattening(), FRAMES, after="head")


def test_a_batch_that_num_segments_does_not_divide_is_named():
    shifted = tcm.add_temporal_shift(MobileNetV2(), FRAMES)
    with pytest.raises(ValueError, match=r"temporal shift before features.3.conv.0: .*got \[6,"):
        shifted(torch.randn(6, 3, 32, 32))
    with_tcm = tcm.add_tcm(PlainCNN(), FRAMES, after="block1")
    with pytest.raises(ValueError, match=r"TCM after block1: .*num_segments=4, got \[5, 16"):
        with_tcm(torch.randn(5, 3, 32, 32))


def test_plugged_models_trace_to_torchscript():
    for backbone in (
        tcm.add_tcm(PlainCNN(), FRAMES, after="block1", patch_size=5),
        tcm.add_tcm(tcm.add_temporal_shift(MobileNetV2(), FRAMES), FRAMES, after="features.6"),
    ):
        model = VideoRecognizer(backbone, 3, num_segments=FRAMES).eval()
        clip = _clip(batch=1)
        with torch.no_grad():
            traced = torch.jit.trace(model, clip, check_trace=False)
            torch.testing.assert_close(traced(clip), model(clip))


def test_plugged_models_export_to_onnx(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    backbone = tcm.add_tcm(tcm.add_temporal_shift(MobileNetV2(), FRAMES), FRAMES, "features.6")
    model = VideoRecognizer(backbone, 3, num_segments=FRAMES).eval()
    clip = _clip(batch=1)
    path = tmp_path / "mnv2.onnx"
    with torch.no_grad():
        torch.onnx.export(model, (clip,), str(path), input_names=["clip"], dynamo=False)
        expected = model(clip).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"clip": clip.numpy()})
    assert abs(got - expected).max() < 1e-4


def test_a_backbone_with_plugins_builds_on_the_meta_device():
    with torch.device("meta"):
        backbone = tcm.add_tcm(PlainCNN(), FRAMES, after="block1")
        tcm.add_tcm(backbone, FRAMES, after="block2")  # probes through block1's TCM
        model = VideoRecognizer(tcm.add_temporal_shift(backbone, FRAMES, blocks=["block2"]), 3)
    assert model.fc.weight.is_meta and model.fc.in_features == 32


def test_one_layer_name_may_be_given_as_a_string():
    backbone = ResNet(Bottleneck, (1, 1, 1, 1), widths=(8, 8, 8, 8), stem_width=16)
    tcm.add_temporal_shift(backbone, FRAMES, blocks="layer1.0")
    assert shifted_layers(backbone) == ["layer1.0.conv1"]
    with pytest.raises(ValueError, match=r"blocks: expected a layer name .*, got 3"):
        tcm.add_temporal_shift(backbone, FRAMES, blocks=3)


class Chain(nn.Module):
    """A backbone whose forward runs its children in turn."""

    def __init__(self, *layers: nn.Module) -> None:
        super().__init__()
        for index, layer in enumerate(layers):
            self.add_module(f"step{index}", layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.children():
            x = layer(x)
        return x


@pytest.mark.parametrize("container", [nn.Sequential, Chain])
def test_a_backbone_that_runs_its_children_computes_what_the_resnet_computes(container):
    resnet = ResNet(Bottleneck, (1, 1, 1, 1), widths=(8, 8, 8, 8), stem_width=16)
    chained = container(*copy.deepcopy(resnet).children())  # conv1 .. layer4, layer2 is 5th
    stage = "5" if container is nn.Sequential else "step5"
    for backbone, after in ((resnet, "layer2"), (chained, stage)):
        tcm.add_tcm(tcm.add_temporal_shift(backbone, FRAMES), FRAMES, after=after, patch_size=3)
    tcm_layers(chained)[stage].load_state_dict(tcm_layers(resnet)["layer2"].state_dict())
    renamed = {
        k.replace(f"tcm_layers.{stage}.", "tcm_layers.layer2.") for k in chained.state_dict()
    }
    assert len(renamed) == len(resnet.state_dict())
    ours = VideoRecognizer(chained, 3).eval()
    reference = VideoRecognizer(resnet, 3).eval()
    ours.fc.load_state_dict(reference.fc.state_dict())
    clip = _clip(batch=2)
    with torch.no_grad():
        torch.testing.assert_close(ours(clip), reference(clip), rtol=0, atol=0)


class Twice(nn.Module):
    """Runs ``block`` twice; ``last`` is a second name of ``head.1``, found under it only."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, 2, 1)
        self.block = nn.Sequential(nn.Conv2d(8, 8, 3, 1, 1), nn.ReLU())
        self.head = nn.Sequential(nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU())
        self.last = self.head[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.block(self.stem(x))))


def test_tcm_after_a_layer_that_runs_twice_is_refused():
    with pytest.raises(ValueError, match=r"layer 'block' of Twice runs 2 times in one forward"):
        tcm.add_tcm(Twice(), FRAMES, after="block")


def test_a_layer_registered_under_two_names_is_found_under_either():
    backbone = tcm.add_tcm(Twice(), FRAMES, after="last", patch_size=3)
    assert list(tcm_layers(backbone)) == ["last"]
    assert tcm_layers(backbone)["last"].in_channels == 16
    with pytest.raises(ValueError, match=r"head\.1 already has a TCM layer after it"):
        tcm.add_tcm(backbone, FRAMES, after="head.1")
    with pytest.raises(ValueError, match="last already has a TCM layer after it"):
        tcm.add_tcm(Twice(), FRAMES, after=["head.1", "last"])


def test_plugins_for_another_num_segments_are_refused_naming_both():
    model = VideoRecognizer(PlainCNN(), 3, num_segments=FRAMES)
    with pytest.raises(ValueError, match=r"VideoRecognizer with num_segments=4; plug-ins for "):
        tcm.add_tcm(model.backbone, 2 * FRAMES, after="block1")
    with pytest.raises(ValueError, match=r"num_segments=4; plug-ins for num_segments=8"):
        tcm.add_temporal_shift(model.backbone, 2 * FRAMES, blocks=["block2"])
    shifted = tcm.add_temporal_shift(PlainCNN(), FRAMES, blocks=["block2"])
    with pytest.raises(ValueError, match=r"plug-ins were made for num_segments=4, not 8"):
        tcm.add_tcm(shifted, 2 * FRAMES, after="block1")
    tcm.add_tcm(model.backbone, FRAMES, after="block1", patch_size=3)  # the recognizer's T
    assert model(_clip()).shape == (2, 3)


@pytest.mark.parametrize(
    "build",
    [
        lambda: tcm.create_model("tsn_resnet10", num_classes=3, num_segments=FRAMES),
        lambda: tcm.create_model("tsm_resnet10", num_classes=3, num_segments=FRAMES),
        lambda: tcm.create_model("tsm_mobilenetv2", num_classes=3, num_segments=FRAMES),
        # a pre-hook on a user's own layer: torch.fx runs it, with the shift
        lambda: VideoRecognizer(tcm.add_temporal_shift(PlainCNN(), FRAMES, blocks="block2"), 3),
    ],
)
def test_torch_fx_traces_tsn_and_tsm_models_with_their_shifts_and_checks(build):
    model = build().eval()
    traced = torch.fx.symbolic_trace(model)
    clip = _clip(batch=2)
    with torch.no_grad():
        torch.testing.assert_close(traced(clip), model(clip), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"multiple of num_segments=4, got 6"):
        traced(_clip(batch=1, frames=6))


def test_tsm_models_script_with_their_shifts():
    for name in ("tsm_resnet10", "tsm_mobilenetv2"):
        model = tcm.create_model(name, num_classes=3, num_segments=FRAMES).eval()
        clip = _clip(batch=2)
        with torch.no_grad():
            torch.testing.assert_close(torch.jit.script(model)(clip), model(clip))


def test_a_named_sequence_starting_with_a_convolution_scripts_with_its_shift():
    backbone = tcm.add_temporal_shift(PlainCNN(), FRAMES, blocks=["block2"])
    assert isinstance(backbone.block2[0], ShiftedConv2d) and shifted_layers(backbone) == ["block2"]
    with pytest.raises(ValueError, match=r"already shifted: \['block2.0'\]"):
        tcm.add_temporal_shift(backbone, FRAMES, blocks=["block2.0"])
    model = VideoRecognizer(backbone, 3).eval()
    clip = _clip(batch=2)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.script(model)(clip), model(clip))
