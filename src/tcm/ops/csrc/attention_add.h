// TAM's temporal attention and the sum into the backbone in one op, forward and backward (see
// tcm/ops/attention_add.py): out = base + x * sigmoid(conv1d_T(mean_HW(x))).
#pragma once

#include <torch/extension.h>

#include <vector>

namespace tcm {

// base, x (N*T, C, H, W), each plain or channels-last; kernel (1, 1, k), k odd, zero padding
// (k - 1) / 2 along T -> [out (base's layout), weights (N*T, C), pooled (N*T, C)]: the
// per-frame, per-channel weights sigmoid(conv1d(pooled)) and the means pooled over H, W.
std::vector<at::Tensor> attention_add_forward(at::Tensor base, at::Tensor x, at::Tensor kernel,
                                              int64_t num_segments);

// [grad_x (x's layout), grad_kernel (1, 1, k)] from grad_out (N*T, C, H, W) and the forward's
// x, kernel, weights and pooled; the gradient of base is grad_out itself. grad_kernel is
// summed per clip in float64 and combined in clip order, whatever the number of threads.
std::vector<at::Tensor> attention_add_backward(at::Tensor grad_out, at::Tensor x,
                                               at::Tensor kernel, at::Tensor weights,
                                               at::Tensor pooled, int64_t num_segments);

}  // namespace tcm
