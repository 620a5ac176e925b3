"""1x1 convolutions of channels-last CPU maps as matrix products.

A channels-last ``(N, C, H, W)`` tensor is, in memory, an ``(N*H*W, C)`` matrix, so a 1x1
convolution is one matrix product forward and two backward (input and weight gradients), with
no copies. On the few channels of TCM's layers (6 to 64) and the demo's 128 x 8 x 8 maps,
forward + backward so takes 0.77 to 0.92 of oneDNN's convolution's time
(``benchmarks/bench_small_ops.py``; ``benchmarks/bench_demo_step.py`` shows TAM's share of
the step). It applies to 1x1 convolutions (stride 1, no padding, one group) of small
channels-last float CPU maps of few channels (:func:`pointwise_applies`); elsewhere
:func:`tcm.layers.conv_bn.convolve` runs the module's own convolution. The result equals torch's up to float rounding (sums in another order); the
products are deterministic run to run at a given number of threads.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from tcm.ops import backend


def _pixels(maps: torch.Tensor) -> torch.Tensor:
    """Channels-last ``(N, C, H, W)`` as its ``(N*H*W, C)`` matrix (a view)."""
    return maps.permute(0, 2, 3, 1).reshape(-1, maps.shape[1])


def _empty_maps(like: torch.Tensor, channels: int) -> torch.Tensor:
    """Uninitialised channels-last ``(N, channels, H, W)`` maps of ``like``'s size and dtype."""
    batch, _, height, width = like.shape
    return torch.empty(
        (batch, channels, height, width),
        dtype=like.dtype,
        device=like.device,
        memory_format=torch.channels_last,
    )


class _PointwiseConv(torch.autograd.Function):
    """``(x, weight, bias) -> conv2d(x, weight, bias)``, ``x (N, C_in, H, W)`` channels-last,
    ``weight (C_out, C_in, 1, 1)``, ``bias (C_out,)`` or ``None`` -> ``(N, C_out, H, W)``
    channels-last."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        matrix = weight.view(weight.shape[0], -1)  # (C_out, C_in)
        pixels = _pixels(x)  # (N*H*W, C_in)
        # Written into fresh maps, not returned as a view: the ReLU after it runs in place.
        out = _empty_maps(x, weight.shape[0])
        if bias is None:
            torch.mm(pixels, matrix.t(), out=_pixels(out))
        else:
            torch.addmm(bias, pixels, matrix.t(), out=_pixels(out))
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad = _pixels(grad.contiguous(memory_format=torch.channels_last))  # (N*H*W, C_out)
        need_x, need_weight, need_bias = ctx.needs_input_grad
        matrix = weight.view(weight.shape[0], -1)
        grad_x = None
        if need_x:
            grad_x = _empty_maps(x, x.shape[1])
            torch.mm(grad, matrix, out=_pixels(grad_x))
        grad_weight = torch.mm(grad.t(), _pixels(x)).view_as(weight) if need_weight else None
        grad_bias = grad.sum(0) if ctx.has_bias and need_bias else None
        return grad_x, grad_weight, grad_bias


#: The product applies to maps of at most this many pixels and channels in and out: forward +
#: backward, 1 thread (``benchmarks/bench_small_ops.py``), 128 x 8 x 8 maps took 0.77 (6 -> 16
#: channels) to 0.92 (32 -> 64) of oneDNN's time, 16 x 28 x 28 maps 0.82 to 0.96; 16 x 56 x 56
#: maps 0.97 to 1.00, and 64 -> 256 channels 1.10 (28 x 28) to 1.17 (56 x 56), so those keep
#: oneDNN.
MAX_PIXELS = 28 * 28
MAX_CHANNELS = 64


def is_pointwise(conv: nn.Conv2d) -> bool:
    """Whether ``conv`` is 1x1, stride 1, no padding, one group."""
    return (
        conv.kernel_size == (1, 1)
        and conv.stride == (1, 1)
        and conv.padding in ((0, 0), "valid")
        and conv.dilation == (1, 1)
        and conv.groups == 1
    )


def pointwise_applies(conv: nn.Conv2d, x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether ``conv`` with ``weight`` runs on ``x`` as a matrix product: channels-last 4D
    float CPU maps of the weight's dtype, within :data:`MAX_PIXELS` and :data:`MAX_CHANNELS`,
    no hooks on ``conv`` (they would not see the op),
    outside graphs being captured and dispatch modes watching the ops."""
    # Capture first: traced shapes are tensors.
    return (
        not backend.is_capturing()
        and is_pointwise(conv)
        and x.device.type == "cpu"
        and x.dim() == 4
        and x.shape[1] == conv.in_channels
        and max(conv.in_channels, conv.out_channels) <= MAX_CHANNELS
        and x.shape[2] * x.shape[3] <= MAX_PIXELS
        and x.dtype in (torch.float32, torch.float64)
        and weight.dtype == x.dtype
        and weight.device == x.device
        and x.is_contiguous(memory_format=torch.channels_last)
        and not (conv._forward_hooks or conv._forward_pre_hooks)
        and not backend.ops_watched()
    )


def pointwise_conv(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """``conv2d(x, weight, bias)`` for 1x1 weights as matrix products: ``x (N, C_in, H, W)``
    channels-last, ``weight (C_out, C_in, 1, 1)`` -> ``(N, C_out, H, W)`` channels-last."""
    return _PointwiseConv.apply(x, weight.contiguous(), bias)
