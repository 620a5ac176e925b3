"""Where the temporal shift goes: the residual blocks of a backbone and their branches.

TSM shifts the input of the first convolution of every residual branch, leaving the identity
path alone. A block is recognised by its structure, not by its class, so that the common
residual blocks of other libraries are found as well as this project's:

- a block that says whether it adds its input: a boolean ``use_res_connect`` (MobileNetV2/V3
  and EfficientNet inverted residuals), ``has_skip`` or ``has_residual``;
- a ResNet basic block or bottleneck: a convolution ``conv1`` and a ``downsample`` attribute;
- a block with a part only residual blocks have: ``shortcut``, ``drop_path`` or
  ``stochastic_depth`` (ConvNeXt, GhostNet and RegNet blocks);
- a block of a class named in :data:`RESIDUAL_CLASS_NAMES` (RegNet's ``x + f(x)`` block).

The branch's first convolution is the first ``nn.Conv2d`` in the block's own order outside its
shortcut parts (:data:`SHORTCUT_PARTS`).
"""

from __future__ import annotations

from torch import nn

SKIP_FLAGS = ("use_res_connect", "has_skip", "has_residual")
"""Boolean attributes of a block saying whether it adds its input to its branch's output."""

RESIDUAL_PARTS = ("shortcut", "drop_path", "stochastic_depth")
"""Sub-modules that only a residual block has: such a block always adds its input (or a
projection of it)."""

RESIDUAL_CLASS_NAMES = frozenset({"ResBottleneckBlock"})
"""Residual blocks recognisable by class name only (torchvision's RegNet block)."""

SHORTCUT_PARTS = frozenset({"downsample", "shortcut", "proj", "skip"})
"""Children of a block on its identity path: never shifted."""


def first_conv(module: nn.Module) -> tuple[str, nn.Conv2d] | None:
    """``(name, conv)`` of the first ``nn.Conv2d`` in ``module`` (itself included, name
    ``""``), or ``None``."""
    return next(((n, m) for n, m in module.named_modules() if isinstance(m, nn.Conv2d)), None)


def _is_resnet_block(module: nn.Module) -> bool:
    return isinstance(getattr(module, "conv1", None), nn.Conv2d) and hasattr(module, "downsample")


def skip_connection(module: nn.Module) -> bool | None:
    """``True`` for a residual block that adds its input (or a projection of it) to its
    branch, ``False`` for one whose skip connection is off (a stride or a change of channels),
    ``None`` for a module that is no residual block."""
    for flag in SKIP_FLAGS:
        value = getattr(module, flag, None)
        if isinstance(value, bool):
            return value
    if _is_resnet_block(module) or type(module).__name__ in RESIDUAL_CLASS_NAMES:
        return True
    if any(isinstance(getattr(module, part, None), nn.Module) for part in RESIDUAL_PARTS):
        return True
    return None


def branch_start(block: nn.Module) -> tuple[str, nn.Conv2d] | None:
    """``(name in the block, conv)`` of the first convolution of a residual block's branch.

    ``None`` when the skip connection is off, when the branch has no convolution, or (the TSM
    release's rule for MobileNetV2) for an inverted residual in MobileNetV2's layout (a
    ``conv`` sequence) that does not start with a 1x1 expansion.
    """
    if not skip_connection(block):
        return None
    if _is_resnet_block(block):
        return "conv1", block.conv1
    if isinstance(getattr(block, "use_res_connect", None), bool) and isinstance(
        getattr(block, "conv", None), nn.Sequential
    ):
        found = first_conv(block.conv)
        if found is None or found[1].kernel_size != (1, 1) or found[1].groups != 1:
            return None
        return f"conv.{found[0]}".rstrip("."), found[1]
    for name, child in block.named_children():
        if name not in SHORTCUT_PARTS and (found := first_conv(child)) is not None:
            return f"{name}.{found[0]}".rstrip("."), found[1]
    return None


def residual_blocks(module: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """``(name, block)`` of the residual blocks inside ``module`` (not ``module`` itself), in
    model order; the inside of a block found is not searched."""
    found = []
    for name, child in module.named_children():
        if skip_connection(child) is not None:
            found.append((prefix + name, child))
        else:
            found += residual_blocks(child, f"{prefix}{name}.")
    return found


def conv_holders(module: nn.Module, limit: int = 8) -> list[str]:
    """Names of up to ``limit`` children of ``module`` holding a convolution: candidates to
    shift before when no residual block is found."""
    return [name for name, child in module.named_children() if first_conv(child)][:limit]
