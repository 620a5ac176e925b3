"""tcm: visual-tempo action recognition with the Temporal Correlation Module.

Example:
    >>> import torch, tcm
    >>> model = tcm.create_model("tcm_tsm_resnet50", num_classes=174, num_segments=8)
    >>> model(torch.randn(2, 8, 3, 224, 224)).shape  # (N, T, 3, H, W) -> (N, K)
    torch.Size([2, 174])

Top-level names are imported on first use, so ``import tcm.data`` does not load the models.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Public name -> module that defines it.
_EXPORTS = {
    "Predictor": "tcm.deploy",
    "VideoRecognizer": "tcm.models",
    "add_tcm": "tcm.models",
    "add_temporal_shift": "tcm.models",
    "convert_official_checkpoint": "tcm.models",
    "create_model": "tcm.models",
    "list_models": "tcm.models",
    "model_from_checkpoint": "tcm.models",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tcm' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
