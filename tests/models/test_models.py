"""Every registered model: shapes, finiteness, gradients, tracing, input validation."""

import pytest
import torch

import tcm

ALL_MODELS = tcm.list_models()
FRAMES = 4


def _clip(batch: int = 2, frames: int = FRAMES, size: int = 32) -> torch.Tensor:
    return torch.randn(batch, frames, 3, size, size)


def test_the_published_families_are_registered():
    for family in ("tsn", "tsm", "tcm_tsn", "tcm_tsm"):
        for depth in (18, 34, 50, 101):
            assert f"{family}_resnet{depth}" in ALL_MODELS
        assert f"{family}_mobilenetv2" in ALL_MODELS


@pytest.mark.parametrize("name", ALL_MODELS)
def test_forward_backward(name):
    model = tcm.create_model(name, num_classes=5, num_segments=FRAMES)
    logits = model(_clip())
    assert logits.shape == (2, 5)
    assert torch.isfinite(logits).all()
    logits.logsumexp(dim=1).sum().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not no_grad, f"parameters without gradient: {no_grad}"


@pytest.mark.parametrize(
    "name",
    ["tsn_resnet18", "tsm_resnet18", "tcm_tsm_resnet18", "tcm_tsn_resnet10", "tcm_tsm_mobilenetv2"],
)
def test_jit_trace_matches_eager(name):
    model = tcm.create_model(name, num_classes=3, num_segments=FRAMES).eval()
    clip = _clip(batch=1)
    with torch.no_grad():
        traced = torch.jit.trace(model, clip, check_trace=False)
        torch.testing.assert_close(traced(clip), model(clip))


def test_several_clips_per_sample_average_their_logits():
    model = tcm.create_model("tcm_tsm_resnet10", num_classes=4, num_segments=FRAMES).eval()
    clips = _clip(batch=1, frames=2 * FRAMES)
    with torch.no_grad():
        both = model(clips)
        each = model(clips.view(2, FRAMES, 3, 32, 32)).mean(dim=0, keepdim=True)
    torch.testing.assert_close(both, each)


def test_tcm_at_several_stages_with_options():
    model = tcm.create_model(
        "tcm_tsm_resnet18",
        num_classes=3,
        num_segments=FRAMES,
        tcm_stages=("layer1", "layer3"),
        patch_size=5,
        temperature=50.0,
        dropout=0.0,
    )
    assert sorted(model.backbone.tcm_layers) == ["layer1", "layer3"]
    assert model.backbone.tcm_layers["layer1"].mtdm.patch_size == 5
    assert model(_clip()).shape == (2, 3)


@pytest.mark.parametrize(
    "clip, message",
    [
        (torch.randn(FRAMES, 3, 32, 32), r"expected a clip batch \(N, T, 3, H, W\)"),
        (torch.randn(1, FRAMES + 1, 3, 32, 32), "multiple of num_segments=4"),
        (torch.randn(1, FRAMES, 1, 32, 32), "expected 3 colour channels"),
    ],
)
def test_invalid_input_says_what_was_expected(clip, message):
    model = tcm.create_model("tcm_tsm_resnet10", num_classes=3, num_segments=FRAMES)
    with pytest.raises(ValueError, match=message):
        model(clip)


def test_invalid_options_are_refused():
    with pytest.raises(ValueError, match="unknown model"):
        tcm.create_model("tcm_resnet9000", num_classes=3)
    with pytest.raises(ValueError, match="does not take"):
        tcm.create_model("tsm_resnet18", num_classes=3, patch_size=5)
    with pytest.raises(ValueError, match="does not take"):
        tcm.create_model("tsn_resnet10", num_classes=3, tempos=("fast",))
    with pytest.raises(ValueError, match=r"no layer named 'layer5'; closest: layer4"):
        tcm.create_model("tcm_tsm_resnet18", num_classes=3, tcm_stages=("layer5",))


def test_tcm_ablations_build_and_run():
    clip = torch.randn(1, 4, 3, 32, 32)
    for options in ({"tempos": ("slow",)}, {"temporal_attention": False}):
        model = tcm.create_model(
            "tcm_tsn_resnet10", num_classes=3, num_segments=4, widths=(8, 8, 16, 16), **options
        )
        assert model(clip).shape == (1, 3)
