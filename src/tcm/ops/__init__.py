"""Low-level operators: the local correlation and MTDM's kernel soft-argmax."""

from tcm.ops.correlation import local_correlation, local_correlation_reference
from tcm.ops.soft_argmax import kernel_soft_argmax

__all__ = ["kernel_soft_argmax", "local_correlation", "local_correlation_reference"]
