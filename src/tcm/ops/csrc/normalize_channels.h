// L2 normalisation over channels of channels-last maps, written in the plain layout: MTDM's
// reduced features before the correlation (see tcm/ops/normalize_channels.py).
#pragma once

#include <torch/extension.h>

#include <vector>

namespace tcm {

// x (N, C, H, W) channels-last -> [out = x / sqrt(sum_c x^2 + eps) (N, C, H, W) contiguous,
// inv_norm (N, H, W), the per-pixel 1 / sqrt(sum_c x^2 + eps)].
std::vector<at::Tensor> normalize_channels_forward(at::Tensor x, double eps);

// grad_x (N, C, H, W) channels-last of normalize_channels_forward from the gradient of its
// output (any layout), the output and inv_norm.
at::Tensor normalize_channels_backward(at::Tensor grad_out, at::Tensor out, at::Tensor inv_norm);

}  // namespace tcm
