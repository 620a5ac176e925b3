"""Registered TSN, TSM and TCM models on ResNets and MobileNetV2."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence

from torch import nn

from tcm.models.assemble import SHIFT_OPTIONS, TCM_OPTIONS, assemble_recognizer
from tcm.models.mobilenetv2 import STRIDE8_LAYER, MobileNetV2
from tcm.models.recognizer import VideoRecognizer
from tcm.models.registry import register_model
from tcm.models.resnet import RESNET_LAYOUTS, ResNet


def _build(
    name: str,
    make_backbone: Callable[..., nn.Module],
    temporal_shift: bool,
    with_tcm: bool,
    default_stage: str,
    backbone_options: Sequence[str] = (),
    **kwargs,
) -> VideoRecognizer:
    """Build a registered variant, refusing options it does not know and options of parts it
    does not have, by name."""
    known = {"dropout", "pretrained", *backbone_options} | TCM_OPTIONS | SHIFT_OPTIONS
    refused = (set() if with_tcm else TCM_OPTIONS) | (set() if temporal_shift else SHIFT_OPTIONS)
    unknown = sorted(kwargs.keys() - known - {"num_classes", "num_segments"})
    if unknown:
        own = sorted(known - refused)
        near = difflib.get_close_matches(unknown[0], own, n=3, cutoff=0.6)
        hint = f" (did you mean {' or '.join(map(repr, near))}?)" if near else ""
        raise ValueError(
            f"{name} has no option {unknown[0]!r}{hint}; its options: {', '.join(own)}"
        )
    given = sorted(refused & kwargs.keys())
    if given:
        raise ValueError(f"{name} does not take the option(s) {given}")
    backbone = make_backbone(
        **{key: kwargs.pop(key) for key in backbone_options if key in kwargs}, init_weights=False
    )
    if with_tcm:
        kwargs.setdefault("tcm_stages", (default_stage,))
    return assemble_recognizer(
        backbone, temporal_shift=temporal_shift, init_after_plugins=True, **kwargs
    )


def _resnet(name: str, depth: int, temporal_shift: bool, with_tcm: bool, **kwargs):
    block, layers = RESNET_LAYOUTS[depth]

    def make_backbone(**options) -> ResNet:
        if "widths" in options:
            options["widths"] = tuple(options["widths"])
        return ResNet(block, layers, **options)

    return _build(
        name, make_backbone, temporal_shift, with_tcm, "layer2", ("widths", "stem_width"), **kwargs
    )


def _mobilenetv2(name: str, temporal_shift: bool, with_tcm: bool, **kwargs):
    return _build(name, MobileNetV2, temporal_shift, with_tcm, STRIDE8_LAYER, **kwargs)


@register_model
def tsn_mobilenetv2(**kwargs) -> VideoRecognizer:
    """TSN on MobileNetV2 (width 1.0, the TSM release's layout)."""
    return _mobilenetv2("tsn_mobilenetv2", temporal_shift=False, with_tcm=False, **kwargs)


@register_model
def tsm_mobilenetv2(**kwargs) -> VideoRecognizer:
    """TSM on MobileNetV2: shifted before the expansion of every inverted residual with a skip
    connection, as in the TSM release (its online demo's model)."""
    return _mobilenetv2("tsm_mobilenetv2", temporal_shift=True, with_tcm=False, **kwargs)


@register_model
def tcm_tsn_mobilenetv2(**kwargs) -> VideoRecognizer:
    """TSN + TCM on MobileNetV2, TCM after ``features.6`` (stride 8, 32 channels) by default."""
    return _mobilenetv2("tcm_tsn_mobilenetv2", temporal_shift=False, with_tcm=True, **kwargs)


@register_model
def tcm_tsm_mobilenetv2(**kwargs) -> VideoRecognizer:
    """TSM + TCM on MobileNetV2, TCM after ``features.6`` (stride 8, 32 channels) by default."""
    return _mobilenetv2("tcm_tsm_mobilenetv2", temporal_shift=True, with_tcm=True, **kwargs)


@register_model
def tsn_resnet10(**kwargs) -> VideoRecognizer:
    """TSN on a ResNet-10 (one basic block per stage), a small model for quick experiments."""
    return _resnet("tsn_resnet10", 10, temporal_shift=False, with_tcm=False, **kwargs)


@register_model
def tsn_resnet18(**kwargs) -> VideoRecognizer:
    """TSN on ResNet-18."""
    return _resnet("tsn_resnet18", 18, temporal_shift=False, with_tcm=False, **kwargs)


@register_model
def tsn_resnet34(**kwargs) -> VideoRecognizer:
    """TSN on ResNet-34."""
    return _resnet("tsn_resnet34", 34, temporal_shift=False, with_tcm=False, **kwargs)


@register_model
def tsn_resnet50(**kwargs) -> VideoRecognizer:
    """TSN on ResNet-50."""
    return _resnet("tsn_resnet50", 50, temporal_shift=False, with_tcm=False, **kwargs)


@register_model
def tsn_resnet101(**kwargs) -> VideoRecognizer:
    """TSN on ResNet-101."""
    return _resnet("tsn_resnet101", 101, temporal_shift=False, with_tcm=False, **kwargs)


@register_model
def tsm_resnet10(**kwargs) -> VideoRecognizer:
    """TSM on a ResNet-10, a small model for quick experiments."""
    return _resnet("tsm_resnet10", 10, temporal_shift=True, with_tcm=False, **kwargs)


@register_model
def tsm_resnet18(**kwargs) -> VideoRecognizer:
    """TSM on ResNet-18."""
    return _resnet("tsm_resnet18", 18, temporal_shift=True, with_tcm=False, **kwargs)


@register_model
def tsm_resnet34(**kwargs) -> VideoRecognizer:
    """TSM on ResNet-34."""
    return _resnet("tsm_resnet34", 34, temporal_shift=True, with_tcm=False, **kwargs)


@register_model
def tsm_resnet50(**kwargs) -> VideoRecognizer:
    """TSM on ResNet-50."""
    return _resnet("tsm_resnet50", 50, temporal_shift=True, with_tcm=False, **kwargs)


@register_model
def tsm_resnet101(**kwargs) -> VideoRecognizer:
    """TSM on ResNet-101."""
    return _resnet("tsm_resnet101", 101, temporal_shift=True, with_tcm=False, **kwargs)


@register_model
def tcm_tsn_resnet10(**kwargs) -> VideoRecognizer:
    """TSN + TCM on a ResNet-10, a small model for quick experiments."""
    return _resnet("tcm_tsn_resnet10", 10, temporal_shift=False, with_tcm=True, **kwargs)


@register_model
def tcm_tsn_resnet18(**kwargs) -> VideoRecognizer:
    """TSN + TCM (after layer2 by default) on ResNet-18."""
    return _resnet("tcm_tsn_resnet18", 18, temporal_shift=False, with_tcm=True, **kwargs)


@register_model
def tcm_tsn_resnet34(**kwargs) -> VideoRecognizer:
    """TSN + TCM on ResNet-34."""
    return _resnet("tcm_tsn_resnet34", 34, temporal_shift=False, with_tcm=True, **kwargs)


@register_model
def tcm_tsn_resnet50(**kwargs) -> VideoRecognizer:
    """TSN + TCM on ResNet-50."""
    return _resnet("tcm_tsn_resnet50", 50, temporal_shift=False, with_tcm=True, **kwargs)


@register_model
def tcm_tsn_resnet101(**kwargs) -> VideoRecognizer:
    """TSN + TCM on ResNet-101."""
    return _resnet("tcm_tsn_resnet101", 101, temporal_shift=False, with_tcm=True, **kwargs)


@register_model
def tcm_tsm_resnet10(**kwargs) -> VideoRecognizer:
    """TSM + TCM on a ResNet-10, a small model for quick experiments."""
    return _resnet("tcm_tsm_resnet10", 10, temporal_shift=True, with_tcm=True, **kwargs)


@register_model
def tcm_tsm_resnet18(**kwargs) -> VideoRecognizer:
    """TSM + TCM (after layer2 by default) on ResNet-18."""
    return _resnet("tcm_tsm_resnet18", 18, temporal_shift=True, with_tcm=True, **kwargs)


@register_model
def tcm_tsm_resnet34(**kwargs) -> VideoRecognizer:
    """TSM + TCM on ResNet-34."""
    return _resnet("tcm_tsm_resnet34", 34, temporal_shift=True, with_tcm=True, **kwargs)


@register_model
def tcm_tsm_resnet50(**kwargs) -> VideoRecognizer:
    """TSM + TCM on ResNet-50: the reference model."""
    return _resnet("tcm_tsm_resnet50", 50, temporal_shift=True, with_tcm=True, **kwargs)


@register_model
def tcm_tsm_resnet101(**kwargs) -> VideoRecognizer:
    """TSM + TCM on ResNet-101."""
    return _resnet("tcm_tsm_resnet101", 101, temporal_shift=True, with_tcm=True, **kwargs)
