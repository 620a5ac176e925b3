"""A video recognizer from a 2D backbone: the plug-ins, the initialisation, the head."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from tcm.models.plugin import TCM_OPTION_NAMES, add_tcm, add_temporal_shift, layer_names
from tcm.models.pretrained import load_backbone_weights
from tcm.models.recognizer import VideoRecognizer

# Options of a model that only a TCM variant takes: where TCM goes, and TCM's own.
TCM_OPTIONS = frozenset({"tcm_stages", *TCM_OPTION_NAMES})
SHIFT_OPTIONS = frozenset({"shift_fold_div", "shift_blocks"})


def assemble_recognizer(
    backbone: nn.Module,
    *,
    num_classes: int,
    num_segments: int,
    temporal_shift: bool,
    tcm_stages: str | Sequence[str] = (),
    dropout: float = 0.5,
    pretrained: str | None = None,
    shift_fold_div: int = 8,
    shift_blocks: str | Sequence[str] | None = None,
    init_after_plugins: bool = False,
    **tcm_options,
) -> VideoRecognizer:
    """Plug the temporal shift and TCM into a 2D backbone and put the head on it.

    With ``init_after_plugins`` the backbone (built with ``init_weights=False``) is initialised
    by its ``init_weights()`` after the plug-ins, so that TCM's convolutions follow the
    backbone's scheme (the registered models); ``pretrained`` weights are loaded last
    (:func:`~tcm.models.pretrained.load_backbone_weights`). ``tcm_stages`` and ``shift_blocks``
    are one layer name or a list of them.

    Raises:
        ValueError: TCM options without ``tcm_stages``, or any error of the plug-ins.
    """
    if tcm_options and not tcm_stages:
        raise ValueError(f"TCM option(s) {sorted(tcm_options)} given, but no tcm_stages")
    if temporal_shift:
        blocks = None if shift_blocks is None else layer_names(shift_blocks, "shift_blocks")
        add_temporal_shift(backbone, num_segments, shift_fold_div, blocks)
    if tcm_stages:
        add_tcm(backbone, num_segments, after=layer_names(tcm_stages, "tcm_stages"), **tcm_options)
    if init_after_plugins:
        backbone.init_weights()
    if pretrained:
        load_backbone_weights(backbone, pretrained)
    return VideoRecognizer(backbone, num_classes, num_segments=num_segments, dropout=dropout)
