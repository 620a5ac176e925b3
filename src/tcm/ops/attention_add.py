"""TAM's temporal attention and the sum into the backbone in one op, compiled for CPU maps.

``out = base + x * sigmoid(conv1d_T(mean_HW(x)))``, the attention's per-frame, per-channel
weights from one 1D kernel over each clip's ``T`` frames (see
:class:`tcm.layers.tam.TemporalAttention`). Eagerly that is a mean, a transpose, the
convolution, a sigmoid, a product and a sum forward, as many steps backward, and on the demo's
small maps ``x`` is channels-last while ``base`` is plain, so several of those steps change
layouts too. The compiled op reads ``x`` twice forward (the means, then the sum) and the
gradient and ``x`` once each backward, a clip at a time; ``base``'s gradient is the output's
gradient itself. It applies to 4D float CPU maps, each plain or channels-last, where the
kernels load (:func:`attention_kernels_for`); the result equals the eager one up to float
rounding (the means and the kernel's gradient are summed in another order).
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from tcm.ops import backend


class _CompiledAttentionAdd(torch.autograd.Function):
    """``(base, x, kernel) -> base + x * weights``; ``base, x (N*T, C, H, W)``,
    ``kernel (1, 1, k)``; the output in ``base``'s layout."""

    @staticmethod
    def forward(ctx, base, x, kernel, num_segments, kernels):
        out, weights, pooled = kernels.attention_add_forward(base, x, kernel, num_segments)
        ctx.save_for_backward(x, kernel, weights, pooled)
        ctx.num_segments, ctx.kernels = num_segments, kernels
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, kernel, weights, pooled = ctx.saved_tensors
        need_base, need_x, need_kernel = ctx.needs_input_grad[:3]
        grad_x = grad_kernel = None
        if need_x or need_kernel:
            if not (grad.is_contiguous() or grad.is_contiguous(memory_format=torch.channels_last)):
                grad = grad.contiguous()
            grad_x, grad_kernel = ctx.kernels.attention_add_backward(
                grad, x, kernel, weights, pooled, ctx.num_segments
            )
        return (
            grad if need_base else None,
            grad_x if need_x else None,
            grad_kernel if need_kernel else None,
            None,
            None,
        )


def _is_dense_4d(t: torch.Tensor) -> bool:
    return t.dim() == 4 and (
        t.is_contiguous() or t.is_contiguous(memory_format=torch.channels_last)
    )


def attention_kernels_for(base: torch.Tensor, x: torch.Tensor, kernel: torch.Tensor):
    """The compiled kernels when ``base + x * weights`` can run on them, else ``None``:
    ``base`` and ``x`` 4D float CPU maps of one shape and dtype, each plain or channels-last,
    a ``(1, 1, k)`` kernel of their dtype, k odd, no dispatch mode watching the ops."""
    if not (
        base.shape == x.shape
        and x.dtype in (torch.float32, torch.float64)
        and base.dtype == x.dtype == kernel.dtype
        and kernel.dim() == 3
        and kernel.shape[:2] == (1, 1)
        and kernel.shape[2] % 2 == 1
        and _is_dense_4d(base)
        and _is_dense_4d(x)
        and not backend.ops_watched()
    ):
        return None
    return backend.path_for(base, x, kernel).kernels


def attention_add(
    base: torch.Tensor, x: torch.Tensor, kernel: torch.Tensor, num_segments: int, kernels
) -> torch.Tensor:
    """``base + x * sigmoid(conv1d_T(mean_HW(x)))`` on the compiled kernels: ``base, x
    (N*T, C, H, W)``, ``kernel (1, 1, k)`` (zero padding ``(k - 1) / 2`` along ``T``) ->
    ``(N*T, C, H, W)`` in ``base``'s layout."""
    return _CompiledAttentionAdd.apply(base, x, kernel.contiguous(), num_segments, kernels)
