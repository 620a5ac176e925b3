"""ImageNet initialisation of a backbone from a local file or a URL."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from tcm.models.convert import check_state_dict

logger = logging.getLogger(__name__)

# Wrappers used by common training scripts around the state dict.
_STATE_DICT_WRAPPERS = ("state_dict", "model", "model_state")


def read_state_dict(source: str | os.PathLike, cache_dir: str | None = None) -> dict:
    """Read a state dict from a local file, or download it once from a URL (``http(s)://``, ``file://``).

    Downloads show a progress bar and are cached in ``cache_dir`` (default: torch hub's
    checkpoint folder, ``$TORCH_HOME/hub/checkpoints``).
    """
    source = str(source)
    if source.startswith(("http://", "https://", "file://")):
        state = torch.hub.load_state_dict_from_url(
            source, model_dir=cache_dir, map_location="cpu", progress=True, weights_only=True
        )
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such weights file")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise ValueError(f"{path}: not a readable weights file ({error})") from error
    for key in _STATE_DICT_WRAPPERS:
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping):
        raise ValueError(f"{source}: holds no state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_imagenet_backbone(backbone: nn.Module, source: str | os.PathLike) -> None:
    """Load ImageNet ResNet weights (common layout: ``conv1``, ``layer1.0.conv1``, ``fc``).

    The classifier ``fc.*`` is dropped; the backbone's TCM layers keep their initialisation.
    Any other missing or unexpected key, or a shape mismatch, is an error naming the keys.
    """
    state = {k: v for k, v in read_state_dict(source).items() if not k.startswith("fc.")}
    expected = {k: v for k, v in backbone.state_dict().items() if not k.startswith("tcm_layers.")}
    try:
        check_state_dict(state, expected)
    except ValueError as error:
        raise ValueError(f"{source}: does not fit the backbone: {error}") from error
    backbone.load_state_dict(state, strict=False)
    logger.info("loaded backbone weights from %s (%d tensors)", source, len(state))
