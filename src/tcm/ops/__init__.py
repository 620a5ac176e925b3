"""Low-level operators: the local correlation and MTDM's displacement fields (correlation,
ReLU, kernel soft-argmax), registered with PyTorch as ``tcm::local_correlation`` and
``tcm::mtdm_fields`` (:mod:`tcm.ops.operators`).

Behind each, on the CPU, the compiled kernels or plain PyTorch, chosen by :mod:`tcm.ops.backend`
(``set_backend("auto" | "torch" | "extension")``); plain PyTorch on other devices.
"""

from tcm.ops.backend import extension_available, get_backend, set_backend, use_backend
from tcm.ops.correlation import local_correlation_reference, local_correlation_torch
from tcm.ops.onnx import register_onnx_symbolics
from tcm.ops.operators import decompositions, local_correlation, mtdm_fields, mtdm_fields_torch
from tcm.ops.soft_argmax import kernel_soft_argmax

# A model holding TCM exports to ONNX with torch.onnx.export itself, not only with tcm export.
register_onnx_symbolics()

__all__ = [
    "decompositions",
    "extension_available",
    "get_backend",
    "kernel_soft_argmax",
    "local_correlation",
    "local_correlation_reference",
    "local_correlation_torch",
    "mtdm_fields",
    "mtdm_fields_torch",
    "set_backend",
    "use_backend",
]
