"""MTDM's kernel soft-argmax: displacement and confidence from a local correlation volume.

:func:`kernel_soft_argmax` runs the compiled CPU kernel (forward and backward) when
:mod:`tcm.ops.backend` selects it, else :func:`kernel_soft_argmax_torch`, the pure-PyTorch
reference. MTDM itself goes through :func:`tcm.ops.mtdm_fields`, which fuses the correlation,
the ReLU and this step.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from tcm.ops import backend


def _displacement_grid(patch_size: int, device: torch.device, dtype: torch.dtype):
    """Vertical and horizontal index of each flattened displacement ``k = i * P + j``.

    Returns two ``(1, P*P, 1, 1)`` tensors ``(i, j)``.
    """
    index = torch.arange(patch_size * patch_size, device=device)
    rows = torch.div(index, patch_size, rounding_mode="floor")
    cols = index - rows * patch_size
    return rows.to(dtype).view(1, -1, 1, 1), cols.to(dtype).view(1, -1, 1, 1)


def _check_volume(correlation: torch.Tensor, patch_size: int) -> None:
    if correlation.dim() != 4 or correlation.shape[1] != patch_size * patch_size:
        raise ValueError(
            f"expected a correlation volume (B, {patch_size * patch_size}, H, W), "
            f"got {tuple(correlation.shape)}"
        )


class _CompiledSoftArgmax(torch.autograd.Function):
    """The compiled kernel soft-argmax, forward and backward (recomputed from the volume)."""

    @staticmethod
    def forward(ctx, correlation, patch_size, sigma, temperature, kernels):
        ctx.save_for_backward(correlation)
        ctx.args, ctx.kernels = (patch_size, sigma, temperature), kernels
        return kernels.soft_argmax_forward(correlation, patch_size, sigma, temperature, False)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_fields):
        (correlation,) = ctx.saved_tensors
        grad = ctx.kernels.soft_argmax_backward(correlation, grad_fields, *ctx.args, False)
        return grad, None, None, None, None


def kernel_soft_argmax(
    correlation: torch.Tensor,
    patch_size: int,
    sigma: float = 5.0,
    temperature: float = 100.0,
) -> torch.Tensor:
    """Displacement field and confidence from correlations, on the fastest available path.

    Same contract as :func:`kernel_soft_argmax_torch`; the compiled kernel computes in float32
    (float64 for float64 input) and returns the input's dtype.

    Example:
        >>> kernel_soft_argmax(torch.rand(2, 225, 28, 28), patch_size=15).shape
        torch.Size([2, 3, 28, 28])
    """
    _check_volume(correlation, patch_size)
    kernels = backend.path_for(correlation).kernels
    if kernels is None:  # the exportable form is the plain one
        return kernel_soft_argmax_torch(correlation, patch_size, sigma, temperature)
    dtype = torch.float64 if correlation.dtype == torch.float64 else torch.float32
    fields = _CompiledSoftArgmax.apply(
        correlation.to(dtype), patch_size, float(sigma), float(temperature), kernels
    )
    return fields.to(correlation.dtype)


def kernel_soft_argmax_torch(
    correlation: torch.Tensor,
    patch_size: int,
    sigma: float = 5.0,
    temperature: float = 100.0,
) -> torch.Tensor:
    """Displacement field and confidence from correlations (pure PyTorch, the reference).

    A Gaussian window of width ``sigma`` (in displacement steps) centred on the arg-max
    (no gradient through the index) damps secondary peaks, then a softmax of
    ``temperature * c * g`` over displacements gives the expected displacement.

    Args:
        correlation: ``(B, P*P, H, W)``, displacement index ``k = i * P + j`` with ``i``
            vertical, ``j`` horizontal (as produced by :func:`tcm.ops.local_correlation`).
        patch_size: ``P``.
        sigma: width of the Gaussian window.
        temperature: scale applied before the softmax.

    Returns:
        ``(B, 3, H, W)``: horizontal displacement ``u`` and vertical displacement ``v``, both in
        ``[-1, 1]`` (units of the radius ``d = P // 2``), and the confidence ``max_k c``.
    """
    _check_volume(correlation, patch_size)
    radius = patch_size // 2
    rows, cols = _displacement_grid(patch_size, correlation.device, correlation.dtype)
    confidence, best = correlation.max(dim=1, keepdim=True)  # (B, 1, H, W)
    best_row = torch.div(best, patch_size, rounding_mode="floor")
    best_col = best - best_row * patch_size
    distance2 = (cols - best_col.to(cols.dtype)) ** 2 + (rows - best_row.to(rows.dtype)) ** 2
    window = torch.exp(-distance2 / (2.0 * sigma * sigma))  # (B, P*P, H, W)
    weights = torch.softmax(temperature * correlation * window, dim=1)
    scale = 1.0 / max(radius, 1)
    u = (weights * ((cols - radius) * scale)).sum(dim=1, keepdim=True)
    v = (weights * ((rows - radius) * scale)).sum(dim=1, keepdim=True)
    return torch.cat([u, v, confidence], dim=1)
