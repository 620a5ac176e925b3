"""The TCM operators, registered with PyTorch (``torch.library``).

- ``tcm::local_correlation(a, b, patch_size)``: ``(B, C, H, W)`` x2 -> ``(B, P*P, H, W)``
  (:mod:`tcm.ops.correlation`).
- ``tcm::mtdm_fields(a, b, patch_size, sigma, temperature)``: ``(B, C, H, W)`` x2 ->
  ``(B, 3, H, W)`` ``[u, v, conf]``, the kernel soft-argmax (:mod:`tcm.ops.soft_argmax`) of the
  ReLU'd local correlation: MTDM's displacement fields.

Each has a CPU kernel (the compiled kernels where :func:`tcm.ops.backend.kernels_for` picks
them, plain PyTorch otherwise), a plain-PyTorch kernel for every other device, a backward
operator (the compiled one recomputes the forward's volume, which inference never writes),
and a fake kernel for shapes. So ``torch.compile``, ``torch.export``, ``torch.fx`` and
``torch.jit.trace`` see one operator, and :func:`decompositions` gives exporters its plain
form in standard ops (ONNX export).

The entry points :func:`local_correlation` and :func:`mtdm_fields` take maps of any floating
dtype and compute in float32 (float64 for float64 maps): the soft-argmax scales correlations
by 100 before a softmax.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from tcm.ops import backend
from tcm.ops.correlation import (
    check_pair,
    compute_dtype,
    correlate_rows,
    local_correlation_backward_torch,
    local_correlation_torch,
)
from tcm.ops.soft_argmax import kernel_soft_argmax, kernel_soft_argmax_backward

# --- tcm::local_correlation -------------------------------------------------------------------


@torch.library.custom_op("tcm::local_correlation", mutates_args=())
def _correlation(a: Tensor, b: Tensor, patch_size: int) -> Tensor:
    return local_correlation_torch(a, b, patch_size)


@_correlation.register_kernel("cpu")
def _correlation_cpu(a: Tensor, b: Tensor, patch_size: int) -> Tensor:
    kernels = backend.kernels_for(a, b)
    if kernels is None:
        return local_correlation_torch(a, b, patch_size)
    return kernels.correlation_forward(a, b, patch_size)


@_correlation.register_fake
def _(a: Tensor, b: Tensor, patch_size: int) -> Tensor:
    return a.new_empty(a.shape[0], patch_size * patch_size, *a.shape[2:])


@torch.library.custom_op("tcm::local_correlation_backward", mutates_args=())
def _correlation_backward(
    grad: Tensor, a: Tensor, b: Tensor, patch_size: int
) -> tuple[Tensor, Tensor]:
    return local_correlation_backward_torch(grad, a, b, patch_size)


@_correlation_backward.register_kernel("cpu")
def _correlation_backward_cpu(
    grad: Tensor, a: Tensor, b: Tensor, patch_size: int
) -> tuple[Tensor, Tensor]:
    kernels = backend.kernels_for(a, b)
    if kernels is None:
        return local_correlation_backward_torch(grad, a, b, patch_size)
    grad_a, grad_b = kernels.correlation_backward(grad.to(a.dtype), a, b, patch_size, True, True)
    return grad_a, grad_b


@_correlation_backward.register_fake
def _(grad: Tensor, a: Tensor, b: Tensor, patch_size: int) -> tuple[Tensor, Tensor]:
    return torch.empty_like(a), torch.empty_like(b)


def _save_pair(ctx, inputs, output) -> None:
    a, b, *args = inputs
    ctx.save_for_backward(a, b)
    ctx.args = args


def _correlation_grads(ctx, grad):
    a, b = ctx.saved_tensors
    return *torch.ops.tcm.local_correlation_backward(grad, a, b, *ctx.args), None


_correlation.register_autograd(_correlation_grads, setup_context=_save_pair)


# --- tcm::mtdm_fields -------------------------------------------------------------------------


def mtdm_fields_torch(
    a: Tensor, b: Tensor, patch_size: int, sigma: float, temperature: float
) -> Tensor:
    """:func:`mtdm_fields` in plain PyTorch: ``(B, C, H, W)`` x2 -> ``(B, 3, H, W)``."""
    correlation = local_correlation_torch(a, b, patch_size).relu()
    return kernel_soft_argmax(correlation, patch_size, sigma, temperature)


def mtdm_fields_backward_torch(
    grad: Tensor, a: Tensor, b: Tensor, patch_size: int, sigma: float, temperature: float
) -> tuple[Tensor, Tensor]:
    """Gradients of :func:`mtdm_fields_torch`: ``grad (B, 3, H, W)`` -> ``grad_a, grad_b``."""
    correlation = local_correlation_torch(a, b, patch_size)
    relu = correlation.relu()
    grad_volume = kernel_soft_argmax_backward(relu, grad, patch_size, sigma, temperature)
    grad_volume = grad_volume.masked_fill_(relu <= 0, 0)  # through the ReLU
    return local_correlation_backward_torch(grad_volume, a, b, patch_size)


@torch.library.custom_op("tcm::mtdm_fields", mutates_args=())
def _fields(a: Tensor, b: Tensor, patch_size: int, sigma: float, temperature: float) -> Tensor:
    return mtdm_fields_torch(a, b, patch_size, sigma, temperature)


@_fields.register_kernel("cpu")
def _fields_cpu(a: Tensor, b: Tensor, patch_size: int, sigma: float, temperature: float) -> Tensor:
    kernels = backend.kernels_for(a, b)
    if kernels is None:
        return mtdm_fields_torch(a, b, patch_size, sigma, temperature)
    return kernels.mtdm_fields_forward(a, b, patch_size, sigma, temperature, False)[0]


@_fields.register_fake
def _(a: Tensor, b: Tensor, patch_size: int, sigma: float, temperature: float) -> Tensor:
    return a.new_empty(a.shape[0], 3, *a.shape[2:])


@torch.library.custom_op("tcm::mtdm_fields_backward", mutates_args=())
def _fields_backward(
    grad: Tensor, a: Tensor, b: Tensor, patch_size: int, sigma: float, temperature: float
) -> tuple[Tensor, Tensor]:
    return mtdm_fields_backward_torch(grad, a, b, patch_size, sigma, temperature)


@_fields_backward.register_kernel("cpu")
def _fields_backward_cpu(
    grad: Tensor, a: Tensor, b: Tensor, patch_size: int, sigma: float, temperature: float
) -> tuple[Tensor, Tensor]:
    kernels = backend.kernels_for(a, b)
    if kernels is None:
        return mtdm_fields_backward_torch(grad, a, b, patch_size, sigma, temperature)
    # The forward again, keeping the ReLU'd volume this time.
    _, volume, stats = kernels.mtdm_fields_forward(a, b, patch_size, sigma, temperature, True)
    grad_a, grad_b = kernels.mtdm_fields_backward(
        a, b, volume, stats, grad, patch_size, sigma, temperature, True, True
    )
    return grad_a, grad_b


@_fields_backward.register_fake
def _(grad, a, b, patch_size, sigma, temperature) -> tuple[Tensor, Tensor]:
    return torch.empty_like(a), torch.empty_like(b)


def _fields_grads(ctx, grad):
    a, b = ctx.saved_tensors
    return *torch.ops.tcm.mtdm_fields_backward(grad, a, b, *ctx.args), None, None, None


_fields.register_autograd(_fields_grads, setup_context=_save_pair)


# --- Entry points -----------------------------------------------------------------------------


def local_correlation(a: Tensor, b: Tensor, patch_size: int) -> Tensor:
    """Local correlation of ``a`` and ``b`` (``tcm::local_correlation``; see
    :mod:`tcm.ops.correlation` for the formula).

    Args:
        a: ``(B, C, H, W)`` feature maps of the first frames.
        b: ``(B, C, H, W)`` feature maps of the second frames.
        patch_size: odd number of displacements per axis, ``P``.

    Returns:
        ``(B, P * P, H, W)`` correlations, float32 (float64 for float64 inputs).

    Example:
        >>> a, b = torch.randn(2, 64, 28, 28), torch.randn(2, 64, 28, 28)
        >>> local_correlation(a, b, patch_size=15).shape
        torch.Size([2, 225, 28, 28])
    """
    check_pair(a, b, patch_size)
    dtype = compute_dtype(a)
    return torch.ops.tcm.local_correlation(a.to(dtype), b.to(dtype), patch_size)


def mtdm_fields(
    a: Tensor, b: Tensor, patch_size: int, sigma: float = 5.0, temperature: float = 100.0
) -> Tensor:
    """Displacement and confidence of every pixel of ``a`` towards ``b`` (``tcm::mtdm_fields``):
    ``kernel_soft_argmax(local_correlation(a, b, P).relu(), P, sigma, temperature)``.

    Args:
        a: ``(B, C, H, W)`` feature maps of the pairs' first frames.
        b: ``(B, C, H, W)`` feature maps of the pairs' second frames.
        patch_size: odd number of displacements per axis, ``P``.
        sigma: Gaussian window width of the soft-argmax, in displacement steps.
        temperature: softmax scale of the soft-argmax.

    Returns:
        ``(B, 3, H, W)`` ``[u, v, conf]``, float32 (float64 for float64 inputs): see
        :func:`tcm.ops.kernel_soft_argmax`.

    Example:
        >>> a, b = torch.randn(13, 64, 28, 28), torch.randn(13, 64, 28, 28)
        >>> mtdm_fields(a, b, patch_size=15).shape
        torch.Size([13, 3, 28, 28])
    """
    check_pair(a, b, patch_size)
    dtype = compute_dtype(a)
    return torch.ops.tcm.mtdm_fields(
        a.to(dtype), b.to(dtype), patch_size, float(sigma), float(temperature)
    )


def _fields_decomposition(a, b, patch_size, sigma, temperature):
    correlation = correlate_rows(a, b, patch_size).relu()
    return kernel_soft_argmax(correlation, patch_size, sigma, temperature)


def decompositions() -> dict[torch._ops.OpOverload, Callable]:
    """The operators' plain forms in standard ops, for ``ExportedProgram.run_decompositions``
    (ONNX export): one batched product per vertical offset, whatever the batch size."""
    return {
        torch.ops.tcm.local_correlation.default: correlate_rows,
        torch.ops.tcm.mtdm_fields.default: _fields_decomposition,
    }
