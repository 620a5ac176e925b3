"""Low-level operators: the local correlation, MTDM's kernel soft-argmax and channel
normalisation, the fused batch norm + ReLU of TAM's and MTDM's layers, TAM's narrow 3x3
convolutions (depthwise, and groups of two channels) and its temporal attention with the sum
into the backbone, and 1x1 convolutions of small channels-last maps as matrix products.

Each compiled one has a CPU path and a pure-PyTorch reference path, chosen by
:mod:`tcm.ops.backend` (``set_backend("auto" | "torch" | "extension")``); the 1x1 products are
plain PyTorch on any backend.
"""

from tcm.ops.attention_add import attention_add
from tcm.ops.backend import extension_available, get_backend, set_backend, use_backend
from tcm.ops.batch_norm_relu import batch_norm_relu
from tcm.ops.correlation import (
    local_correlation,
    local_correlation_exportable,
    local_correlation_reference,
    local_correlation_torch,
)
from tcm.ops.mtdm_fields import mtdm_fields
from tcm.ops.narrow_conv3x3 import narrow_conv3x3
from tcm.ops.normalize_channels import normalize_channels, normalize_channels_torch
from tcm.ops.pointwise_conv import pointwise_conv
from tcm.ops.soft_argmax import kernel_soft_argmax, kernel_soft_argmax_torch

__all__ = [
    "attention_add",
    "batch_norm_relu",
    "extension_available",
    "get_backend",
    "kernel_soft_argmax",
    "kernel_soft_argmax_torch",
    "local_correlation",
    "local_correlation_exportable",
    "local_correlation_reference",
    "local_correlation_torch",
    "mtdm_fields",
    "narrow_conv3x3",
    "normalize_channels",
    "normalize_channels_torch",
    "pointwise_conv",
    "set_backend",
    "use_backend",
]
