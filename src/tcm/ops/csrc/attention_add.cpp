// TAM's temporal attention and sum in one op (see attention_add.h).
//
// Eagerly the attention is a mean, a transpose, a 1D convolution, a sigmoid, a product and a
// sum, each a pass over the maps (and their gradients another six), and on the demo's small
// maps x comes channels-last while base is plain, so several of them also change layouts.
// Here the forward reads x twice (the means, then the sum) and the backward reads the gradient
// and x once for the weights' gradients and the gradient once more for x's, each clip's T
// frames at a time (in cache between the two reads). Images of the other layout are turned
// into the plain (C, HW) layout in a per-thread buffer, tile by tile; the arithmetic runs on
// plain images only.

#include "attention_add.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "simd.h"

namespace tcm {
namespace {

using simd::kLanes;
using simd::load;
using simd::Vec;
using simd::vzero;

constexpr int64_t kTile = 16;

bool is_channels_last(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.dim() == 4, "tcm: ", name,
              " must be an (N*T, C, H, W) CPU tensor");
  if (t.is_contiguous()) return false;
  TORCH_CHECK(t.is_contiguous(at::MemoryFormat::ChannelsLast), "tcm: ", name,
              " must be contiguous, plain or channels-last");
  return true;
}

// One image of a (N*T, C, H, W) tensor as a plain (C, HW) array.
template <typename T>
void to_plain(const T* cl, int64_t C, int64_t HW, T* plain) {
  for (int64_t p0 = 0; p0 < HW; p0 += kTile)
    for (int64_t c0 = 0; c0 < C; c0 += kTile) {
      const int64_t p1 = std::min(HW, p0 + kTile), c1 = std::min(C, c0 + kTile);
      for (int64_t c = c0; c < c1; ++c)
        for (int64_t p = p0; p < p1; ++p) plain[c * HW + p] = cl[p * C + c];
    }
}

template <typename T>
void to_channels_last(const T* plain, int64_t C, int64_t HW, T* cl) {
  for (int64_t p0 = 0; p0 < HW; p0 += kTile)
    for (int64_t c0 = 0; c0 < C; c0 += kTile) {
      const int64_t p1 = std::min(HW, p0 + kTile), c1 = std::min(C, c0 + kTile);
      for (int64_t p = p0; p < p1; ++p)
        for (int64_t c = c0; c < c1; ++c) cl[p * C + c] = plain[c * HW + p];
    }
}

// Reads image i of a tensor as plain (C, HW): in place, or through a buffer.
template <typename T>
struct PlainImages {
  const T* data;
  bool channels_last;
  int64_t C, HW;
  std::vector<T> buf;
  PlainImages(const T* data, bool channels_last, int64_t C, int64_t HW)
      : data(data), channels_last(channels_last), C(C), HW(HW),
        buf(channels_last ? C * HW : 0) {}
  const T* operator()(int64_t i) {
    const T* image = data + i * C * HW;
    if (!channels_last) return image;
    to_plain(image, C, HW, buf.data());
    return buf.data();
  }
};

// Writes image i of a tensor from plain (C, HW): at(i) is where to write, done(i) puts it.
template <typename T>
struct PlainOutput {
  T* data;
  bool channels_last;
  int64_t C, HW;
  std::vector<T> buf;
  PlainOutput(T* data, bool channels_last, int64_t C, int64_t HW)
      : data(data), channels_last(channels_last), C(C), HW(HW),
        buf(channels_last ? C * HW : 0) {}
  T* at(int64_t i) { return channels_last ? buf.data() : data + i * C * HW; }
  void done(int64_t i) {
    if (channels_last) to_channels_last(buf.data(), C, HW, data + i * C * HW);
  }
};

// sum_p a[p] * b[p] (b = nullptr: sum_p a[p]) over n values, in vectors, then the lanes.
template <typename T>
T dot(const T* a, const T* b, int64_t n) {
  using V = Vec<T>;
  constexpr int L = kLanes<T>;
  V acc = vzero<V>();
  int64_t p = 0;
  for (; p + L <= n; p += L) acc += b ? load<V>(a + p) * load<V>(b + p) : load<V>(a + p);
  T total = T(0);
  for (int l = 0; l < L; ++l) total += acc[l];
  for (; p < n; ++p) total += b ? a[p] * b[p] : a[p];
  return total;
}

struct Clips {
  int64_t N, T, C, HW, k, pad;
  int64_t image() const { return C * HW; }
};

template <typename T>
Clips clips_of(const at::Tensor& x, const at::Tensor& kernel, int64_t num_segments) {
  TORCH_CHECK(num_segments > 0 && x.size(0) % num_segments == 0, "tcm: ", x.size(0),
              " frames do not split into clips of ", num_segments);
  TORCH_CHECK(kernel.dim() == 3 && kernel.size(0) == 1 && kernel.size(1) == 1 &&
                  kernel.size(2) % 2 == 1 && kernel.is_contiguous() &&
                  kernel.scalar_type() == x.scalar_type(),
              "tcm: the attention's kernel must be a contiguous (1, 1, k) tensor, k odd, of "
              "the maps' dtype");
  const int64_t k = kernel.size(2);
  return {x.size(0) / num_segments, num_segments, x.size(1), x.size(2) * x.size(3), k,
          (k - 1) / 2};
}

void check_per_channel(const at::Tensor& v, const at::Tensor& x, const char* name) {
  TORCH_CHECK(v.dim() == 2 && v.size(0) == x.size(0) && v.size(1) == x.size(1) &&
                  v.is_contiguous() && v.scalar_type() == x.scalar_type(),
              "tcm: ", name, " must be the forward's contiguous (N*T, C) tensor");
}

template <typename T>
void forward_kernel(const Clips& s, const T* base, bool base_cl, const T* x, bool x_cl,
                    const T* kernel, T* out, T* weights, T* pooled) {
  at::parallel_for(0, s.N, 1, [&](int64_t first, int64_t last) {
    PlainImages<T> xs(x, x_cl, s.C, s.HW), bases(base, base_cl, s.C, s.HW);
    PlainOutput<T> outs(out, base_cl, s.C, s.HW);
    for (int64_t n = first; n < last; ++n) {
      const int64_t i0 = n * s.T;
      for (int64_t t = 0; t < s.T; ++t) {
        const T* xi = xs(i0 + t);
        for (int64_t c = 0; c < s.C; ++c)
          pooled[(i0 + t) * s.C + c] = dot<T>(xi + c * s.HW, nullptr, s.HW) / T(s.HW);
      }
      for (int64_t t = 0; t < s.T; ++t)
        for (int64_t c = 0; c < s.C; ++c) {
          T a = T(0);
          for (int64_t j = 0; j < s.k; ++j) {
            const int64_t u = t + j - s.pad;
            if (u >= 0 && u < s.T) a += kernel[j] * pooled[(i0 + u) * s.C + c];
          }
          weights[(i0 + t) * s.C + c] = T(1) / (T(1) + std::exp(-a));
        }
      for (int64_t t = 0; t < s.T; ++t) {
        const int64_t i = i0 + t;
        const T* xi = xs(i);
        const T* bi = bases(i);
        T* oi = outs.at(i);
        for (int64_t c = 0; c < s.C; ++c) {
          const T w = weights[i * s.C + c];
          const T* xc = xi + c * s.HW;
          const T* bc = bi + c * s.HW;
          T* oc = oi + c * s.HW;
          for (int64_t p = 0; p < s.HW; ++p) oc[p] = bc[p] + xc[p] * w;
        }
        outs.done(i);
      }
    }
  });
}

template <typename T>
void backward_kernel(const Clips& s, const T* grad, bool grad_cl, const T* x, bool x_cl,
                     const T* kernel, const T* weights, const T* pooled, T* grad_x,
                     double* grad_kernel_per_clip) {
  at::parallel_for(0, s.N, 1, [&](int64_t first, int64_t last) {
    PlainImages<T> xs(x, x_cl, s.C, s.HW), grads(grad, grad_cl, s.C, s.HW);
    PlainOutput<T> grad_xs(grad_x, x_cl, s.C, s.HW);
    std::vector<T> grad_a(s.T * s.C), grad_pooled(s.T * s.C);
    for (int64_t n = first; n < last; ++n) {
      const int64_t i0 = n * s.T;
      // d(loss)/d(pre-sigmoid) = sum_p grad * x * w (1 - w).
      for (int64_t t = 0; t < s.T; ++t) {
        const T* gi = grads(i0 + t);
        const T* xi = xs(i0 + t);
        for (int64_t c = 0; c < s.C; ++c) {
          const T w = weights[(i0 + t) * s.C + c];
          grad_a[t * s.C + c] = dot<T>(gi + c * s.HW, xi + c * s.HW, s.HW) * w * (T(1) - w);
        }
      }
      // Through the convolution over T: to the means and to the kernel.
      double* gk = grad_kernel_per_clip + n * s.k;
      std::fill(gk, gk + s.k, 0.0);
      std::fill(grad_pooled.begin(), grad_pooled.end(), T(0));
      for (int64_t t = 0; t < s.T; ++t)
        for (int64_t j = 0; j < s.k; ++j) {
          const int64_t u = t + j - s.pad;
          if (u < 0 || u >= s.T) continue;
          for (int64_t c = 0; c < s.C; ++c) {
            const T ga = grad_a[t * s.C + c];
            grad_pooled[u * s.C + c] += kernel[j] * ga;
            gk[j] += double(ga) * double(pooled[(i0 + u) * s.C + c]);
          }
        }
      // grad_x = grad * w + grad_pooled / HW.
      for (int64_t t = 0; t < s.T; ++t) {
        const int64_t i = i0 + t;
        const T* gi = grads(i);
        T* oi = grad_xs.at(i);
        for (int64_t c = 0; c < s.C; ++c) {
          const T w = weights[i * s.C + c];
          const T mean_part = grad_pooled[t * s.C + c] / T(s.HW);
          const T* gc = gi + c * s.HW;
          T* oc = oi + c * s.HW;
          for (int64_t p = 0; p < s.HW; ++p) oc[p] = gc[p] * w + mean_part;
        }
        grad_xs.done(i);
      }
    }
  });
}

at::Tensor empty_in_layout(const at::Tensor& like, bool channels_last) {
  return at::empty_like(like, like.options().memory_format(channels_last
                                                              ? at::MemoryFormat::ChannelsLast
                                                              : at::MemoryFormat::Contiguous));
}

}  // namespace

