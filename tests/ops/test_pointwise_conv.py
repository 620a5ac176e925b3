"""1x1 convolutions of channels-last maps as matrix products, against torch's convolution."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from tcm.layers.conv_bn import conv_bn, convolve
from tcm.layers.mtdm import MTDM
from tcm.layers.tam import TAM
from tcm.ops.pointwise_conv import MAX_CHANNELS, MAX_PIXELS, pointwise_applies, pointwise_conv


def _maps(*shape, dtype=torch.float32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=generator, dtype=dtype)
    return x.contiguous(memory_format=torch.channels_last)


def _conv(in_channels, out_channels, bias=False, dtype=torch.float32):
    torch.manual_seed(2)
    return nn.Conv2d(in_channels, out_channels, 1, bias=bias).to(dtype)


class _Convolve(nn.Module):
    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return convolve(self.conv, x)


def _step(run, conv, x, grad):
    """Output and the gradients of x and of the conv's parameters."""
    x = x.clone().requires_grad_()
    conv.zero_grad(set_to_none=True)
    out = run(conv, x)
    out.backward(grad)
    return [out.detach(), x.grad, *(p.grad for p in conv.parameters())]


# TAM's and MTDM's lifts and reductions on 8x8 maps, odd channel counts and sizes, one pixel.
SHAPES = [(6, 16, 8, 8), (16, 32, 8, 8), (64, 32, 8, 8), (5, 7, 3, 9), (32, 8, 1, 1)]


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("in_channels, out_channels, height, width", SHAPES)
def test_matches_torch(dtype, bias, in_channels, out_channels, height, width):
    conv = _conv(in_channels, out_channels, bias=bias, dtype=dtype)
    x = _maps(3, in_channels, height, width, dtype=dtype)
    grad = _maps(3, out_channels, height, width, dtype=dtype, seed=1)
    assert pointwise_applies(conv, x, conv.weight)
    ours = _step(convolve, conv, x, grad)
    theirs = _step(lambda c, v: c(v), conv, x, grad)
    # Outputs and input gradients channels-last, as the batch norms around them expect.
    assert ours[0].is_contiguous(memory_format=torch.channels_last)
    assert ours[1].is_contiguous(memory_format=torch.channels_last)
    close = (
        {"atol": 1e-12, "rtol": 1e-12} if dtype == torch.float64 else {"atol": 2e-5, "rtol": 1e-5}
    )
    for a, b in zip(ours, theirs, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, **close)


def test_float64_gradients_are_exact():
    x = _maps(2, 5, 3, 4, dtype=torch.float64).requires_grad_()
    weight = torch.randn(7, 5, 1, 1, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(pointwise_conv, (x, weight, bias))
    assert torch.autograd.gradcheck(lambda a, w: pointwise_conv(a, w, None), (x, weight))


def test_output_takes_an_in_place_relu():
    """The ReLU after it runs in place: the output is its own tensor, not a view."""
    conv = _conv(16, 32)
    x = _maps(4, 16, 8, 8).requires_grad_()
    out = torch.relu_(convolve(conv, x))
    out.sum().backward()
    reference = x.detach().clone().requires_grad_()
    torch.relu(conv(reference)).sum().backward()
    torch.testing.assert_close(x.grad, reference.grad)


def test_bit_identical_run_to_run():
    conv = _conv(32, 64)
    x, grad = _maps(64, 32, 8, 8), _maps(64, 64, 8, 8, seed=1)
    first = _step(convolve, conv, x, grad)
    for a, b in zip(first, _step(convolve, conv, x, grad), strict=True):
        assert torch.equal(a, b)


def test_inference_with_a_folded_batch_norm():
    conv, bn = _conv(16, 32), nn.BatchNorm2d(32).eval()
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        x = _maps(4, 16, 8, 8)
        assert pointwise_applies(conv, x, conv.weight)
        torch.testing.assert_close(conv_bn(conv, bn, x), bn(conv(x)), atol=1e-5, rtol=1e-5)


def test_torchs_convolution_runs_where_the_product_does_not_apply():
    x = _maps(2, 16, 8, 8)
    pointwise = _conv(16, 32)
    side = int(MAX_PIXELS**0.5) + 1
    assert not pointwise_applies(pointwise, x.contiguous(), pointwise.weight)  # plain layout
    assert not pointwise_applies(pointwise, _maps(1, 16, side, side), pointwise.weight)
    wide = _conv(16, MAX_CHANNELS + 1)
    assert not pointwise_applies(wide, x, wide.weight)
    assert not pointwise_applies(pointwise, x.bfloat16(), pointwise.weight.bfloat16())
    for conv in (
        nn.Conv2d(16, 32, 1, stride=2),
        nn.Conv2d(16, 32, 1, groups=2),
        nn.Conv2d(16, 32, 1, padding=1),
        nn.Conv2d(16, 32, 3, padding=1),
    ):
        assert not pointwise_applies(conv, x, conv.weight)
    hooked = _conv(16, 32)
    hooked.register_forward_hook(lambda *_: None)
    assert not pointwise_applies(hooked, x, hooked.weight)
    # Traced graphs (export) get torch's convolution.
    traced = torch.jit.trace(_Convolve(pointwise), x, check_trace=False)
    kinds = {node.kind() for node in traced.inlined_graph.nodes()}
    assert "aten::_convolution" in kinds and "aten::mm" not in kinds
    # A FLOP counter sees torch's convolution: 16 multiply-adds per output.
    counter = FlopCounterMode(display=False)
    with counter:
        assert not pointwise_applies(pointwise, x, pointwise.weight)
        convolve(pointwise, x)
    assert counter.get_total_flops() == 2 * 2 * 32 * 8 * 8 * 16


def test_tcm_layers_run_their_1x1_convolutions_as_products(monkeypatch):
    """MTDM's reduction and TAM's four lifts take the product on the demo's small maps; the
    output and gradients equal those with torch's convolutions."""
    import tcm.layers.conv_bn as conv_bn_module

    seen = []

    def counting(x, weight, bias):
        seen.append(tuple(weight.shape[:2]))
        return pointwise_conv(x, weight, bias)

    torch.manual_seed(0)
    mtdm, tam = MTDM(32, 8).train(), TAM(32, 8).train()
    x = torch.randn(16, 32, 8, 8)
    grad = torch.randn(16, 32, 8, 8)

    def run(use_product: bool):
        monkeypatch.setattr(
            conv_bn_module,
            "pointwise_applies",
            pointwise_applies if use_product else (lambda *_: False),
        )
        monkeypatch.setattr(conv_bn_module, "pointwise_conv", counting)
        leaf = x.clone().requires_grad_()
        mtdm.zero_grad(set_to_none=True)
        tam.zero_grad(set_to_none=True)
        out = tam.add_to(leaf, mtdm(leaf))
        out.backward(grad)
        parameters = [*mtdm.parameters(), *tam.parameters()]
        return [out.detach(), leaf.grad, *(p.grad for p in parameters)]

    ours = run(True)
    reduced = mtdm.chnl_reduction[0].out_channels
    assert sorted(seen) == sorted([(reduced, 32), (16, 6), (32, 16), (64, 32), (32, 64)])
    theirs = run(False)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
