"""MTDM's displacement fields of frame pairs: ReLU'd local correlation, then kernel soft-argmax.

:func:`mtdm_fields` equals ``kernel_soft_argmax(local_correlation(a, b, P).relu(), P, ...)``.
On the compiled CPU path the three steps are one kernel: each block of rows' correlations stay
in a per-thread buffer and only the ``(B, 3, H, W)`` fields are written, so inference never
materialises the ``(B, P*P, H, W)`` volume. When a gradient is needed the ReLU'd volume is kept
for the backward by blocks of rows, as the kernel computed it (about the memory of the unfused
path's volume); the backward recomputes the softmax from it and runs the correlation's
backward. On maps of at most ``P*P`` pixels the kernel keeps the pixels' products instead, and,
where every pixel's window covers the map, each pixel's arg-max, softmax maximum and total, so
that the backward is one pass over the products.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from tcm.ops import backend
from tcm.ops.correlation import (
    _check_pair,
    _compute_dtype,
    local_correlation_exportable,
    local_correlation_torch,
)
from tcm.ops.soft_argmax import kernel_soft_argmax_torch


class _CompiledMTDMFields(torch.autograd.Function):
    """Fused correlation + ReLU + kernel soft-argmax, with its backward."""

    @staticmethod
    def forward(ctx, a, b, patch_size, sigma, temperature, keep_volume, kernels):
        fields, volume, stats = kernels.mtdm_fields_forward(
            a, b, patch_size, sigma, temperature, keep_volume
        )
        if keep_volume:
            ctx.save_for_backward(a, b, volume, stats)
        ctx.args, ctx.kernels = (patch_size, sigma, temperature), kernels
        return fields

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_fields):
        a, b, volume, stats = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad[:2]
        grad_a, grad_b = ctx.kernels.mtdm_fields_backward(
            a, b, volume, stats, grad_fields, *ctx.args, need_a, need_b
        )
        return grad_a, grad_b, None, None, None, None, None


class _CompiledClipFields(torch.autograd.Function):
    """Fields of frame pairs of whole clips, products from views of the clips."""

    @staticmethod
    def forward(ctx, clips, firsts, seconds, patch_size, sigma, temperature, keep, kernels):
        fields, products, stats = kernels.mtdm_clip_fields_forward(
            clips, firsts, seconds, patch_size, sigma, temperature, keep
        )
        if keep:
            ctx.save_for_backward(clips, products, stats)
        ctx.args, ctx.kernels = (firsts, seconds, patch_size, sigma, temperature), kernels
        return fields

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_fields):
        clips, products, stats = ctx.saved_tensors
        firsts, seconds, *args = ctx.args
        grad = ctx.kernels.mtdm_clip_fields_backward(
            clips, firsts, seconds, products, stats, grad_fields, *args
        )
        return grad, None, None, None, None, None, None, None


def clip_fields_kernels(clips: torch.Tensor, patch_size: int):
    """The compiled kernels where :func:`mtdm_clip_fields` can run on ``clips (N, T, c, H, W)``:
    float CPU maps of at most ``patch_size ** 2`` pixels (the products' path) where the kernels
    load and no graph is captured; else ``None``."""
    if clips.dim() != 5 or clips.shape[3] * clips.shape[4] > patch_size * patch_size:
        return None
    return backend.path_for(clips).kernels


def mtdm_clip_fields(
    clips: torch.Tensor,
    firsts: list[int],
    seconds: list[int],
    patch_size: int,
    sigma: float,
    temperature: float,
    kernels,
) -> torch.Tensor:
    """:func:`mtdm_fields` of frame pairs of every clip, on the compiled kernels.

    Args:
        clips: ``(N, T, C, H, W)`` feature maps, ``H W <= patch_size ** 2``.
        firsts, seconds: the frames of each pair, indices into ``T``, as many of each.
        patch_size, sigma, temperature: as for :func:`mtdm_fields`.
        kernels: from :func:`clip_fields_kernels`.

    Returns:
        ``(N * pairs, 3, H, W)`` ``[u, v, conf]``, clip by clip, pair by pair: those of
        ``mtdm_fields(clips[:, firsts].flatten(0, 1), clips[:, seconds].flatten(0, 1), ...)``
        up to float rounding.
    """
    if patch_size < 1 or patch_size % 2 == 0:
        raise ValueError(f"patch_size must be a positive odd number, got {patch_size}")
    clips = clips.to(_compute_dtype(clips)).contiguous()
    keep = torch.is_grad_enabled() and clips.requires_grad
    return _CompiledClipFields.apply(
        clips,
        list(firsts),
        list(seconds),
        patch_size,
        float(sigma),
        float(temperature),
        keep,
        kernels,
    )


def mtdm_fields(
    a: torch.Tensor,
    b: torch.Tensor,
    patch_size: int,
    sigma: float = 5.0,
    temperature: float = 100.0,
) -> torch.Tensor:
    """Displacement and confidence of every pixel of ``a`` towards ``b``.

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
    _check_pair(a, b, patch_size)
    path = backend.path_for(a, b)
    if path.kernels is None:
        correlate = (
            local_correlation_exportable if path is backend.EXPORTABLE else local_correlation_torch
        )
        correlation = correlate(a, b, patch_size).relu()
        return kernel_soft_argmax_torch(correlation, patch_size, sigma, temperature)
    dtype = _compute_dtype(a)
    keep_volume = torch.is_grad_enabled() and (a.requires_grad or b.requires_grad)
    return _CompiledMTDMFields.apply(
        a.to(dtype),
        b.to(dtype),
        patch_size,
        float(sigma),
        float(temperature),
        keep_volume,
        path.kernels,
    )
