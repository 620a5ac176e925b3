"""3x3 convolutions with narrow groups, compiled for channels-last CPU maps.

TAM's convolutions before each lift are 3x3, stride 1, "same" padding, with one input channel
per group (depthwise, 16 to 64 channels) or two (its 6-channel convolutions in 3 groups).
oneDNN's kernels for so few channels per group are slow on small maps: forward + backward on
the demo's 128 x 8 x 8 maps, this op takes 0.18 (6 channels) to 0.65 (64 channels) of their
time (``benchmarks/bench_demo_step.py`` shows its share of the step). It applies to such
convolutions of channels-last float CPU maps where the compiled kernels load
(:func:`narrow_kernels_for`); elsewhere :func:`tcm.layers.conv_bn.convolve` runs the module's
own convolution. The result equals torch's up to float rounding (sums in another order).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from tcm.ops import backend


class _CompiledNarrowConv3x3(torch.autograd.Function):
    """``(x, weight, bias) -> conv2d(x, weight, bias, padding=1, groups=C / G)``, channels-last;
    ``weight (C, G, 3, 3)``, ``G`` in {1, 2}, ``bias (C,)`` or ``None``."""

    @staticmethod
    def forward(ctx, x, weight, bias, kernels):
        ctx.save_for_backward(x, weight)
        ctx.kernels, ctx.has_bias = kernels, bias is not None
        return kernels.narrow_conv3x3_forward(x, weight, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad = grad.contiguous(memory_format=torch.channels_last)
        need_x, need_weight, need_bias = ctx.needs_input_grad[:3]
        grad_x = ctx.kernels.narrow_conv3x3_input_grad(grad, weight) if need_x else None
        grad_weight = (
            ctx.kernels.narrow_conv3x3_weight_grad(grad, x, weight.shape[1])
            if need_weight
            else None
        )
        grad_bias = grad.sum((0, 2, 3)) if ctx.has_bias and need_bias else None
        return grad_x, grad_weight, grad_bias, None


def is_narrow_conv3x3(conv: nn.Conv2d) -> bool:
    """Whether ``conv`` is 3x3, stride 1, zero padding 1, ``C`` channels in and out, in groups
    of 1 or 2 input channels."""
    channels = conv.in_channels
    return (
        conv.kernel_size == (3, 3)
        and conv.stride == (1, 1)
        and conv.padding == (1, 1)
        and conv.dilation == (1, 1)
        and conv.padding_mode == "zeros"
        and conv.out_channels == channels
        and channels in (conv.groups, 2 * conv.groups)
    )


def narrow_kernels_for(conv: nn.Conv2d, x: torch.Tensor, weight: torch.Tensor):
    """The compiled kernels when ``conv`` with ``weight`` can run on ``x`` as a narrow
    convolution, else ``None``: channels-last 4D float maps of the weight's dtype, no hooks
    on ``conv`` (they would not see the op), no dispatch mode watching the ops."""
    if not (
        is_narrow_conv3x3(conv)
        and x.dim() == 4
        and x.shape[1] == conv.in_channels
        and x.dtype in (torch.float32, torch.float64)
        and weight.dtype == x.dtype
        and x.is_contiguous(memory_format=torch.channels_last)
        and not (conv._forward_hooks or conv._forward_pre_hooks)
        and not backend.ops_watched()
    ):
        return None
    return backend.path_for(x, weight).kernels


def narrow_conv3x3(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, kernels
) -> torch.Tensor:
    """``conv2d(x, weight, bias, padding=1, groups=C / G)`` on the compiled kernels:
    ``x (N, C, H, W)`` channels-last, ``weight (C, G, 3, 3)`` -> ``(N, C, H, W)``
    channels-last."""
    if bias is not None:
        bias = bias.contiguous()
    return _CompiledNarrowConv3x3.apply(x, weight.contiguous(), bias, kernels)
