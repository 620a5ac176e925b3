"""count_model: parameters and FLOPs of a recognizer, and the share of its TCM layers."""

from __future__ import annotations

import pytest

import tcm
from tcm.models.profile import count_model

WIDTHS = {"widths": [8, 16, 32, 64], "stem_width": 8}  # 64 features before the classifier
SIZE = 32


def build(name: str, num_classes: int = 3, num_segments: int = 2):
    kwargs = {**WIDTHS, "patch_size": 7} if name.startswith("tcm_") else WIDTHS
    return tcm.create_model(name, num_classes, num_segments, **kwargs)


@pytest.fixture(scope="module")
def tcm_model():
    return build("tcm_tsm_resnet10")


@pytest.fixture(scope="module")
def tsm_model():
    return build("tsm_resnet10")


def test_parameters_are_those_of_the_model(tcm_model):
    stats = count_model(tcm_model, frames=2, size=SIZE)
    assert stats["params"] == sum(p.numel() for p in tcm_model.parameters())
    tcm_layers = tcm_model.backbone.tcm_layers
    assert stats["tcm_params"] == sum(p.numel() for p in tcm_layers.parameters()) > 0
    assert 0 < stats["tcm_flops"] < stats["flops"]
    assert stats["tcm_flop_share"] == pytest.approx(stats["tcm_flops"] / stats["flops"])


def test_tcm_counts_are_what_tcm_adds_to_the_same_network(tcm_model, tsm_model):
    with_tcm = count_model(tcm_model, frames=2, size=SIZE)
    without = count_model(tsm_model, frames=2, size=SIZE)
    assert without["tcm_params"] == without["tcm_flops"] == without["tcm_flop_share"] == 0
    assert with_tcm["params"] - without["params"] == with_tcm["tcm_params"]
    assert with_tcm["flops"] - without["flops"] == with_tcm["tcm_flops"]


def test_classifier_counts_by_hand(tsm_model):
    # The head is a Linear(64, K) applied to every frame: (64 + 1) * K parameters and
    # 2 * 64 * K FLOPs per frame (one multiply-add is two FLOPs); adding 2 classes adds that.
    frames, features, extra = 2, WIDTHS["widths"][-1], 2
    more = build("tsm_resnet10", num_classes=3 + extra)
    small = count_model(tsm_model, frames=frames, size=SIZE)
    large = count_model(more, frames=frames, size=SIZE)
    assert large["params"] - small["params"] == (features + 1) * extra
    assert large["flops"] - small["flops"] == 2 * features * extra * frames


@pytest.mark.parametrize("name", ["tcm_tsm_resnet10", "tsm_resnet10"])
def test_flops_grow_linearly_with_frames(name, tcm_model, tsm_model):
    model = tcm_model if name.startswith("tcm_") else tsm_model
    one = count_model(model, frames=2, size=SIZE)  # one clip of num_segments=2 frames
    three = count_model(model, frames=6, size=SIZE)  # three clips
    assert three["flops"] == 3 * one["flops"] and three["tcm_flops"] == 3 * one["tcm_flops"]
    assert three["params"] == one["params"]
