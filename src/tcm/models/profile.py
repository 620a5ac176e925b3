"""Parameter and FLOP counts of a recognizer."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from tcm.models.plugin import tcm_layers
from tcm.models.recognizer import VideoRecognizer


def count_model(model: VideoRecognizer, frames: int, size: int) -> dict[str, float]:
    """Parameters and forward FLOPs for one clip ``(1, frames, 3, size, size)``.

    FLOPs are those ``torch.utils.flop_counter`` attributes to convolutions and matrix products
    (1 multiply-add = 2 FLOPs); element-wise work is not counted.

    Returns:
        ``params``, ``tcm_params``, ``flops``, ``tcm_flops``, ``tcm_flop_share``.
    """
    tcm_modules = set(tcm_layers(model.backbone).values())
    tcm_names = tuple(name for name, m in model.named_modules() if m in tcm_modules)
    params = sum(p.numel() for p in model.parameters())
    tcm_params = sum(p.numel() for m in tcm_modules for p in m.parameters())
    clip = torch.zeros(1, frames, 3, size, size)
    model = model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(clip)
    counts = counter.get_flop_counts()
    total = sum(counts.get("Global", {}).values())
    tcm_flops = sum(sum(ops.values()) for name, ops in counts.items() if name.endswith(tcm_names))
    return {
        "params": params,
        "tcm_params": tcm_params,
        "flops": total,
        "tcm_flops": tcm_flops,
        "tcm_flop_share": tcm_flops / total if total else 0.0,
    }
