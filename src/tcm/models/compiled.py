"""``torch.compile`` for models whose plug-ins are hooks."""

from __future__ import annotations

import torch
import torch._dynamo.config
from torch import nn


def compile_model(model: nn.Module, *, in_place: bool = False) -> nn.Module:
    """``torch.compile`` (inductor, static shapes) that keeps every model's TCM in its graph.

    :func:`~tcm.models.add_tcm` runs TCM as a forward hook. By default dynamo does not guard
    on module hooks (``torch._dynamo.config.skip_nnmodule_hook_guards``), so of two models of
    one class compiled in one process (a TSM, then a TSM + TCM), the second reuses the first's
    graph and runs without its TCM. This turns those guards on for the process, then compiles.

    Args:
        model: any module; with TCM or the temporal shift as plug-ins or not.
        in_place: compile ``model``'s own calls (``nn.Module.compile``; its names, state dict
            and hooks stay) and return it, instead of returning a compiled wrapper.

    Returns:
        The compiled module: ``model`` itself when ``in_place``.
    """
    torch._dynamo.config.skip_nnmodule_hook_guards = False
    if in_place:
        model.compile(dynamic=False)
        return model
    return torch.compile(model, dynamic=False)
