"""TCM and the temporal shift as plug-ins for any 2D backbone.

A backbone is any ``nn.Module`` that maps a frame batch ``(N*T, 3, H, W)`` (the T frames of a
clip contiguous) to feature maps. Neither function changes the backbone's own parameter names:

- :func:`add_temporal_shift` shifts channels between frames at the input of the first
  convolution of every residual branch, where the TSM release puts it (the convolution becomes
  a :class:`ShiftedConv2d`; a layer of another kind named by the
  user gets a forward pre-hook);
- :func:`add_tcm` adds a :class:`~tcm.layers.TCM` after named layers (a forward hook that
  replaces the layer's output ``x`` with ``x + TAM(MTDM(x))``); the TCM layers live in the
  backbone's ``tcm_layers`` (``tcm_layers.layer2.mtdm...``), their channel count measured on
  the backbone. ``tcm_layers`` passes its input through unchanged when called, so a backbone
  whose forward runs all of its children (an ``nn.Sequential``) computes what it did.

Example:
    >>> from tcm.models import ResNet, Bottleneck, VideoRecognizer
    >>> backbone = ResNet(Bottleneck, (3, 4, 6, 3))
    >>> backbone = tcm.add_tcm(tcm.add_temporal_shift(backbone, num_segments=8),
    ...                        num_segments=8, after="layer2")
    >>> model = VideoRecognizer(backbone, num_classes=174, num_segments=8)
    >>> model(torch.randn(1, 8, 3, 224, 224)).shape
    torch.Size([1, 174])
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
import torch.fx
from torch import nn

from tcm.layers import TCM
from tcm.layers.temporal_shift import check_frames, temporal_shift
from tcm.models.probe import find_layer, probe_outputs, probing
from tcm.models.residual_blocks import branch_start, conv_holders, residual_blocks, skip_connection

torch.fx.wrap("check_frames")  # traced models keep the check

TCM_CONTAINER = "tcm_layers"
"""Attribute of the backbone holding the TCM layers (a :class:`TCMLayers`)."""


class TCMLayers(nn.ModuleDict):
    """The TCM layers of a backbone, by the name of the layer each follows (dots as
    underscores). The hooks of :func:`add_tcm` run them; calling the container itself returns
    its input: a backbone that runs every child in turn (``nn.Sequential``, a loop over
    ``children()``) passes through it unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class ShiftedConv2d(nn.Conv2d):
    """A convolution whose input ``(N*T, C, H, W)`` is temporally shifted first.

    Made from an ``nn.Conv2d`` in place by :meth:`shift_input_of` (its parameters and their
    names stay), so that the shift is part of the module's own forward: ``torch.jit.script``
    and ``torch.fx`` see it, as they see no hook on a convolution.
    """

    @classmethod
    def shift_input_of(
        cls, conv: nn.Conv2d, num_segments: int, fold_div: int, layer_name: str
    ) -> ShiftedConv2d:
        """Make ``conv`` (exactly an ``nn.Conv2d``) shift its input; returns it."""
        if type(conv) is not nn.Conv2d:
            raise TypeError(f"{layer_name}: expected an nn.Conv2d, got {type(conv).__name__}")
        conv.__class__ = cls
        conv.num_segments, conv.fold_div, conv.layer_name = num_segments, fold_div, layer_name
        return conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_frames(x, self.num_segments, "temporal shift before " + self.layer_name)
        shifted = temporal_shift(x, self.num_segments, self.fold_div)
        return self._conv_forward(shifted, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_segments={self.num_segments}, fold_div={self.fold_div}"


class ShiftInput:
    """Forward pre-hook: the temporal shift of a layer's input ``(N*T, C, H, W)`` (layers
    other than an ``nn.Conv2d``, which becomes a :class:`ShiftedConv2d` instead)."""

    def __init__(self, layer_name: str, num_segments: int, fold_div: int) -> None:
        self.layer_name = layer_name
        self.num_segments = num_segments
        self.fold_div = fold_div

    def __call__(self, _module: nn.Module, args: tuple) -> tuple:
        x = args[0]
        check_frames(x, self.num_segments, f"temporal shift before {self.layer_name}")
        return (temporal_shift(x, self.num_segments, self.fold_div), *args[1:])


class ApplyTCM:
    """Forward hook: a layer's output ``x`` ``(N*T, C, H, W)`` becomes ``tcm(x)``."""

    def __init__(self, layer_name: str, tcm: TCM) -> None:
        self.layer_name = layer_name
        self.tcm = tcm

    def __call__(self, _module: nn.Module, _inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        if not isinstance(output, (torch.Tensor, torch.fx.Proxy)):
            raise ValueError(f"TCM after {self.layer_name}: the layer returned no tensor")
        check_frames(output, self.tcm.num_segments, f"TCM after {self.layer_name}")
        return None if probing() else self.tcm(output)  # None: the output as it is


def _shifts(backbone: nn.Module):
    """``(layer name, num_segments)`` of every shifted layer, in model order."""
    for module in backbone.modules():
        if isinstance(module, ShiftedConv2d):
            yield module.layer_name, module.num_segments
        for hook in module._forward_pre_hooks.values():
            if isinstance(hook, ShiftInput):
                yield hook.layer_name, hook.num_segments


def _tcm_hooks(backbone: nn.Module):
    for module in backbone.modules():
        yield from (hook for hook in module._forward_hooks.values() if isinstance(hook, ApplyTCM))


def _is_shifted(layer: nn.Module) -> bool:
    hooks = layer._forward_pre_hooks.values()
    return isinstance(layer, ShiftedConv2d) or any(isinstance(h, ShiftInput) for h in hooks)


def shifted_layers(backbone: nn.Module) -> list[str]:
    """Names of the layers whose input is temporally shifted, in model order."""
    return [name for name, _ in _shifts(backbone)]


def tcm_layers(backbone: nn.Module) -> dict[str, TCM]:
    """The TCM layers plugged into ``backbone``: layer name it follows -> :class:`TCM`."""
    return {hook.layer_name: hook.tcm for hook in _tcm_hooks(backbone)}


def plugged_num_segments(backbone: nn.Module) -> int | None:
    """The ``num_segments`` the backbone's plug-ins were made for (``None`` without any)."""
    counts = {count for _, count in _shifts(backbone)}
    counts |= {hook.tcm.num_segments for hook in _tcm_hooks(backbone)}
    if len(counts) > 1:
        raise ValueError(f"plug-ins of this backbone disagree on num_segments: {sorted(counts)}")
    return counts.pop() if counts else None


RECOGNIZER_SEGMENTS = "_recognizer_num_segments"
"""Attribute a :class:`~tcm.models.VideoRecognizer` sets on its backbone: the frames per clip
it runs it with, which plug-ins added later must share."""


def _check_num_segments(backbone: nn.Module, num_segments: int) -> None:
    """Refuse plug-ins for another ``T`` than the backbone's plug-ins' or recognizer's: they
    would mix the frames of different clips."""
    plugged = plugged_num_segments(backbone)
    if plugged is not None and plugged != num_segments:
        raise ValueError(
            f"the backbone's plug-ins were made for num_segments={plugged}, not {num_segments}"
        )
    running = getattr(backbone, RECOGNIZER_SEGMENTS, None)
    if running is not None and running != num_segments:
        raise ValueError(
            f"the backbone runs in a VideoRecognizer with num_segments={running}; plug-ins "
            f"for num_segments={num_segments} would mix frames of different clips"
        )


# --- where the shift goes --------------------------------------------------------------------


def layer_names(value: str | Sequence[str], option: str) -> list[str]:
    """One layer name, or a sequence of them, as a list (a string is one name, never letters)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence) and all(isinstance(name, str) for name in value):
        return list(value)
    raise ValueError(f"{option}: expected a layer name or a list of layer names, got {value!r}")


def _shift_points(backbone: nn.Module, blocks: list[str] | None) -> dict[str, nn.Module]:
    """Layer name -> layer whose input is shifted (each layer once, whatever its aliases)."""
    if blocks is None:
        found = residual_blocks(backbone)
        if not found:
            holders = conv_holders(backbone)
            hint = f" (layers holding convolutions: {', '.join(holders)})" if holders else ""
            raise ValueError(
                f"{type(backbone).__name__} has no residual blocks to shift in; name the "
                f"layers to shift before with blocks=[...]{hint}"
            )
    else:
        found = [(name, find_layer(backbone, name)) for name in blocks]
    points: dict[str, nn.Module] = {}
    for name, module in found:
        if skip_connection(module) is not None:
            start = branch_start(module)
            if start is None:
                if blocks is None:
                    continue  # no skip connection here: the TSM release does not shift it
                raise ValueError(
                    f"{name} ({type(module).__name__}) has no residual branch to shift in: "
                    "no skip connection (a stride or a change of channels) or no expansion"
                )
            name, module = f"{name}.{start[0]}", start[1]
        elif inner := residual_blocks(module, f"{name}."):
            raise ValueError(
                f"{name} holds residual blocks; name them ({inner[0][0]}, ...) or leave "
                "blocks unset to shift in all of them"
            )
        module = _first_of_sequence(module)
        if all(module is not point for point in points.values()):
            points[name] = module  # else: an alias of a layer already in
    return points


def _first_of_sequence(layer: nn.Module) -> nn.Module:
    """The layer whose input is ``layer``'s: the first of a plain ``nn.Sequential``, in depth
    (where a convolution takes the shift into its own forward)."""
    while type(layer).forward is nn.Sequential.forward and len(layer) > 0:
        layer = layer[0]
    return layer


def add_temporal_shift(
    backbone: nn.Module,
    num_segments: int = 8,
    fold_div: int = 8,
    blocks: Sequence[str] | None = None,
) -> nn.Module:
    """Make a 2D backbone a TSM backbone: shift channels between frames in residual branches.

    At the input of the first convolution of every residual branch (the identity path is not
    shifted), channels ``[0, C/fold_div)`` of frame t take frame t+1's values and the next
    ``C/fold_div`` take frame t-1's (zeros at the clip's ends). ResNet blocks are shifted
    before ``conv1``, MobileNetV2 inverted residuals with a skip connection before ``conv.0``
    (the expansion), as in the TSM release; the residual blocks of MobileNetV3,
    EfficientNet, RegNet, ConvNeXt and GhostNet (torchvision's and timm's) before their
    branch's first convolution (:mod:`tcm.models.residual_blocks` says how blocks are
    recognised). A shifted ``nn.Conv2d`` becomes a
    :class:`ShiftedConv2d` (scripted and traced by ``torch.jit``
    and ``torch.fx`` with its shift); another layer shifts in a forward pre-hook. Parameter
    names do not change.

    Args:
        backbone: maps ``(N*T, 3, H, W)`` to feature maps; changed in place and returned.
        num_segments: frames per clip ``T``.
        fold_div: ``C // fold_div`` channels move each way.
        blocks: name(s) (as in ``named_modules()``) of residual blocks to shift in, or of the
            layers whose input to shift in architectures this function does not recognise;
            default: every residual block found.

    Raises:
        ValueError: an unknown name (with the closest names), a block without a residual
            branch, no residual block found (naming candidate layers), a layer already
            shifted, or ``num_segments`` other than that of the backbone's plug-ins or
            recognizer.
    """
    if num_segments < 1 or fold_div < 2:
        raise ValueError(
            f"need num_segments >= 1 and fold_div >= 2, got {num_segments}, {fold_div}"
        )
    _check_num_segments(backbone, num_segments)
    names = None if blocks is None else layer_names(blocks, "blocks")
    points = _shift_points(backbone, names)
    already = sorted(name for name, layer in points.items() if _is_shifted(layer))
    if already:
        raise ValueError(f"already shifted: {already}")
    for name, layer in points.items():
        if type(layer) is nn.Conv2d:
            ShiftedConv2d.shift_input_of(layer, num_segments, fold_div, name)
        else:
            layer.register_forward_pre_hook(ShiftInput(name, num_segments, fold_div))
    return backbone


# --- TCM -------------------------------------------------------------------------------------

TCM_OPTION_NAMES = tuple(
    p for p in inspect.signature(TCM).parameters if p not in ("in_channels", "num_segments")
)
"""Options of :class:`~tcm.layers.TCM` that ``add_tcm`` passes on (its signature's)."""


def _container(backbone: nn.Module) -> TCMLayers:
    container = getattr(backbone, TCM_CONTAINER, None)
    if container is None:
        container = TCMLayers()
        setattr(backbone, TCM_CONTAINER, container)
    elif not isinstance(container, TCMLayers):
        raise ValueError(f"{type(backbone).__name__}.{TCM_CONTAINER} exists and is no TCMLayers")
    return container


def add_tcm(
    backbone: nn.Module,
    num_segments: int = 8,
    after: str | Sequence[str] = "layer2",
    **tcm_options,
) -> nn.Module:
    """Insert TCM after one or more layers of a 2D backbone: ``x -> x + TAM(MTDM(x))``.

    Each layer's output channels are measured on a zero clip, never typed by hand. The TCM
    layers are registered in ``backbone.tcm_layers`` under the layer's name with dots as
    underscores (``features.6`` -> ``tcm_layers.features_6``).

    Args:
        backbone: maps ``(N*T, 3, H, W)`` to feature maps; changed in place and returned.
        num_segments: frames per clip ``T``.
        after: layer name(s) as in ``named_modules()``; each must output ``(N*T, C, h, w)``.
        **tcm_options: options of :class:`~tcm.layers.TCM` (``patch_size``,
            ``reduced_channels``, ``sigma``, ``temperature``, ``tempos``,
            ``temporal_attention``).

    Raises:
        ValueError: an unknown layer name (with the closest names), a layer whose output is
            not 4-D or that runs more than once in a forward pass, an unknown option, a layer
            that already has a TCM, or ``num_segments`` other than that of the backbone's
            plug-ins or recognizer.
    """
    names = layer_names(after, "after")
    unknown = sorted(set(tcm_options) - set(TCM_OPTION_NAMES))
    if unknown:
        raise ValueError(f"unknown TCM option(s) {unknown}; TCM takes {list(TCM_OPTION_NAMES)}")
    if not names:
        raise ValueError("add_tcm: name at least one layer in after=")
    _check_num_segments(backbone, num_segments)
    found = [(name, find_layer(backbone, name)) for name in names]
    for index, (name, layer) in enumerate(found):
        plugged = any(isinstance(hook, ApplyTCM) for hook in layer._forward_hooks.values())
        if plugged or any(layer is other for _, other in found[:index]):  # aliases included
            raise ValueError(f"{name} already has a TCM layer after it")
    layers = dict(found)
    shapes = probe_outputs(backbone, names, num_segments)
    container = _container(backbone)
    for name in names:
        if len(shapes[name]) != 4:
            raise ValueError(
                f"layer {name!r} outputs {tuple(shapes[name])}, not a feature map "
                "(N*T, C, H, W); TCM needs one"
            )
        key = name.replace(".", "_")
        if key in container:
            raise ValueError(f"{TCM_CONTAINER}.{key} exists already (another layer's TCM)")
        layer = TCM(shapes[name][1], num_segments, **tcm_options)
        container[key] = layer
        layers[name].register_forward_hook(ApplyTCM(name, layer))
    return backbone
