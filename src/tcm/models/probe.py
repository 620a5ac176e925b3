"""Finding layers of an arbitrary backbone by name and measuring their outputs.

The plug-in functions (:mod:`tcm.models.plugin`) and the recognizer work on any ``nn.Module``
that maps a frame batch ``(N*T, 3, H, W)`` to feature maps. They learn what they need (the
channels of a layer's output, the features the backbone ends with) by running it once on a
small zero clip, never from channel counts typed by hand.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import torch
from torch import nn

PROBE_SIZE = 64
"""Side of the zero frames a probe runs (large enough for a backbone of stride 32)."""

_probing = False  # a plain global: torch.compile traces it (a ContextVar breaks the graph)


def probing() -> bool:
    """Whether a probe is running: plug-ins that keep their input's shape (the temporal
    shift, TCM) then pass it through, so a probe costs no correlation and runs on any device,
    ``meta`` included."""
    return _probing


def find_layer(backbone: nn.Module, name: str) -> nn.Module:
    """The sub-module ``name`` of ``backbone`` (as in ``named_modules()``, where a module
    registered under several names is listed under its first; any of them finds it).

    Raises:
        ValueError: naming the closest layer names when there is no such layer.
    """
    modules = dict(backbone.named_modules(remove_duplicate=False))
    if name and name in modules:
        return modules[name]
    near = difflib.get_close_matches(name, [n for n in modules if n], n=3, cutoff=0.5)
    hint = f"; closest: {', '.join(near)}" if near else ""
    raise ValueError(f"{type(backbone).__name__} has no layer named {name!r}{hint}")


def _device_and_dtype(module: nn.Module) -> tuple[torch.device, torch.dtype]:
    for tensor in (*module.parameters(), *module.buffers()):
        if tensor.is_floating_point():
            return tensor.device, tensor.dtype
    return torch.device("cpu"), torch.float32


@torch.no_grad()
def probe_outputs(
    backbone: nn.Module,
    names: Sequence[str],
    num_segments: int,
    size: int = PROBE_SIZE,
) -> dict[str, torch.Size]:
    """Shapes of the outputs of the layers ``names`` for one zero clip ``(T, 3, size, size)``.

    The backbone runs in eval mode (BatchNorm statistics untouched); the training flags of
    every module are restored. ``""`` names the backbone itself.

    Raises:
        ValueError: a layer that does not exist, that the forward pass never reaches or runs
            more than once (a layer plugged in after it would run as often), or whose output
            is not a tensor.
    """
    layers = {name: (find_layer(backbone, name) if name else backbone) for name in names}
    shapes: dict[str, torch.Size] = {}
    problems: dict[str, str] = {}
    runs = dict.fromkeys(layers, 0)

    def recorder(name: str):
        def record(_module, _inputs, output):
            runs[name] += 1
            if isinstance(output, torch.Tensor):
                shapes[name] = output.shape
            else:
                problems[name] = f"returns a {type(output).__name__}, not a tensor"

        return record

    handles = [layer.register_forward_hook(recorder(name)) for name, layer in layers.items()]
    modes = {module: module.training for module in backbone.modules()}
    device, dtype = _device_and_dtype(backbone)
    global _probing
    was_probing, _probing = _probing, True
    try:
        backbone.eval()
        backbone(torch.zeros(num_segments, 3, size, size, device=device, dtype=dtype))
    finally:
        _probing = was_probing
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training
    for name in layers:
        if name in problems:
            raise ValueError(f"layer {name!r} of {type(backbone).__name__} {problems[name]}")
        if name not in shapes:
            raise ValueError(
                f"layer {name!r} of {type(backbone).__name__} is not run by its forward()"
            )
        if runs[name] > 1:
            raise ValueError(
                f"layer {name!r} of {type(backbone).__name__} runs {runs[name]} times in one "
                "forward(): a layer plugged in after it would run as often; name a layer "
                "that runs once"
            )
    return shapes


def feature_channels(backbone: nn.Module, num_segments: int) -> int:
    """Channels of the feature maps ``backbone`` ends with: its ``num_features`` attribute if
    it has one, else measured on a zero clip.

    Raises:
        ValueError: when the backbone does not end with ``(N*T, C, h, w)`` maps.
    """
    declared = getattr(backbone, "num_features", None)
    if isinstance(declared, int):
        return declared
    shape = probe_outputs(backbone, [""], num_segments)[""]
    if len(shape) != 4:
        raise ValueError(
            f"{type(backbone).__name__} returns {tuple(shape)} for {num_segments} frames; "
            "a backbone must return feature maps (N*T, C, h, w)"
        )
    return shape[1]
