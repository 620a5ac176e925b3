// L2 normalisation over channels, channels-last in, plain layout out (see normalize_channels.h).
//
// One image at a time: its (HW, C) channels-last block is read once for the per-pixel sums
// of squares and once more, transposed, to write the (C, HW) output. At MTDM's small maps (8x8,
// 64 channels: 16 kB per image) both reads hit the first-level cache. The eager ops take five
// passes forward (square, sum, add, rsqrt, product), about as many backward, and two copies
// between layouts. Each sum over channels is taken in a fixed order, whatever the threads.

#include "normalize_channels.h"

#include <ATen/Parallel.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "simd.h"

namespace tcm {
namespace {

using simd::kLanes;
using simd::load;
using simd::Vec;
using simd::vzero;

void check_layouts(const at::Tensor& x) {
  TORCH_CHECK(x.device().is_cpu() && x.dim() == 4, "tcm: x must be an (N, C, H, W) CPU tensor");
  TORCH_CHECK(x.is_contiguous(at::MemoryFormat::ChannelsLast), "tcm: x must be channels-last");
}

}  // namespace

std::vector<at::Tensor> normalize_channels_forward(at::Tensor x, double eps) {
  check_layouts(x);
  const int64_t N = x.size(0), C = x.size(1), HW = x.size(2) * x.size(3);
  at::Tensor out = at::empty(x.sizes(), x.options());
  at::Tensor inv_norm = at::empty({N, x.size(2), x.size(3)}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "tcm_normalize_channels_forward", [&] {
    using T = scalar_t;
    constexpr int64_t L = kLanes<T>;
    const T* src = x.data_ptr<T>();
    T* dst = out.data_ptr<T>();
    T* inv = inv_norm.data_ptr<T>();
    at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
      for (int64_t n = begin; n < end; ++n) {
        const T* pixels = src + n * HW * C;  // (HW, C)
        T* r = inv + n * HW;
        for (int64_t p = 0; p < HW; ++p) {
          const T* values = pixels + p * C;
          // Lane l sums channels l, l + L, ...: independent chains, not one of C additions.
          Vec<T> sums = vzero<Vec<T>>();
          int64_t c = 0;
          for (; c + L <= C; c += L) {
            const Vec<T> v = load<Vec<T>>(values + c);
            sums += v * v;
          }
          T sum = 0;
          for (int64_t l = 0; l < L; ++l) sum += sums[l];
          for (; c < C; ++c) sum += values[c] * values[c];
          r[p] = T(1) / std::sqrt(sum + T(eps));
        }
        T* planes = dst + n * C * HW;  // (C, HW)
        for (int64_t c = 0; c < C; ++c) {
          for (int64_t p = 0; p < HW; ++p) planes[c * HW + p] = pixels[p * C + c] * r[p];
        }
      }
    });
  });
  return {out, inv_norm};
}

at::Tensor normalize_channels_backward(at::Tensor grad_out, at::Tensor out, at::Tensor inv_norm) {
  TORCH_CHECK(out.dim() == 4 && out.is_contiguous() && grad_out.sizes() == out.sizes() &&
                  inv_norm.is_contiguous() && inv_norm.numel() * out.size(1) == out.numel(),
              "tcm: normalize_channels_backward takes normalize_channels_forward's results");
  grad_out = grad_out.contiguous();
  const int64_t N = out.size(0), C = out.size(1), HW = out.size(2) * out.size(3);
  at::Tensor grad_x = at::empty(out.sizes(), out.options(), at::MemoryFormat::ChannelsLast);
  AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "tcm_normalize_channels_backward", [&] {
    using T = scalar_t;
    const T* g = grad_out.data_ptr<T>();
    const T* y = out.data_ptr<T>();
    const T* inv = inv_norm.data_ptr<T>();
    T* dst = grad_x.data_ptr<T>();
    at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
      std::vector<T> dots(HW);
      for (int64_t n = begin; n < end; ++n) {
        const T* gn = g + n * C * HW;  // (C, HW)
        const T* yn = y + n * C * HW;
        const T* r = inv + n * HW;
        // d/dx of x r: r (g - y sum_c g y).
        std::fill(dots.begin(), dots.end(), T(0));
        for (int64_t c = 0; c < C; ++c) {
          for (int64_t p = 0; p < HW; ++p) dots[p] += gn[c * HW + p] * yn[c * HW + p];
        }
        T* pixels = dst + n * HW * C;  // (HW, C)
        for (int64_t p = 0; p < HW; ++p) {
          for (int64_t c = 0; c < C; ++c) {
            pixels[p * C + c] = r[p] * (gn[c * HW + p] - yn[c * HW + p] * dots[p]);
          }
        }
      }
    });
  });
  return grad_x;
}

}  // namespace tcm