std::vector<at::Tensor> attention_add_forward(at::Tensor base, at::Tensor x, at::Tensor kernel,
                                              int64_t num_segments) {
  const bool base_cl = is_channels_last(base, "the base maps");
  const bool x_cl = is_channels_last(x, "the attended maps");
  TORCH_CHECK(base.sizes() == x.sizes() && base.scalar_type() == x.scalar_type(),
              "tcm: the base and attended maps must have one shape and dtype");
  at::Tensor out = empty_in_layout(base, base_cl);
  at::Tensor weights = at::empty({x.size(0), x.size(1)}, x.options());
  at::Tensor pooled = at::empty({x.size(0), x.size(1)}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "attention_add_forward", [&] {
    forward_kernel<scalar_t>(clips_of<scalar_t>(x, kernel, num_segments),
                             base.data_ptr<scalar_t>(), base_cl, x.data_ptr<scalar_t>(), x_cl,
                             kernel.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
                             weights.data_ptr<scalar_t>(), pooled.data_ptr<scalar_t>());
  });
  return {out, weights, pooled};
}

std::vector<at::Tensor> attention_add_backward(at::Tensor grad_out, at::Tensor x,
                                               at::Tensor kernel, at::Tensor weights,
                                               at::Tensor pooled, int64_t num_segments) {
  const bool grad_cl = is_channels_last(grad_out, "the gradient");
  const bool x_cl = is_channels_last(x, "the attended maps");
  TORCH_CHECK(grad_out.sizes() == x.sizes() && grad_out.scalar_type() == x.scalar_type(),
              "tcm: the gradient must match the attended maps");
  check_per_channel(weights, x, "weights");
  check_per_channel(pooled, x, "pooled");
  at::Tensor grad_x = empty_in_layout(x, x_cl);
  at::Tensor grad_kernel = at::empty_like(kernel);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "attention_add_backward", [&] {
    const Clips s = clips_of<scalar_t>(x, kernel, num_segments);
    std::vector<double> per_clip(s.N * s.k);
    backward_kernel<scalar_t>(s, grad_out.data_ptr<scalar_t>(), grad_cl, x.data_ptr<scalar_t>(),
                              x_cl, kernel.data_ptr<scalar_t>(), weights.data_ptr<scalar_t>(),
                              pooled.data_ptr<scalar_t>(), grad_x.data_ptr<scalar_t>(),
                              per_clip.data());
    scalar_t* gk = grad_kernel.data_ptr<scalar_t>();
    for (int64_t j = 0; j < s.k; ++j) {
      double total = 0.0;
      for (int64_t n = 0; n < s.N; ++n) total += per_clip[n * s.k + j];
      gk[j] = scalar_t(total);
    }
  });
  return {grad_x, grad_kernel};
}

}  // namespace tcm
