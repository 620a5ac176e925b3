"""MTDM's kernel soft-argmax: displacement and confidence from a local correlation volume.

Plain PyTorch, forward (:func:`kernel_soft_argmax`) and backward
(:func:`kernel_soft_argmax_backward`). MTDM calls it through the operator
``tcm::mtdm_fields`` (:func:`tcm.ops.mtdm_fields`), which fuses the correlation, the ReLU and
this step in the compiled CPU kernels.
"""

from __future__ import annotations

import torch


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


def _soft_argmax(correlation, patch_size, sigma, temperature):
    """The forward's intermediates: ``(confidence, best, window, weights, steps)``, the last
    the horizontal and vertical displacement of each ``k`` in radii, ``(1, P*P, 1, 1)`` each."""
    radius = patch_size // 2
    rows, cols = _displacement_grid(patch_size, correlation.device, correlation.dtype)
    confidence, best = correlation.max(dim=1, keepdim=True)  # (B, 1, H, W)
    best_row = torch.div(best, patch_size, rounding_mode="floor")
    best_col = best - best_row * patch_size
    distance2 = (cols - best_col.to(cols.dtype)) ** 2 + (rows - best_row.to(rows.dtype)) ** 2
    window = torch.exp(-distance2 / (2.0 * sigma * sigma))  # (B, P*P, H, W)
    weights = torch.softmax(temperature * correlation * window, dim=1)
    scale = 1.0 / max(radius, 1)
    steps = ((cols - radius) * scale, (rows - radius) * scale)
    return confidence, best, window, weights, steps


def kernel_soft_argmax(
    correlation: torch.Tensor,
    patch_size: int,
    sigma: float = 5.0,
    temperature: float = 100.0,
) -> torch.Tensor:
    """Displacement field and confidence from correlations.

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

    Example:
        >>> kernel_soft_argmax(torch.rand(2, 225, 28, 28), patch_size=15).shape
        torch.Size([2, 3, 28, 28])
    """
    _check_volume(correlation, patch_size)
    confidence, _, _, weights, (du, dv) = _soft_argmax(correlation, patch_size, sigma, temperature)
    u = (weights * du).sum(dim=1, keepdim=True)
    v = (weights * dv).sum(dim=1, keepdim=True)
    return torch.cat([u, v, confidence], dim=1)


def kernel_soft_argmax_backward(
    correlation: torch.Tensor,
    grad_fields: torch.Tensor,
    patch_size: int,
    sigma: float = 5.0,
    temperature: float = 100.0,
) -> torch.Tensor:
    """The gradient of :func:`kernel_soft_argmax`'s input: ``correlation (B, P*P, H, W)``,
    ``grad_fields (B, 3, H, W)`` -> ``(B, P*P, H, W)``.

    Through the softmax of ``z = temperature * c * g``: ``dz = w * (du * (s_u - u) + dv *
    (s_v - v))`` for weights ``w`` and steps ``s``; the confidence's gradient goes to the
    arg-max alone, as for ``max``.
    """
    _check_volume(correlation, patch_size)
    _, best, window, weights, (du, dv) = _soft_argmax(correlation, patch_size, sigma, temperature)
    grad_u, grad_v, grad_conf = grad_fields.to(correlation.dtype).split(1, dim=1)
    u = (weights * du).sum(dim=1, keepdim=True)
    v = (weights * dv).sum(dim=1, keepdim=True)
    grad_logits = weights * (grad_u * (du - u) + grad_v * (dv - v))
    grad = (temperature * window) * grad_logits
    return grad.scatter_add(1, best, grad_conf)
