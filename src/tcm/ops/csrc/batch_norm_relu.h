// Training-mode batch norm followed by ReLU on channels-last maps, forward and backward: the
// (batch norm, ReLU) pairs of TAM's and MTDM's layers (see tcm/ops/batch_norm_relu.py).
#pragma once

#include <torch/extension.h>

#include <vector>

namespace tcm {

// relu(batch_norm(z)) with the batch's statistics: z (N, C, H, W) channels-last ->
// [y (channels-last), mean (C), biased variance (C)], the statistics in float64.
std::vector<at::Tensor> bn_relu_forward(at::Tensor z, at::Tensor gamma, at::Tensor beta,
                                        double eps);

// [grad_z (channels-last), grad_gamma, grad_beta] of bn_relu_forward from its input z and
// statistics (the ReLU's mask recomputed from z as the forward computed it).
std::vector<at::Tensor> bn_relu_backward(at::Tensor grad, at::Tensor z, at::Tensor mean,
                                         at::Tensor var, at::Tensor gamma, at::Tensor beta,
                                         double eps);

// The running statistics updated as torch.nn.BatchNorm2d updates them, from the batch's mean
// and biased variance of bn_relu_forward over count values per channel (the variance made
// unbiased): r = (1 - momentum) r + momentum x, in float64, rounded once.
void bn_update_running_stats(at::Tensor running_mean, at::Tensor running_var, at::Tensor mean,
                             at::Tensor var, double momentum, int64_t count);

}  // namespace tcm
