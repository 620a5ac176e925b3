"""Local correlation between two feature maps.

For maps ``a`` and ``b`` of shape ``(B, C, H, W)``, patch size ``P = 2 d + 1`` and displacement
indices ``i`` (vertical) and ``j`` (horizontal) in ``0 .. P-1``::

    out[n, i * P + j, y, x] = sum_c a[n, c, y, x] * b[n, c, y + i - d, x + j - d]

with zeros where ``b`` is read out of bounds. Output shape: ``(B, P * P, H, W)``.

Four implementations, all differentiable:

- :func:`local_correlation`: the entry point. On CPU tensors it runs the compiled kernels
  (``csrc/correlation.cpp``, forward and backward, memory bounded by about twice the inputs
  plus the output) when they build here; on other devices, :func:`local_correlation_torch`;
  wherever graphs are captured (tracing, scripting, ONNX export, ``torch.export``,
  ``torch.compile``), :func:`local_correlation_exportable`. The choice follows
  :mod:`tcm.ops.backend`. Volumes of 32 MB or more reuse the memory of freed
  ones (the kernels keep at most 256 MB of it): new memory that large costs about as much as
  computing the volume.
- :func:`local_correlation_reference`: one multiply-and-sum per displacement; small
  temporaries, slow. The ground truth for tests.
- :func:`local_correlation_torch`: for each vertical offset, a batched matrix product of every row of
  ``a`` with the matching row of ``b`` (all horizontal pairs), then a strided view keeps the
  band ``|x' - x| <= d``. This runs on matrix-multiply kernels (BLAS, cuBLAS, MPS). It computes
  ``W / P`` times the needed products (about 2x at 28x28, patch 15) but never builds the
  all-pairs ``(H W)^2`` volume: its temporaries are bounded by ``max_temp_bytes`` by splitting
  the batch, so TCM at stride 4 of a 224 input (56x56) stays within a few hundred MB.
- :func:`local_correlation_exportable`: the same products in a graph that does not depend on
  the input's shape: no chunking (a traced chunk count would freeze the batch size), shifted
  rows stacked by slicing and the band picked with a gather (``unfold`` and ``as_strided``
  have no ONNX form). Its temporaries grow with the batch.

Both accept any floating dtype and device; half-precision inputs (and inputs under autocast)
are computed and returned in float32, since the soft-argmax that follows scales correlations
by 100 before a softmax.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from tcm.ops import backend

# Upper bound on the temporaries of one chunk of `local_correlation`; the batch is split so
# that the row-pair products of a chunk fit in it.
DEFAULT_MAX_TEMP_BYTES = 256 * 2**20


def _check_pair(a: torch.Tensor, b: torch.Tensor, patch_size: int) -> None:
    if a.dim() != 4 or a.shape != b.shape:
        raise ValueError(
            f"expected two maps of the same shape (B, C, H, W), got {tuple(a.shape)} "
            f"and {tuple(b.shape)}"
        )
    if patch_size < 1 or patch_size % 2 == 0:
        raise ValueError(f"patch_size must be a positive odd number, got {patch_size}")


def _compute_dtype(a: torch.Tensor) -> torch.dtype:
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
    _check_pair(a, b, patch_size)
    dtype = _compute_dtype(a)
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


class _CompiledCorrelation(torch.autograd.Function):
    """The compiled kernels' forward and backward as one autograd node."""

    @staticmethod
    def forward(ctx, a, b, patch_size, kernels):
        ctx.save_for_backward(a, b)
        ctx.patch_size, ctx.kernels = patch_size, kernels
        return kernels.correlation_forward(a, b, patch_size)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad[:2]
        grad_a, grad_b = ctx.kernels.correlation_backward(
            grad, a, b, ctx.patch_size, need_a, need_b
        )
        return grad_a, grad_b, None, None


def local_correlation(
    a: torch.Tensor,
    b: torch.Tensor,
    patch_size: int,
    max_temp_bytes: int = DEFAULT_MAX_TEMP_BYTES,
) -> torch.Tensor:
    """Local correlation on the fastest available path (see the module docstring).

    Args:
        a: ``(B, C, H, W)`` feature maps of the first frames.
        b: ``(B, C, H, W)`` feature maps of the second frames.
        patch_size: odd number of displacements per axis, ``P``.
        max_temp_bytes: bound on the temporaries of one chunk of the pure-PyTorch path (the
            compiled kernels need no chunking).

    Returns:
        ``(B, P * P, H, W)`` correlations, float32 (float64 for float64 inputs).

    Example:
        >>> a, b = torch.randn(2, 64, 28, 28), torch.randn(2, 64, 28, 28)
        >>> local_correlation(a, b, patch_size=15).shape
        torch.Size([2, 225, 28, 28])
    """
    _check_pair(a, b, patch_size)
    path = backend.path_for(a, b)
    if path is backend.EXPORTABLE:
        return local_correlation_exportable(a, b, patch_size)
    if path is backend.TORCH:
        return local_correlation_torch(a, b, patch_size, max_temp_bytes)
    dtype = _compute_dtype(a)
    return _CompiledCorrelation.apply(a.to(dtype), b.to(dtype), patch_size, path.kernels)


