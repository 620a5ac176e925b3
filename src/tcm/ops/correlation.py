"""Local correlation between two feature maps, in plain PyTorch.

For maps ``a`` and ``b`` of shape ``(B, C, H, W)``, patch size ``P = 2 d + 1`` and displacement
indices ``i`` (vertical) and ``j`` (horizontal) in ``0 .. P-1``::

    out[n, i * P + j, y, x] = sum_c a[n, c, y, x] * b[n, c, y + i - d, x + j - d]

with zeros where ``b`` is read out of bounds. Output shape: ``(B, P * P, H, W)``.

- :func:`local_correlation_reference`: one multiply-and-sum per displacement; the ground truth
  for tests.
- :func:`correlate_rows`: for each vertical offset, a batched matrix product of every row of
  ``a`` with the matching row of ``b`` (all horizontal pairs), then reshapes keep the band
  ``|x' - x| <= d``. Matrix-multiply kernels on any device; only padding, slicing, reshapes
  and matmul, so exporters translate it. It computes ``W / P`` times the needed products (about 2x
  at 28x28, patch 15) but never the all-pairs ``(H W)^2`` volume.
- :func:`local_correlation_torch`: :func:`correlate_rows` over chunks of the batch, its
  temporaries bounded by ``max_temp_bytes`` (TCM at 56x56 stays within a few hundred MB).
- :func:`local_correlation_backward_torch`: the gradients, the same products transposed.

The registered operator ``tcm::local_correlation`` (:func:`tcm.ops.local_correlation`) runs
these, or the compiled CPU kernels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Upper bound on the temporaries of one chunk of `local_correlation_torch`; the batch is split
# so that the row-pair products of a chunk fit in it.
DEFAULT_MAX_TEMP_BYTES = 256 * 2**20


def check_pair(a: torch.Tensor, b: torch.Tensor, patch_size: int) -> None:
    """Raise ``ValueError`` unless ``a`` and ``b`` are ``(B, C, H, W)`` alike and ``patch_size``
    is a positive odd number."""
    if a.dim() != 4 or a.shape != b.shape:
        raise ValueError(
            f"expected two maps of the same shape (B, C, H, W), got {tuple(a.shape)} "
            f"and {tuple(b.shape)}"
        )
    if patch_size < 1 or patch_size % 2 == 0:
        raise ValueError(f"patch_size must be a positive odd number, got {patch_size}")


def compute_dtype(a: torch.Tensor) -> torch.dtype:
    """float64 for float64 maps, float32 for any other (half precision included)."""
    return torch.float64 if a.dtype == torch.float64 else torch.float32


def local_correlation_reference(a: torch.Tensor, b: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Brute-force local correlation, one displacement at a time (see the module docstring).

    Args:
        a: ``(B, C, H, W)`` feature maps of the first frames.
        b: ``(B, C, H, W)`` feature maps of the second frames.
        patch_size: odd number of displacements per axis, ``P``.

    Returns:
        ``(B, P * P, H, W)`` correlations, float32 (float64 for float64 inputs).
    """
    check_pair(a, b, patch_size)
    dtype = compute_dtype(a)
    with torch.autocast(a.device.type, enabled=False):
        a, b = a.to(dtype), b.to(dtype)
        radius = patch_size // 2
        height, width = a.shape[-2:]
        b_padded = F.pad(b, (radius, radius, radius, radius))
        planes = [
            (a * b_padded[:, :, i : i + height, j : j + width]).sum(dim=1)
            for i in range(patch_size)
            for j in range(patch_size)
        ]
        return torch.stack(planes, dim=1)


