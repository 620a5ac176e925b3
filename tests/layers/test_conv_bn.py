"""The conv + batch norm unit: folded in inference mode, the two layers in training mode."""

import pytest
import torch
from torch import nn

from tcm.layers.conv_bn import ConvBNReLU, conv_bn, conv_bn_relu


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
