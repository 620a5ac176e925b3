"""``relu(batch_norm(z))`` in training mode, fused on channels-last CPU maps.

TAM's and MTDM's layers end in a batch norm and a ReLU on few channels (6 to 64). Eagerly
that is about ten passes over the maps forward and backward (statistics, normalisation,
affine, ReLU, their gradients); the compiled kernel takes four, and on the demo's 8x8 maps a
forward + backward is 2.6 (64 channels) to 10 times (6 channels) faster
(``benchmarks/bench_demo_step.py`` shows its share of the step). It applies where the batch
norm normalises with the batch's statistics (training mode), the maps are channels-last float
CPU tensors and the compiled kernels load; elsewhere the eager modules run. The result equals
the eager one up to float rounding (the statistics are summed in another order); the running
statistics are updated as :class:`torch.nn.BatchNorm2d` updates them.
"""

from __future__ import annotations

import torch
from torch import nn

from tcm.ops import backend


class _CompiledBatchNormReLU(torch.autograd.Function):
    """``(z, gamma, beta) -> (y, mean, var)``: ``y = relu(batch_norm(z))`` channels-last,
    the batch's ``mean`` and biased ``var`` (float64, not differentiable)."""

    @staticmethod
    def forward(ctx, z, gamma, beta, eps, kernels):
        y, mean, var = kernels.bn_relu_forward(z, gamma, beta, eps)
        ctx.save_for_backward(z, mean, var, gamma, beta)
        ctx.eps, ctx.kernels = eps, kernels
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    def backward(ctx, grad, _mean, _var):
        z, mean, var, gamma, beta = ctx.saved_tensors
        grad = grad.contiguous(memory_format=torch.channels_last)
        grad_z, grad_gamma, grad_beta = ctx.kernels.bn_relu_backward(
            grad, z, mean, var, gamma, beta, ctx.eps
        )
        return grad_z, grad_gamma, grad_beta, None, None


def _has_hooks(module: nn.Module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks or module._backward_hooks)


def fused_kernels_for(z: torch.Tensor, bn: nn.BatchNorm2d, relu: nn.Module):
    """The compiled kernels when ``relu(bn(z))`` can run fused, else ``None``."""
    if not (
        bn.training
        and bn.affine
        and bn.track_running_stats
        and z.dim() == 4
        and z.dtype in (torch.float32, torch.float64)
        and bn.weight.dtype == z.dtype
        and bn.running_mean.dtype == bn.running_var.dtype
        and z.is_contiguous(memory_format=torch.channels_last)
        and z.numel() > z.shape[1]  # more than one value per channel
        and not (_has_hooks(bn) or _has_hooks(relu))
    ):
        return None
    return backend.path_for(z).kernels


def batch_norm_relu(z: torch.Tensor, bn: nn.BatchNorm2d, relu: nn.Module) -> torch.Tensor:
    """``relu(bn(z))``: ``(N, C, H, W)`` -> ``(N, C, H, W)``, fused where it can be (see the
    module's docstring), with ``bn``'s running statistics updated as its forward would."""
    kernels = fused_kernels_for(z, bn, relu)
    if kernels is None:
        return relu(bn(z))
    y, mean, var = _CompiledBatchNormReLU.apply(z, bn.weight, bn.bias, float(bn.eps), kernels)
    with torch.no_grad():
        bn.num_batches_tracked.add_(1)
        momentum = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
    kernels.bn_update_running_stats(
        bn.running_mean, bn.running_var, mean, var, float(momentum), z.numel() // z.shape[1]
    )
    return y
