"""Registered TSN, TSM and TCM ResNets."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Sequence

from tcm.models.pretrained import load_imagenet_backbone
from tcm.models.recognizer import VideoRecognizer
from tcm.models.registry import register_model
from tcm.models.resnet import RESNET_LAYOUTS, ResNet, TCMOptions


def _create_recognizer(
    depth: int,
    *,
    num_classes: int,
    num_segments: int,
    temporal_shift: bool,
    with_tcm: bool,
    dropout: float = 0.5,
    pretrained: str | None = None,
    tcm_stages: Sequence[str] = ("layer2",),
    patch_size: int = 15,
    reduced_channels: int = 64,
    sigma: float = 5.0,
    temperature: float = 100.0,
    tempos: Sequence[str] = ("fast", "slow"),
    temporal_attention: bool = True,
    shift_fold_div: int = 8,
    widths: Sequence[int] = (64, 128, 256, 512),
    stem_width: int = 64,
) -> VideoRecognizer:
    block, layers = RESNET_LAYOUTS[depth]
    tcm = None
    if with_tcm:
        tcm = TCMOptions(
            stages=tuple(tcm_stages),
            patch_size=patch_size,
            reduced_channels=reduced_channels,
            sigma=sigma,
            temperature=temperature,
            tempos=tuple(tempos),
            temporal_attention=temporal_attention,
        )
    backbone = ResNet(
        block,
        layers,
        num_segments,
        temporal_shift=temporal_shift,
        shift_fold_div=shift_fold_div,
        tcm=tcm,
        widths=tuple(widths),
        stem_width=stem_width,
    )
    if pretrained:
        load_imagenet_backbone(backbone, pretrained)
    return VideoRecognizer(backbone, num_classes, dropout=dropout)


_TCM_OPTIONS = frozenset(
    {
        "tcm_stages",
        "patch_size",
        "reduced_channels",
        "sigma",
        "temperature",
        "tempos",
        "temporal_attention",
    }
)
_SHIFT_OPTIONS = frozenset({"shift_fold_div"})


# Every option a builder takes: the keyword arguments of _create_recognizer a caller sets.
_OPTIONS = frozenset(inspect.signature(_create_recognizer).parameters) - {
    "depth",
    "num_classes",
    "num_segments",
    "temporal_shift",
    "with_tcm",
}


def _build(name: str, depth: int, temporal_shift: bool, with_tcm: bool, **kwargs):
    """Build a variant, refusing options it does not know and options of parts it does not
    have, by name."""
    refused = (set() if with_tcm else _TCM_OPTIONS) | (set() if temporal_shift else _SHIFT_OPTIONS)
    unknown = sorted(kwargs.keys() - _OPTIONS - {"num_classes", "num_segments"})
    if unknown:
        own = sorted(_OPTIONS - refused)
        near = difflib.get_close_matches(unknown[0], own, n=3, cutoff=0.6)
        hint = f" (did you mean {' or '.join(map(repr, near))}?)" if near else ""
        raise ValueError(
            f"{name} has no option {unknown[0]!r}{hint}; its options: {', '.join(own)}"
        )
    given = sorted(refused & kwargs.keys())
    if given:
        raise ValueError(f"{name} does not take the option(s) {given}")
    return _create_recognizer(depth, temporal_shift=temporal_shift, with_tcm=with_tcm, **kwargs)


@register_model
def tsn_resnet10(**kwargs) -> VideoRecognizer:
    """TSN on a ResNet-10 (one basic block per stage), a small model for quick experiments."""
    return _build("tsn_resnet10", 10, temporal_shift=False, with_tcm=False, **kwargs)


@register_model
def tsn_resnet18(**kwargs) -> VideoRecognizer:
    """TSN on ResNet-18."""
    return _build("tsn_resnet18", 18, temporal_shift=False, with_tcm=False, **kwargs)


@register_model
def tsn_resnet34(**kwargs) -> VideoRecognizer:
    """TSN on ResNet-34."""
    return _build("tsn_resnet34", 34, temporal_shift=False, with_tcm=False, **kwargs)


@register_model
def tsn_resnet50(**kwargs) -> VideoRecognizer:
    """TSN on ResNet-50."""
    return _build("tsn_resnet50", 50, temporal_shift=False, with_tcm=False, **kwargs)


@register_model
def tsn_resnet101(**kwargs) -> VideoRecognizer:
    """TSN on ResNet-101."""
    return _build("tsn_resnet101", 101, temporal_shift=False, with_tcm=False, **kwargs)


@register_model
def tsm_resnet10(**kwargs) -> VideoRecognizer:
    """TSM on a ResNet-10, a small model for quick experiments."""
    return _build("tsm_resnet10", 10, temporal_shift=True, with_tcm=False, **kwargs)


@register_model
def tsm_resnet18(**kwargs) -> VideoRecognizer:
    """TSM on ResNet-18."""
    return _build("tsm_resnet18", 18, temporal_shift=True, with_tcm=False, **kwargs)


@register_model
def tsm_resnet34(**kwargs) -> VideoRecognizer:
    """TSM on ResNet-34."""
    return _build("tsm_resnet34", 34, temporal_shift=True, with_tcm=False, **kwargs)


@register_model
def tsm_resnet50(**kwargs) -> VideoRecognizer:
    """TSM on ResNet-50."""
    return _build("tsm_resnet50", 50, temporal_shift=True, with_tcm=False, **kwargs)


@register_model
def tsm_resnet101(**kwargs) -> VideoRecognizer:
    """TSM on ResNet-101."""
    return _build("tsm_resnet101", 101, temporal_shift=True, with_tcm=False, **kwargs)


@register_model
def tcm_tsn_resnet10(**kwargs) -> VideoRecognizer:
    """TSN + TCM on a ResNet-10, a small model for quick experiments."""
    return _build("tcm_tsn_resnet10", 10, temporal_shift=False, with_tcm=True, **kwargs)


@register_model
def tcm_tsn_resnet18(**kwargs) -> VideoRecognizer:
    """TSN + TCM (after layer2 by default) on ResNet-18."""
    return _build("tcm_tsn_resnet18", 18, temporal_shift=False, with_tcm=True, **kwargs)


@register_model
def tcm_tsn_resnet34(**kwargs) -> VideoRecognizer:
    """TSN + TCM on ResNet-34."""
    return _build("tcm_tsn_resnet34", 34, temporal_shift=False, with_tcm=True, **kwargs)


@register_model
def tcm_tsn_resnet50(**kwargs) -> VideoRecognizer:
    """TSN + TCM on ResNet-50."""
    return _build("tcm_tsn_resnet50", 50, temporal_shift=False, with_tcm=True, **kwargs)


@register_model
def tcm_tsn_resnet101(**kwargs) -> VideoRecognizer:
    """TSN + TCM on ResNet-101."""
    return _build("tcm_tsn_resnet101", 101, temporal_shift=False, with_tcm=True, **kwargs)


@register_model
def tcm_tsm_resnet10(**kwargs) -> VideoRecognizer:
    """TSM + TCM on a ResNet-10, a small model for quick experiments."""
    return _build("tcm_tsm_resnet10", 10, temporal_shift=True, with_tcm=True, **kwargs)


@register_model
def tcm_tsm_resnet18(**kwargs) -> VideoRecognizer:
    """TSM + TCM (after layer2 by default) on ResNet-18."""
    return _build("tcm_tsm_resnet18", 18, temporal_shift=True, with_tcm=True, **kwargs)


@register_model
def tcm_tsm_resnet34(**kwargs) -> VideoRecognizer:
    """TSM + TCM on ResNet-34."""
    return _build("tcm_tsm_resnet34", 34, temporal_shift=True, with_tcm=True, **kwargs)


@register_model
def tcm_tsm_resnet50(**kwargs) -> VideoRecognizer:
    """TSM + TCM on ResNet-50: the reference model."""
    return _build("tcm_tsm_resnet50", 50, temporal_shift=True, with_tcm=True, **kwargs)


@register_model
def tcm_tsm_resnet101(**kwargs) -> VideoRecognizer:
    """TSM + TCM on ResNet-101."""
    return _build("tcm_tsm_resnet101", 101, temporal_shift=True, with_tcm=True, **kwargs)
