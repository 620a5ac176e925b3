"""The fused training-mode batch norm + ReLU against torch's modules."""

from __future__ import annotations

import copy
import sys

import pytest
import torch
from torch import nn

import tcm.ops as ops
from tcm.ops.batch_norm_relu import batch_norm_relu

# tcm.ops.batch_norm_relu is the function; its module, for fused_kernels_for.
fused = sys.modules["tcm.ops.batch_norm_relu"]


def _maps(*shape, dtype=torch.float32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    z = 3 * torch.randn(*shape, generator=generator, dtype=dtype) + 1
    return z.contiguous(memory_format=torch.channels_last)


def _bn(channels, dtype=torch.float32, momentum=0.1):
    torch.manual_seed(1)
    bn = nn.BatchNorm2d(channels, momentum=momentum).to(dtype).train()
    with torch.no_grad():  # not the trivial affine
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    return bn


def _step(fn, bn, z, grad):
    """Output and the gradients of z, weight and bias of one forward + backward."""
    z = z.clone().requires_grad_()
    bn.zero_grad(set_to_none=True)
    out = fn(bn, z)
    out.backward(grad)
    return out.detach(), z.grad, bn.weight.grad, bn.bias.grad


def fused_step(bn, z):
    return batch_norm_relu(z, bn, nn.ReLU())


def eager_step(bn, z):
    return torch.relu(bn(z))


@pytest.mark.parametrize(
    "shape",
    [(128, 6, 8, 8), (128, 64, 8, 8), (3, 7, 5, 5), (2, 512, 4, 4), (1, 3, 1, 2)],
    ids=["6ch", "64ch", "odd-tail", "wide", "tiny"],
)
@pytest.mark.parametrize("momentum", [0.1, None])
def test_matches_batch_norm_then_relu(kernels, shape, momentum):
    """Output, all gradients and the running statistics (two steps) match the eager modules
    up to float rounding; the output and input gradient stay channels-last."""
    z, grad = _maps(*shape), _maps(*shape, seed=1)
    mine, eager = _bn(shape[1], momentum=momentum), _bn(shape[1], momentum=momentum)
    for _ in range(2):
        got, want = _step(fused_step, mine, z, grad), _step(eager_step, eager, z, grad)
    assert got[0].is_contiguous(memory_format=torch.channels_last)
    assert got[1].is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got[0], want[0], atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(got[1], want[1], atol=2e-5, rtol=1e-4)
    for g, w in zip(got[2:], want[2:], strict=True):  # sums over every pixel
        torch.testing.assert_close(g, w, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(mine.running_mean, eager.running_mean, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(mine.running_var, eager.running_var, atol=1e-5, rtol=1e-5)
    assert int(mine.num_batches_tracked) == int(eager.num_batches_tracked) == 2


def test_float64_gradients_are_exact(kernels):
    """In float64 the fused op passes torch's numerical gradient check."""
    bn = _bn(5, torch.float64)
    z = _maps(2, 5, 3, 4, dtype=torch.float64).requires_grad_()
    weight = bn.weight.detach().clone().requires_grad_()
    bias = bn.bias.detach().clone().requires_grad_()

    def op(z, weight, bias):
        return fused._CompiledBatchNormReLU.apply(z, weight, bias, bn.eps, kernels)[0]

    assert torch.autograd.gradcheck(op, (z, weight, bias))


def test_statistics_survive_a_large_mean(kernels):
    """Values around 1000 with unit spread: the variance does not cancel away."""
    z = (torch.randn(16, 6, 8, 8, dtype=torch.float64) + 1000).contiguous(
        memory_format=torch.channels_last
    )
    _, mean, var = kernels.bn_relu_forward(z.float(), torch.ones(6), torch.zeros(6), 1e-5)
    torch.testing.assert_close(mean, z.float().double().mean((0, 2, 3)), atol=1e-9, rtol=0)
    torch.testing.assert_close(
        var, z.float().double().var((0, 2, 3), unbiased=False), atol=1e-6, rtol=1e-6
    )


def test_bit_identical_run_to_run_and_across_thread_counts(kernels):
    """Sums run over fixed chunks combined in order: the same bits with 1 and 2 threads."""
    z, grad = _maps(64, 32, 8, 8), _maps(64, 32, 8, 8, seed=1)
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, 2, 1):
            torch.set_num_threads(count)
            results.append(_step(fused_step, _bn(32), z, grad))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            assert torch.equal(a, b)


def test_the_eager_modules_run_where_the_kernel_does_not_apply(kernels):
    z = _maps(4, 8, 6, 6)
    relu = nn.ReLU()
    assert fused.fused_kernels_for(z, _bn(8), relu) is kernels
    assert fused.fused_kernels_for(z.contiguous(), _bn(8), relu) is None  # plain layout
    assert fused.fused_kernels_for(z, _bn(8).eval(), relu) is None  # running statistics
    assert fused.fused_kernels_for(z.bfloat16(), _bn(8).bfloat16(), relu) is None
    assert fused.fused_kernels_for(z[:1, :, :1, :1], _bn(8), relu) is None  # one value
    hooked = _bn(8)
    hooked.register_forward_hook(lambda *_: None)
    assert fused.fused_kernels_for(z, hooked, relu) is None
    no_stats = nn.BatchNorm2d(8, track_running_stats=False)
    assert fused.fused_kernels_for(z, no_stats, relu) is None
    with ops.use_backend("torch"):
        assert fused.fused_kernels_for(z, _bn(8), relu) is None
    # And there the result is the modules' own, bit for bit.
    bn = _bn(8).eval()
    assert torch.equal(batch_norm_relu(z, copy.deepcopy(bn), relu), torch.relu(bn(z)))


def test_bad_inputs_are_named(kernels):
    z = _maps(2, 4, 3, 3)
    with pytest.raises(RuntimeError, match="channels-last"):
        kernels.bn_relu_forward(z.contiguous(), torch.ones(4), torch.zeros(4), 1e-5)
    with pytest.raises(RuntimeError, match="gamma must be a contiguous"):
        kernels.bn_relu_forward(z, torch.ones(5), torch.zeros(4), 1e-5)
    _, mean, var = kernels.bn_relu_forward(z, torch.ones(4), torch.zeros(4), 1e-5)
    with pytest.raises(RuntimeError, match="mean and var"):
        kernels.bn_relu_backward(z, z, mean.float(), var, torch.ones(4), torch.zeros(4), 1e-5)
    with pytest.raises(RuntimeError, match="beta must be a contiguous"):
        kernels.bn_relu_backward(z, z, mean, var, torch.ones(4), torch.zeros(3), 1e-5)
