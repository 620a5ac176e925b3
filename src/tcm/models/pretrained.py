"""ImageNet initialisation of a backbone from a local file or a URL."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

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
    own = backbone.state_dict()
    missing = [k for k in own if k not in state and not k.startswith("tcm_layers.")]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in state
        if k in own and state[k].shape != own[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {missing[:10]}{' ...' if len(missing) > 10 else ''}")
    if unexpected:
        problems.append(
            f"unexpected keys {unexpected[:10]}{' ...' if len(unexpected) > 10 else ''}"
        )
    if mismatched:
        problems.append(f"shape mismatches {mismatched[:10]}")
    if problems:
        raise ValueError(f"{source}: does not fit the backbone: " + "; ".join(problems))
    backbone.load_state_dict(state, strict=False)
    logger.info("loaded ImageNet weights from %s (%d tensors)", source, len(state))
