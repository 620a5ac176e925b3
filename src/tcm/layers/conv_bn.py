"""Convolution, batch norm, ReLU: the unit MTDM and TAM are built from."""

from __future__ import annotations

import torch
from torch import nn


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
        return bn(conv(x))
    scale = torch.rsqrt(bn.running_var + bn.eps)  # (C_out,)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    if conv.bias is not None:
        shift = shift + conv.bias * scale
    # The module's own convolution (padding mode and all) with the folded weights.
    return conv._conv_forward(x, conv.weight * scale.view(-1, 1, 1, 1), shift)


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

    With ``last_contiguous`` the last triple runs on a contiguous (plain-layout) input,
    whatever the layout of the others.

    Shapes: ``(N, C_in, H, W) -> (N, C_out, H', W')``.
    """

    def __init__(self, *layers: nn.Module, last_contiguous: bool = False) -> None:
        super().__init__(*layers)
        self.last_contiguous = last_contiguous
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        triples = self.triples()
        if not self.last_contiguous:
            return run_triples(triples, x)
        x = run_triples(triples[:-1], x)
        return run_triples(triples[-1:], to_layout(x, torch.contiguous_format))


def run_triples(
    triples: list[tuple[nn.Conv2d, nn.BatchNorm2d, nn.ReLU]], x: torch.Tensor
) -> torch.Tensor:
    """``relu(bn(conv(x)))`` for each triple in turn: ``(N, C_in, H, W) -> (N, C_out, H', W')``."""
    for conv, bn, relu in triples:
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