def _shifted_rows(b: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``(B, C, H, W) -> (B, P, H, C, W)``: row ``y`` of offset ``i`` is ``b``'s row
    ``y + i - d`` (zeros outside the map)."""
    height = b.shape[2]
    radius = patch_size // 2
    b_padded = F.pad(b, (0, 0, radius, radius))  # (B, C, H + 2d, W)
    rows = torch.stack([b_padded[:, :, i : i + height] for i in range(patch_size)], dim=1)
    return rows.permute(0, 1, 3, 2, 4)  # (B, P, H, C, W)


def band(products: torch.Tensor, patch_size: int) -> torch.Tensor:
    """The diagonal band of row products: ``(B, P, H, W, W')`` -> ``(B, P, H, W, P)`` with
    ``out[..., x, j] = products[..., x, x + j - d]`` (zero outside the row).

    Padded by ``d`` on both sides, a ``(W, W + 2d)`` matrix flattened and padded to
    ``W (W + 2d + 1)`` values reads as ``(W, W + 2d + 1)`` rows whose first ``P`` columns are
    the band: reshapes, pads and a slice, which every exporter translates.
    """
    width = products.shape[-1]
    radius = patch_size // 2
    span = width + 2 * radius
    padded = F.pad(products, (radius, radius)).flatten(-2)  # (B, P, H, W * span)
    padded = F.pad(padded, (0, width))  # (B, P, H, W * (span + 1))
    return padded.unflatten(-1, (width, span + 1))[..., :patch_size]


def correlate_rows(a: torch.Tensor, b: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Local correlation through per-row matrix products, any batch size in one go.

    Args:
        a: ``(B, C, H, W)`` feature maps of the first frames.
        b: ``(B, C, H, W)`` feature maps of the second frames, of ``a``'s dtype.
        patch_size: odd number of displacements per axis, ``P``.

    Returns:
        ``(B, P * P, H, W)`` correlations in ``a``'s dtype.
    """
    a_rows = a.permute(0, 2, 3, 1).unsqueeze(1)  # (B, 1, H, W, C)
    products = torch.matmul(a_rows, _shifted_rows(b, patch_size))  # (B, P, H, W, W'): x by x'
    return band(products, patch_size).permute(0, 1, 4, 2, 3).flatten(1, 2)  # (B, P*P, H, W)


def _chunk(a: torch.Tensor, patch_size: int, max_temp_bytes: int) -> int:
    """Samples per chunk such that one chunk's temporaries stay within ``max_temp_bytes``."""
    _, channels, height, width = a.shape
    # Per sample: the row products (P, H, W, W + 2d + 1) twice, the band and b's rows.
    per_sample = patch_size * height * (width * (2 * width + 5 * patch_size) + channels * width)
    per_sample *= a.element_size()
    return max(1, min(a.shape[0], max_temp_bytes // max(per_sample, 1)))


def local_correlation_torch(
    a: torch.Tensor,
    b: torch.Tensor,
    patch_size: int,
    max_temp_bytes: int = DEFAULT_MAX_TEMP_BYTES,
) -> torch.Tensor:
    """Local correlation in plain PyTorch, on any device, the batch split into chunks.

    Args:
        a: ``(B, C, H, W)`` feature maps of the first frames.
        b: ``(B, C, H, W)`` feature maps of the second frames.
        patch_size: odd number of displacements per axis, ``P``.
        max_temp_bytes: bound on the temporaries of one chunk (one sample at a time at least).

    Returns:
        ``(B, P * P, H, W)`` correlations, float32 (float64 for float64 inputs).

    Example:
        >>> a, b = torch.randn(2, 64, 28, 28), torch.randn(2, 64, 28, 28)
        >>> local_correlation_torch(a, b, patch_size=15).shape
        torch.Size([2, 225, 28, 28])
    """
    check_pair(a, b, patch_size)
    dtype = compute_dtype(a)
    with torch.autocast(a.device.type, enabled=False):
        a, b = a.to(dtype), b.to(dtype)
        chunk = _chunk(a, patch_size, max_temp_bytes)
        outputs = [
            correlate_rows(a[start : start + chunk], b[start : start + chunk], patch_size)
            for start in range(0, a.shape[0], chunk)
        ]
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=0)


def _correlation_grads(grad, a, b, patch_size):
    """:func:`local_correlation_backward_torch` on one chunk."""
    batch, channels, height, width = a.shape
    radius = patch_size // 2
    grad_band = grad.view(batch, patch_size, patch_size, height, width).permute(0, 1, 3, 4, 2)
    # The band back into rows of all columns x', zero off the band (band()'s steps undone).
    span = width + 2 * radius
    rows = F.pad(grad_band, (0, span + 1 - patch_size)).flatten(-2)  # (B, P, H, W * (span + 1))
    rows = rows[..., : width * span].unflatten(-1, (width, span))  # (B, P, H, W, W + 2d)
    grad_products = rows[..., radius : radius + width]  # (B, P, H, W, W')
    b_rows = _shifted_rows(b, patch_size)  # (B, P, H, C, W')
    grad_a = torch.matmul(grad_products, b_rows.transpose(3, 4)).sum(1)  # (B, H, W, C)
    a_rows = a.permute(0, 2, 1, 3).unsqueeze(1)  # (B, 1, H, C, W)
    grad_rows = torch.matmul(a_rows, grad_products)  # (B, P, H, C, W'): grad of b's rows
    grad_b = grad_rows.new_zeros(batch, channels, height + 2 * radius, width)
    for i in range(patch_size):
        grad_b[:, :, i : i + height] += grad_rows[:, i].transpose(1, 2)
    return grad_a.permute(0, 3, 1, 2), grad_b[:, :, radius : radius + height]


def local_correlation_backward_torch(
    grad: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    patch_size: int,
    max_temp_bytes: int = DEFAULT_MAX_TEMP_BYTES,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of the local correlation: ``grad (B, P*P, H, W)``, ``a, b (B, C, H, W)`` ->
    ``grad_a, grad_b (B, C, H, W)`` in the computation dtype (see :func:`compute_dtype`)."""
    check_pair(a, b, patch_size)
    dtype = compute_dtype(a)
    with torch.autocast(a.device.type, enabled=False):
        grad, a, b = grad.to(dtype), a.to(dtype), b.to(dtype)
        chunk = _chunk(a, patch_size, max_temp_bytes)
        parts = [
            _correlation_grads(*(t[start : start + chunk] for t in (grad, a, b)), patch_size)
            for start in range(0, a.shape[0], chunk)
        ]
    if len(parts) == 1:
        return parts[0]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
