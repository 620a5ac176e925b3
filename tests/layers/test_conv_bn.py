"""The conv + batch norm unit: folded in inference mode, the two layers in training mode."""

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from tcm.layers.conv_bn import ConvBNReLU, conv_bn, conv_bn_relu, convolve, runs_dense
from tcm.layers.tam import TAM


def _randomised(stack: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    for module in stack.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.uniform_(module.bias, -0.5, 0.5)
    return stack


@pytest.mark.parametrize("groups", [1, 3])
@pytest.mark.parametrize("conv_bias", [False, True])
def test_folded_equals_conv_then_batch_norm(groups, conv_bias):
    conv = nn.Conv2d(6, 12, 3, padding=1, groups=groups, bias=conv_bias).double()
    bn = _randomised(nn.BatchNorm2d(12)).double().eval()
    x = torch.randn(4, 6, 9, 9, dtype=torch.float64, requires_grad=True)
    folded = conv_bn(conv, bn, x)
    reference = bn(conv(x))
    torch.testing.assert_close(folded, reference, atol=1e-12, rtol=1e-12)
    weights = torch.randn_like(folded)
    parameters = [x, conv.weight, bn.weight, bn.bias]
    got = torch.autograd.grad((folded * weights).sum(), parameters)
    expected = torch.autograd.grad((reference * weights).sum(), parameters)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


def test_training_mode_normalises_by_the_batch_and_updates_running_statistics():
    stack = ConvBNReLU(*conv_bn_relu(4, 8, 3))
    conv, bn = stack[0], stack[1]
    x = torch.randn(2, 4, 6, 6) * 3 + 1
    out = stack(x)
    with torch.no_grad():
        y = conv(x)
        mean, var = y.mean(dim=(0, 2, 3)), y.var(dim=(0, 2, 3), unbiased=False)
        expected = torch.relu(
            (y - mean.view(1, -1, 1, 1)) / torch.sqrt(var.view(1, -1, 1, 1) + bn.eps)
        )
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(bn.running_mean, 0.1 * mean)  # momentum 0.1 from zero
    stack.eval()
    torch.testing.assert_close(stack(x), torch.relu(bn(conv(x))), atol=1e-5, rtol=1e-5)


def test_stack_keeps_sequential_parameter_names():
    stack = ConvBNReLU(*conv_bn_relu(4, 8, 3, groups=4), *conv_bn_relu(8, 16, 1))
    names = set(stack.state_dict())
    assert {"0.weight", "1.running_mean", "1.weight", "3.weight", "4.running_var"} <= names
    assert stack(torch.randn(1, 4, 5, 5)).shape == (1, 16, 5, 5)


def test_stack_rejects_layers_that_are_not_triples():
    with pytest.raises(ValueError, match="triples"):
        ConvBNReLU(nn.Conv2d(1, 1, 1), nn.BatchNorm2d(1))
    with pytest.raises(TypeError, match="Conv2d, BatchNorm2d, ReLU"):
        ConvBNReLU(nn.Conv2d(1, 1, 1), nn.ReLU(), nn.BatchNorm2d(1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "in_channels, out_channels, groups, bias", [(6, 6, 3, False), (8, 4, 2, True)]
)
def test_dense_run_of_a_grouped_convolution_equals_it(
    dtype, in_channels, out_channels, groups, bias
):
    """Few channels per group: one dense convolution with block-diagonal weights; output,
    input gradient and weight gradient equal the grouped convolution's up to summation order."""
    torch.manual_seed(0)
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, groups=groups, bias=bias).to(dtype)
    x = torch.randn(5, in_channels, 8, 8, dtype=dtype)
    assert runs_dense(conv, x)
    results = []
    for run in (convolve, lambda c, v: c(v)):
        leaf = x.clone().requires_grad_()
        conv.zero_grad(set_to_none=True)
        out = run(conv, leaf)
        out.backward(torch.ones_like(out) + out.detach())
        results.append([out.detach(), leaf.grad, *(p.grad for p in conv.parameters())])
    close = (
        {"atol": 1e-12, "rtol": 1e-12} if dtype == torch.float64 else {"atol": 1e-5, "rtol": 1e-5}
    )
    for dense, grouped in zip(*results, strict=True):
        torch.testing.assert_close(dense, grouped, **close)


def test_tam_runs_its_six_channel_convolutions_dense_but_counted_as_grouped():
    tam = TAM(32, 8)
    x = torch.randn(8, 6, 8, 8)
    conv = tam.conv1[0]
    assert conv.groups == 3 and runs_dense(conv, x)
    assert not runs_dense(tam.conv2[0], torch.randn(8, 16, 8, 8))  # depthwise: grouped
    counter = FlopCounterMode(display=False)
    with counter:
        assert not runs_dense(conv, x)
        convolve(conv, x)
    # 2 multiply-adds per tap per output (2 input channels per group), not 6.
    assert counter.get_total_flops() == 2 * 8 * 6 * 8 * 8 * 9 * 2
