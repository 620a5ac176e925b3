"""The compiled narrow 3x3 convolutions (depthwise, and groups of two) against torch's."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import tcm.ops as ops
from tcm.layers.conv_bn import conv_bn, convolve
from tcm.layers.tam import TAM
from tcm.ops.narrow_conv3x3 import is_narrow_conv3x3, narrow_conv3x3, narrow_kernels_for


def _maps(*shape, dtype=torch.float32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=generator, dtype=dtype)
    return x.contiguous(memory_format=torch.channels_last)


def _conv(channels, group_channels, bias=False, dtype=torch.float32):
    torch.manual_seed(2)
    groups = channels // group_channels
    return nn.Conv2d(channels, channels, 3, padding=1, groups=groups, bias=bias).to(dtype)


def _step(run, conv, x, grad):
    """Output and the gradients of x and of the conv's parameters."""
    x = x.clone().requires_grad_()
    conv.zero_grad(set_to_none=True)
    out = run(conv, x)
    out.backward(grad)
    return [out.detach(), x.grad, *(p.grad for p in conv.parameters())]


# TAM's shapes (6 channels in groups of 2, depthwise 16-64 on 8x8), rows that are not whole
# blocks of lanes (W * C = 42, 90), a single pixel, and groups of two beyond TAM's 6 channels.
SHAPES = [
    (6, 2, 8, 8),
    (16, 1, 8, 8),
    (64, 1, 8, 8),
    (6, 2, 7, 7),
    (10, 1, 5, 9),
    (6, 2, 1, 1),
    (24, 2, 4, 6),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("channels, group_channels, height, width", SHAPES)
def test_matches_torch(kernels, dtype, channels, group_channels, height, width):
    conv = _conv(channels, group_channels, bias=True, dtype=dtype)
    x = _maps(3, channels, height, width, dtype=dtype)
    grad = _maps(3, channels, height, width, dtype=dtype, seed=1)
    assert narrow_kernels_for(conv, x, conv.weight) is kernels
    compiled = _step(convolve, conv, x, grad)
    reference = _step(lambda c, v: c(v), conv, x, grad)
    assert compiled[0].is_contiguous(memory_format=torch.channels_last)
    close = (
        {"atol": 1e-12, "rtol": 1e-12} if dtype == torch.float64 else {"atol": 2e-5, "rtol": 1e-5}
    )
    for ours, theirs in zip(compiled, reference, strict=True):
        torch.testing.assert_close(ours, theirs, **close)


@pytest.mark.parametrize("group_channels", [1, 2])
def test_float64_gradients_are_exact(kernels, group_channels):
    x = _maps(2, 6, 4, 5, dtype=torch.float64).requires_grad_()
    weight = torch.randn(6, group_channels, 3, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, w, b: narrow_conv3x3(a, w, b, kernels), (x, weight, bias)
    )


def test_bit_identical_run_to_run_and_across_thread_counts(kernels):
    """The weight gradient's sums run over fixed chunks of images combined in order."""
    conv = _conv(32, 1)
    x, grad = _maps(64, 32, 8, 8), _maps(64, 32, 8, 8, seed=1)
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, 2, 1):
            torch.set_num_threads(count)
            results.append(_step(convolve, conv, x, grad))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            assert torch.equal(a, b)


def test_inference_with_a_folded_batch_norm(kernels):
    conv, bn = _conv(16, 1), nn.BatchNorm2d(16).eval()
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        x = _maps(4, 16, 8, 8)
        torch.testing.assert_close(conv_bn(conv, bn, x), bn(conv(x)), atol=1e-5, rtol=1e-5)


def test_torchs_convolution_runs_where_the_kernels_do_not_apply(kernels):
    x = _maps(2, 16, 8, 8)
    depthwise = _conv(16, 1)
    assert narrow_kernels_for(depthwise, x.contiguous(), depthwise.weight) is None  # plain
    assert narrow_kernels_for(depthwise, x.bfloat16(), depthwise.weight.bfloat16()) is None
    strided = nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16)
    lifting = nn.Conv2d(16, 32, 3, padding=1, groups=16)
    wide_groups = nn.Conv2d(16, 16, 3, padding=1, groups=4)
    reflecting = nn.Conv2d(16, 16, 3, padding=1, groups=16, padding_mode="reflect")
    for conv in (strided, lifting, wide_groups, reflecting):
        assert not is_narrow_conv3x3(conv)
        assert narrow_kernels_for(conv, x, conv.weight) is None
    hooked = _conv(16, 1)
    hooked.register_forward_hook(lambda *_: None)
    assert narrow_kernels_for(hooked, x, hooked.weight) is None
    with ops.use_backend("torch"):
        assert narrow_kernels_for(depthwise, x, depthwise.weight) is None
    # A FLOP counter sees torch's convolution: 9 multiply-adds per output.
    counter = FlopCounterMode(display=False)
    with counter:
        assert narrow_kernels_for(depthwise, x, depthwise.weight) is None
        convolve(depthwise, x)
    assert counter.get_total_flops() == 2 * 2 * 16 * 8 * 8 * 9


def test_tam_training_runs_its_narrow_convolutions_compiled(kernels, monkeypatch):
    """TAM's 3 grouped and 3 depthwise convolutions take the compiled path, on channels-last
    maps; the output and gradients equal those with torch's convolutions."""
    import tcm.layers.conv_bn as conv_bn_module

    seen = []
    original = conv_bn_module.narrow_conv3x3

    def counting(x, weight, bias, kernels):
        seen.append(weight.shape[1])
        return original(x, weight, bias, kernels)

    torch.manual_seed(0)
    tam = TAM(32, 8).train()
    x = torch.randn(16, 6, 8, 8)
    grad = torch.randn(16, 32, 8, 8)

    def run(use_compiled: bool):
        monkeypatch.setattr(
            conv_bn_module,
            "narrow_kernels_for",
            narrow_kernels_for if use_compiled else (lambda *_: None),
        )
        monkeypatch.setattr(conv_bn_module, "narrow_conv3x3", counting)
        leaf = x.clone().requires_grad_()
        tam.zero_grad(set_to_none=True)
        out = tam(leaf)
        out.backward(grad)
        return [out.detach(), leaf.grad, *(p.grad for p in tam.parameters())]

    compiled = run(True)
    assert sorted(seen) == [1, 1, 1, 2, 2, 2]
    reference = run(False)
    for ours, theirs in zip(compiled, reference, strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_bad_inputs_are_named(kernels):
    x = _maps(2, 6, 4, 4)
    weight = torch.randn(6, 2, 3, 3)
    with pytest.raises(RuntimeError, match="channels-last"):
        kernels.narrow_conv3x3_forward(x.contiguous(), weight, None)
    with pytest.raises(RuntimeError, match="weight must be a contiguous"):
        kernels.narrow_conv3x3_forward(x, torch.randn(6, 2, 5, 5), None)
    with pytest.raises(RuntimeError, match="bias must be a contiguous"):
        kernels.narrow_conv3x3_forward(x, weight, torch.zeros(5))
    with pytest.raises(RuntimeError, match="1 or 2 input channels"):
        kernels.narrow_conv3x3_forward(x, torch.randn(6, 3, 3, 3), None)
    with pytest.raises(RuntimeError, match="7 channels do not split"):
        kernels.narrow_conv3x3_weight_grad(_maps(2, 7, 4, 4), _maps(2, 7, 4, 4), 2)
    with pytest.raises(RuntimeError, match="gradient must match"):
        kernels.narrow_conv3x3_weight_grad(_maps(2, 6, 4, 5), x, 2)
