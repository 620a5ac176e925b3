"""Conversion of the TCM and TSM releases' checkpoints to this project's parameter names.

Both releases save a DataParallel-wrapped state dict: ``module.base_model.*`` (the 2D
backbone) and ``module.new_fc.*`` (the classifier). The TCM release adds its TCM layer as
``base_model.tcm_layer.*`` (after layer2); the TSM release wraps every shifted convolution in a
module whose only child is ``net`` (``layer1.0.conv1.net.weight``).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

# Reference prefix -> ours. The reference places its single TCM layer after layer2.
_PREFIXES = (
    ("base_model.tcm_layer.", "backbone.tcm_layers.layer2."),
    ("base_model.", "backbone."),
    ("new_fc.", "fc."),
)


def _rename(key: str) -> str | None:
    key = key.removeprefix("module.")
    for old, new in _PREFIXES:
        if key.startswith(old):
            return new + key[len(old) :].replace(".net.", ".")
    return None


def _state_of(checkpoint: Mapping) -> Mapping[str, torch.Tensor]:
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, Mapping) else None
    if not isinstance(state, Mapping) or not state:
        raise ValueError("checkpoint holds no state dict")
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(
                f"state dict entry {key!r} is a {type(value).__name__}, not a tensor: "
                "not a weights file"
            )
    return state


def release_shifted_layers(checkpoint: Mapping) -> list[str]:
    """Backbone layers a TSM release checkpoint shifts the input of (its ``.net.`` wrappers),
    in file order: ``["layer1.0.conv1", ...]``."""
    layers = []
    for key in _state_of(checkpoint):
        key = key.removeprefix("module.").removeprefix("base_model.")
        if ".net." in key and key.split(".net.")[0] not in layers:
            layers.append(key.split(".net.")[0])
    return layers


def release_model_name(checkpoint: Mapping) -> str:
    """The tcm model a TCM or TSM release checkpoint holds, told by its keys.

    ``tcm_tsm_resnet50`` for the TCM release; for the TSM release ``tsm_`` (shifted convs) or
    ``tsn_`` (none), then ``resnet50`` or ``mobilenetv2``.

    Raises:
        ValueError: a layout that is neither, or a backbone without a tcm counterpart.
    """
    keys = [k.removeprefix("module.") for k in _state_of(checkpoint)]
    if not any(k.startswith("base_model.") for k in keys):
        raise ValueError("not a TSM or TCM release checkpoint (no base_model.* keys)")
    if any(k.startswith("base_model.tcm_layer.") for k in keys):
        return "tcm_tsm_resnet50"
    variant = "tsm" if release_shifted_layers(checkpoint) else "tsn"
    if any(k.startswith("base_model.features.") for k in keys):
        return f"{variant}_mobilenetv2"
    blocks = {k.split(".")[2] for k in keys if k.startswith("base_model.layer3.")}
    if len(blocks) == 6 and any(k.startswith("base_model.layer1.0.conv3") for k in keys):
        return f"{variant}_resnet50"
    raise ValueError(
        f"a release backbone with {len(blocks)} blocks in layer3: only ResNet-50 and "
        "MobileNetV2 are converted (the release's ResNet-101 shifts every other block)"
    )


def convert_official_checkpoint(
    checkpoint: Mapping, expected_keys: Mapping[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """Map a TCM or TSM release checkpoint onto :func:`tcm.create_model`'s names.

    Args:
        checkpoint: the loaded file: ``{"state_dict": ..., "epoch": ..., "best_prec1": ...}``
            (``"arch"`` too, from the TSM release) or a bare state dict, keys with or
            without the ``module.`` prefix.
        expected_keys: the target model's ``state_dict()``; when given, missing, unknown and
            mis-shaped keys are reported together.

    Returns:
        A state dict that loads strictly into ``create_model(release_model_name(checkpoint),
            num_classes=K, num_segments=T)``, e.g. ``tcm_tsm_resnet50`` (the TCM release's head,
            a ``[K, C, 1]`` Conv1d, becomes a Linear) or ``tsm_mobilenetv2``.

    Raises:
        ValueError: naming every key that has no counterpart.

    Example:
        >>> raw = torch.load("tcm_sthv1_8f.pth.tar", map_location="cpu", weights_only=True)
        >>> model = tcm.create_model("tcm_tsm_resnet50", num_classes=174)
        >>> model.load_state_dict(convert_official_checkpoint(raw, model.state_dict()))
    """
    state = _state_of(checkpoint)
    converted: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        new_key = _rename(key)
        if new_key is None:
            unknown.append(key)
            continue
        if new_key == "fc.weight" and value.dim() == 3:
            value = value.squeeze(-1)  # Conv1d (K, C, 1) -> Linear (K, C)
        converted[new_key] = value
    if unknown:
        raise ValueError(f"unknown checkpoint keys (no counterpart in tcm models): {unknown}")
    if expected_keys is not None:
        check_state_dict(converted, expected_keys)
    return converted


#: Keys named per kind of problem by :func:`check_state_dict`.
SHOWN_KEYS = 3


def check_state_dict(
    state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]
) -> None:
    """Raise a ``ValueError`` naming missing, unexpected and mis-shaped keys, if any: how many
    of each, and the first :data:`SHOWN_KEYS` of them (a whole other model has thousands)."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {tuple(state[k].shape)} (model {tuple(expected[k].shape)})"
        for k in state
        if k in expected and state[k].shape != expected[k].shape
    ]
    problems = []
    for what, keys in (
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("shape mismatches", mismatched),
    ):
        if keys:
            more = f" and {len(keys) - SHOWN_KEYS} more" if len(keys) > SHOWN_KEYS else ""
            problems.append(f"{what}: {keys[:SHOWN_KEYS]}{more}")
    if problems:
        raise ValueError("state dict does not fit the model; " + "; ".join(problems))
