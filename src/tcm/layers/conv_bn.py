"""Convolution, batch norm, ReLU: the unit MTDM and TAM are built from."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tcm.ops.backend import is_capturing, ops_watched
from tcm.ops.batch_norm_relu import batch_norm_relu
from tcm.ops.narrow_conv3x3 import narrow_conv3x3, narrow_kernels_for
from tcm.ops.pointwise_conv import pointwise_applies, pointwise_conv

#: Grouped (not depthwise) convolutions of at most this many input channels run on the CPU as
#: one dense convolution with block-diagonal weights where the compiled narrow kernels do not
#: apply (plain layout, no kernels): oneDNN's grouped kernels for 2 channels per group are
#: slow. TAM's 6-channel convolutions in 3 groups, 128 x 8 x 8 maps: 0.68 of the time forward
#: + backward, 0.60 in inference; 16 channels depthwise would take 3.3 times.
DENSE_GROUPED_MAX_CHANNELS = 8


def runs_dense(conv: nn.Conv2d, x: torch.Tensor) -> bool:
    """Whether :func:`convolve` runs ``conv`` on ``x`` as a dense convolution."""
    return (
        1 < conv.groups < conv.in_channels <= DENSE_GROUPED_MAX_CHANNELS
        and conv.padding_mode == "zeros"
        and x.device.type == "cpu"
        and not (conv._forward_hooks or conv._forward_pre_hooks)
        and not is_capturing()
        and not ops_watched()
    )


def block_diagonal(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """Grouped weights ``(C_out, C_in / groups, kh, kw)`` as dense ones ``(C_out, C_in, kh,
    kw)``, zero between groups. Products with exact ones and zeros: the dense convolution's
    sums differ from the grouped one's only in order (and a NaN in one group's input spreads
    to all), its weight gradient reaches only the groups' own weights."""
    out_channels, group_channels, *kernel = weight.shape
    per_group = weight.view(groups, out_channels // groups, 1, group_channels, *kernel)
    eye = torch.eye(groups, dtype=weight.dtype, device=weight.device)
    mask = eye.view(groups, 1, groups, 1, *([1] * len(kernel)))
    return (per_group * mask).reshape(out_channels, groups * group_channels, *kernel)


def convolve(
    conv: nn.Conv2d,
    x: torch.Tensor,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """``conv(x)``, or with ``weight`` and ``bias`` in place of its own (folded ones):
    ``(N, C_in, H, W) -> (N, C_out, H', W')``: on the compiled narrow kernels where they
    apply (:func:`~tcm.ops.narrow_conv3x3.narrow_kernels_for`), as matrix products for 1x1
    convolutions of channels-last maps (:func:`~tcm.ops.pointwise_conv.pointwise_applies`),
    else dense where :func:`runs_dense`."""
    own = weight is None
    if own:
        weight, bias = conv.weight, conv.bias
    if pointwise_applies(conv, x, weight):
        return pointwise_conv(x, weight, bias)
    kernels = narrow_kernels_for(conv, x, weight)
    if kernels is not None:
        return narrow_conv3x3(x, weight, bias, kernels)
    if not runs_dense(conv, x):
        return conv(x) if own else conv._conv_forward(x, weight, bias)
    weight = block_diagonal(weight, conv.groups)
    return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation)


def conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """``bn(conv(x))``: ``(N, C_in, H, W) -> (N, C_out, H', W')``.

    With the batch norm in inference mode (its running statistics in use) it is folded into
    the convolution's weights and bias, so the output is written once instead of three times
    (convolution, normalisation, affine); the result equals the two steps up to float rounding
    and gradients reach the same parameters.

    Example:
        >>> conv, bn = nn.Conv2d(4, 8, 1, bias=False), nn.BatchNorm2d(8).eval()
        >>> x = torch.randn(2, 4, 5, 5)
        >>> torch.allclose(conv_bn(conv, bn, x), bn(conv(x)), atol=1e-6)
        True
    """
    if bn.training or bn.running_mean is None or bn.running_var is None:
        return bn(convolve(conv, x))
    scale = torch.rsqrt(bn.running_var + bn.eps)  # (C_out,)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    if conv.bias is not None:
        shift = shift + conv.bias * scale
    # The module's own convolution (padding mode and all) with the folded weights.
    return convolve(conv, x, conv.weight * scale.view(-1, 1, 1, 1), shift)


class ToLayout(torch.autograd.Function):
    """``x`` copied into ``layout``, its gradient copied back into ``x``'s layout.

    ``Tensor.contiguous`` hands the gradient back in whatever layout it arrives, so the ReLUs
    and batch norms behind it would take the gradient in one layout and their saved outputs in
    the other, at about three times the cost of matching layouts.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, layout: torch.memory_format) -> torch.Tensor:
        ctx.input_layout = (
            torch.channels_last
            if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
            else torch.contiguous_format
        )
        return x.contiguous(memory_format=layout)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad.contiguous(memory_format=ctx.input_layout), None


def channels_last_helps(x: torch.Tensor) -> bool:
    """Whether narrow convolutions on ``x`` run faster channels-last: CPU tensors of 4 dims,
    outside graphs being captured (which get the plain layout)."""
    return x.device.type == "cpu" and x.dim() == 4 and not is_capturing()


#: Maps of at most this many pixels (8 x 8) run channels-last on the CPU from end to end:
#: at 8 x 8, a TCM training step on the demo's 32 channels is 12-17% faster so; at 14 x 14
#: (128 channels) and 16 x 16 (32 channels) it is not faster, at 28 x 28 it is slower.
SMALL_MAP_PIXELS = 64


def is_small_map(x: torch.Tensor) -> bool:
    """Whether ``(N, C, H, W)`` maps have ``H * W <= SMALL_MAP_PIXELS``."""
    return x.dim() == 4 and x.shape[2] * x.shape[3] <= SMALL_MAP_PIXELS


def to_layout(x: torch.Tensor, layout: torch.memory_format) -> torch.Tensor:
    """``(N, C, H, W)`` in ``layout``, with the gradient in ``x``'s (see :class:`ToLayout`)."""
    if x.is_contiguous(memory_format=layout):
        return x
    if torch.is_grad_enabled() and x.requires_grad:
        return ToLayout.apply(x, layout)
    return x.contiguous(memory_format=layout)


class ConvBNReLU(nn.Sequential):
    """A stack of ``(Conv2d, BatchNorm2d, ReLU)`` triples, run with :func:`conv_bn`.

    An :class:`nn.Sequential`, so its parameters keep the names ``0.weight``, ``1.running_mean``,
    ... of the reference release's checkpoints.

    ``forward(x, last_layout=...)`` runs the last triple on its input copied into
    ``last_layout`` (the others run in the layout ``x`` comes in).

    Shapes: ``(N, C_in, H, W) -> (N, C_out, H', W')``.
    """

    def __init__(self, *layers: nn.Module) -> None:
        super().__init__(*layers)
        if len(layers) % 3:
            raise ValueError(f"expected (conv, batch norm, ReLU) triples, got {len(layers)} layers")
        for conv, bn, relu in self.triples():
            if not (
                isinstance(conv, nn.Conv2d)
                and isinstance(bn, nn.BatchNorm2d)
                and isinstance(relu, nn.ReLU)
            ):
                raise TypeError(
                    f"expected a Conv2d, BatchNorm2d, ReLU triple, got {conv}, {bn}, {relu}"
                )

    def triples(self) -> list[tuple[nn.Conv2d, nn.BatchNorm2d, nn.ReLU]]:
        layers = list(self)
        return list(zip(layers[0::3], layers[1::3], layers[2::3], strict=True))

    def forward(
        self, x: torch.Tensor, last_layout: torch.memory_format | None = None
    ) -> torch.Tensor:
        triples = self.triples()
        if last_layout is None:
            return run_triples(triples, x)
        x = run_triples(triples[:-1], x)
        return run_triples(triples[-1:], to_layout(x, last_layout))


def run_triples(
    triples: list[tuple[nn.Conv2d, nn.BatchNorm2d, nn.ReLU]], x: torch.Tensor
) -> torch.Tensor:
    """``relu(bn(conv(x)))`` for each triple in turn: ``(N, C_in, H, W) -> (N, C_out, H', W')``.

    In training mode the batch norm and ReLU of channels-last maps run as one compiled op
    (:func:`tcm.ops.batch_norm_relu`); in inference the batch norm folds into the convolution.
    """
    for conv, bn, relu in triples:
        if bn.training:
            x = batch_norm_relu(convolve(conv, x), bn, relu)
        else:
            x = relu(conv_bn(conv, bn, x))
    return x


def conv_bn_relu(
    in_channels: int, out_channels: int, kernel_size: int, groups: int = 1
) -> list[nn.Module]:
    """Conv (no bias, "same" padding), BN, ReLU as three layers, for a :class:`ConvBNReLU`."""
    return [
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            padding=kernel_size // 2,
            groups=groups,
            bias=False,
        ),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]
