"""tcm: visual-tempo action recognition with the Temporal Correlation Module.

Example:
    >>> import torch, tcm
    >>> model = tcm.create_model("tcm_tsm_resnet50", num_classes=174, num_segments=8)
    >>> model(torch.randn(2, 8, 3, 224, 224)).shape  # (N, T, 3, H, W) -> (N, K)
    torch.Size([2, 174])
"""

from tcm.models import (
    convert_official_checkpoint,
    create_model,
    list_models,
    model_from_checkpoint,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "convert_official_checkpoint",
    "create_model",
    "list_models",
    "model_from_checkpoint",
]