def local_correlation_torch(
    a: torch.Tensor,
    b: torch.Tensor,
    patch_size: int,
    max_temp_bytes: int = DEFAULT_MAX_TEMP_BYTES,
) -> torch.Tensor:
    """Local correlation through row-by-row matrix products (see the module docstring).

    Pure PyTorch: runs on any device and inside traced, exported or compiled graphs.

    Args:
        a: ``(B, C, H, W)`` feature maps of the first frames.
        b: ``(B, C, H, W)`` feature maps of the second frames.
        patch_size: odd number of displacements per axis, ``P``.
        max_temp_bytes: bound on the temporaries of one chunk; the batch is split to respect it
            (one sample at a time at least).

    Returns:
        ``(B, P * P, H, W)`` correlations, float32 (float64 for float64 inputs).

    Example:
        >>> a, b = torch.randn(2, 64, 28, 28), torch.randn(2, 64, 28, 28)
        >>> local_correlation_torch(a, b, patch_size=15).shape
        torch.Size([2, 225, 28, 28])
    """
    _check_pair(a, b, patch_size)
    dtype = _compute_dtype(a)
    batch, channels, height, width = a.shape
    # Per sample: the row products (P, H, W, W) and the band copy (P, H, W, P), plus the
    # shifted copy of b (P, H, C, W).
    per_sample = patch_size * height * (width * width + width * patch_size + channels * width)
    per_sample *= torch.finfo(dtype).bits // 8
    chunk = max(1, min(batch, max_temp_bytes // max(per_sample, 1)))
    with torch.autocast(a.device.type, enabled=False):
        a, b = a.to(dtype), b.to(dtype)
        outputs = [
            _correlate_rows(a[start : start + chunk], b[start : start + chunk], patch_size)
            for start in range(0, batch, chunk)
        ]
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=0)


def _correlate_rows(a: torch.Tensor, b: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``(B, C, H, W)`` x2 -> ``(B, P*P, H, W)`` through per-row matrix products."""
    batch, _, height, width = a.shape
    radius = patch_size // 2
    # Rows of b for every vertical offset i: row y of offset i is b's row y + i - d.
    b_rows = F.pad(b, (0, 0, radius, radius)).unfold(2, height, 1)  # (B, C, P, W, H)
    b_rows = b_rows.permute(0, 2, 4, 1, 3)  # (B, P, H, C, W)
    a_rows = a.permute(0, 2, 3, 1).unsqueeze(1)  # (B, 1, H, W, C)
    products = torch.matmul(a_rows, b_rows)  # (B, P, H, W, W'): a at x times b at x'
    # Keep x' = x + j - d: pad x' by d on both sides, then walk the diagonal band.
    products = F.pad(products, (radius, radius))  # (B, P, H, W, W + 2d)
    s_b, s_p, s_h, s_w, s_x = products.stride()
    band = products.as_strided(
        (batch, patch_size, height, width, patch_size),
        (s_b, s_p, s_h, s_w + s_x, s_x),
        products.storage_offset(),
    )  # (B, P_i, H, W, P_j)
    return band.permute(0, 1, 4, 2, 3).reshape(batch, patch_size * patch_size, height, width)


def local_correlation_exportable(a: torch.Tensor, b: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Local correlation in operators every exporter handles, with any batch size.

    For each vertical offset, every row of ``a`` is multiplied with the matching row of ``b``
    (one batched matrix product over all offsets), and the band ``x' = x + j - d`` is picked
    with a gather: only padding, slicing, matmul and gather, none sized by the batch.

    Args:
        a: ``(B, C, H, W)`` feature maps of the first frames.
        b: ``(B, C, H, W)`` feature maps of the second frames.
        patch_size: odd number of displacements per axis, ``P``.

    Returns:
        ``(B, P * P, H, W)`` correlations in ``a``'s dtype.
    """
    height, width = a.shape[-2:]
    radius = patch_size // 2
    b_padded = F.pad(b, (0, 0, radius, radius))  # (B, C, H + 2d, W)
    b_rows = torch.stack(
        [b_padded[:, :, i : i + height] for i in range(patch_size)], dim=1
    )  # (B, P, C, H, W)
    b_rows = b_rows.permute(0, 1, 3, 2, 4)  # (B, P, H, C, W)
    a_rows = a.permute(0, 2, 3, 1).unsqueeze(1)  # (B, 1, H, W, C)
    products = torch.matmul(a_rows, b_rows)  # (B, P, H, W, W'): a at x times b at x'
    products = F.pad(products, (radius, radius))  # (B, P, H, W, W + 2d), x' shifted by d
    columns = torch.arange(width, device=a.device)[:, None] + torch.arange(
        patch_size, device=a.device
    )  # (W, P): padded column x + j of displacement j
    index = columns.expand(*products.shape[:3], width, patch_size)  # (B, P, H, W, P)
    band = torch.gather(products, 4, index)  # (B, P_i, H, W, P_j)
    return band.permute(0, 1, 4, 2, 3).flatten(1, 2)  # (B, P*P, H, W)
