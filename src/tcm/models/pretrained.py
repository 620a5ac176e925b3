"""Backbone initialisation from ImageNet weights or a TSM/TCM release checkpoint (a local
file or a URL)."""

from __future__ import annotations

import logging
import os
import urllib.error
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from tcm.checkpoint import FORMAT_NAME, not_saved_by_torch
from tcm.models.convert import check_state_dict
from tcm.models.mobilenetv2 import is_torchvision_layout, torchvision_to_release_layout
from tcm.models.plugin import TCM_CONTAINER

logger = logging.getLogger(__name__)

# Wrappers used by common training scripts around the state dict.
_STATE_DICT_WRAPPERS = ("state_dict", "model", "model_state")
# Top-level names of classifiers in weights files: ImageNet heads, the releases' new heads,
# and the TCM layers of the TCM release and of tcm's own checkpoints (TCM starts fresh from
# pretrained weights).
_NOT_BACKBONE = ("fc", "classifier", "new_fc", "tcm_layer", TCM_CONTAINER)


def read_state_dict(source: str | os.PathLike, cache_dir: str | None = None) -> dict:
    """Read a state dict from a local file, or download it once from a URL (``http(s)://``, ``file://``).

    Downloads show a progress bar and are cached in ``cache_dir`` (default: torch hub's
    checkpoint folder, ``$TORCH_HOME/hub/checkpoints``). A tcm checkpoint gives its model's
    weights (``backbone.`` removed from their names).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a folder, a file ``torch.save`` did not write, a download that failed.
    """
    source = str(source)
    if source.startswith(("http://", "https://", "file://")):
        state = _download(source, cache_dir)
    else:
        state = _read_file(Path(source).expanduser())
    if isinstance(state, Mapping) and state.get("format") == FORMAT_NAME:
        state = {k.removeprefix("backbone."): v for k, v in state["state_dict"].items()}
    for key in _STATE_DICT_WRAPPERS:
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping):
        raise ValueError(f"{source}: holds no state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _download(url: str, cache_dir: str | None) -> object:
    try:
        return torch.hub.load_state_dict_from_url(
            url, model_dir=cache_dir, map_location="cpu", progress=True, weights_only=True
        )
    except (urllib.error.URLError, OSError) as error:  # HTTPError is a URLError
        reason = getattr(error, "reason", None) or error
        raise ValueError(
            f"{url}: cannot download ({reason}); download the file where the network allows "
            "it and give its local path"
        ) from None


def _read_file(path: Path) -> object:
    if path.is_dir():
        raise ValueError(f"{path}: a folder, not a weights file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file")
    not_saved = not_saved_by_torch(path)
    if not_saved:
        raise ValueError(f"{path}: not a weights file ({not_saved})")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for damaged or foreign files
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"{path}: not a readable weights file ({first})") from None


def backbone_state(state: Mapping[str, torch.Tensor]) -> tuple[dict, list[str]]:
    """The backbone tensors of a weights file, in this project's names, and the keys left out.

    Understood: an ImageNet classifier's state dict (ResNet ``conv1``, ``layer1.0.conv1``, ...,
    ``fc``; MobileNetV2 in the TSM release's layout or torchvision's, ``classifier``) and a
    TSM or TCM release checkpoint (``base_model.`` with ``.net.`` around shifted convs,
    ``new_fc``). Classifiers and the TCM release's own TCM layer are left out.
    """
    if any(key.startswith("base_model.") for key in state):
        state = release_backbone_state(state)
    if is_torchvision_layout(state):
        state = torchvision_to_release_layout(state)
    kept, left_out = {}, []
    for key, value in state.items():
        if key.split(".", 1)[0] in _NOT_BACKBONE:
            left_out.append(key)
        else:
            kept[key] = value
    return kept, left_out


def load_backbone_weights(backbone: nn.Module, source: str | os.PathLike) -> None:
    """Initialise a backbone strictly from ImageNet weights or a TSM/TCM release checkpoint.

    Every backbone tensor must come from the file (TCM layers plugged in, ``tcm_layers.*``,
    keep their initialisation): a missing, unexpected or mis-shaped key is an error naming the
    keys. The log says how many tensors came from the file, which are new, and what in the
    file was not used (its classifier).
    """
    state, left_out = backbone_state(read_state_dict(source))
    own = backbone.state_dict()
    expected = {k: v for k, v in own.items() if not k.startswith(f"{TCM_CONTAINER}.")}
    try:
        check_state_dict(state, expected)
    except ValueError as error:
        raise ValueError(f"{source}: does not fit the backbone: {error}") from error
    backbone.load_state_dict(state, strict=False)
    new = sorted({".".join(k.split(".")[:2]) for k in own.keys() - expected.keys()})
    logger.info(
        "backbone initialised from %s: %d tensors from the file; new: %s; not used: %s",
        source,
        len(state),
        ", ".join(new) or "none",
        _summary(left_out),
    )


def _summary(keys: list[str], shown: int = 4) -> str:
    if not keys:
        return "none"
    more = f" and {len(keys) - shown} more" if len(keys) > shown else ""
    return ", ".join(keys[:shown]) + more


def release_backbone_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``base_model.X`` of a TSM or TCM release state dict as ``X`` (``.net.`` removed), the
    rest (``new_fc``) under its own name; keys without ``module.``."""
    renamed = {}
    for key, value in state.items():
        if key.startswith("base_model."):
            key = key.removeprefix("base_model.").replace(".net.", ".")
        renamed[key] = value
    return renamed
