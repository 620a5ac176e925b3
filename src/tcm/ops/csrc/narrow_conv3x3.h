// 3x3 convolutions (stride 1, zero padding 1) of channels-last maps whose groups are narrow:
// every output channel reads G = 1 (depthwise) or G = 2 input channels of its own group, as in
// TAM's depthwise convs and its 6-channel convs in 3 groups (see tcm/ops/narrow_conv3x3.py).
#pragma once

#include <torch/extension.h>

#include <optional>

namespace tcm {

// x (N, C, H, W) channels-last, weight (C, G, 3, 3), G = 1 or 2 (groups C / G), optional bias
// (C) -> y (N, C, H, W) channels-last.
at::Tensor narrow_conv3x3_forward(at::Tensor x, at::Tensor weight,
                                  std::optional<at::Tensor> bias);

// The gradient of narrow_conv3x3_forward's input from grad (N, C, H, W) channels-last.
at::Tensor narrow_conv3x3_input_grad(at::Tensor grad, at::Tensor weight);

// The gradient of its weight, (C, G, 3, 3), from grad and the input x (channels-last both).
// Summed per image in the maps' dtype, the images combined in float64 in order: the result
// does not depend on the number of threads.
at::Tensor narrow_conv3x3_weight_grad(at::Tensor grad, at::Tensor x, int64_t group_channels);

}  // namespace tcm
