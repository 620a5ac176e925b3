// Training-mode batch norm followed by ReLU on channels-last maps (see batch_norm_relu.h).
//
// A channels-last (N, C, H, W) tensor is a flat array whose element i belongs to channel
// i % C. The kernels walk it in blocks of P = lcm(C, lanes) elements, in whole vectors, with
// the per-channel values (mean, scale, ...) repeated over one block: every loop is a vector
// loop whatever C is (6 or 64). Four passes in all, where the eager ops take about ten: the
// statistics and the normalisation + ReLU forward, the two sums and the input gradient
// backward, which recomputes the ReLU's mask from z rather than reading y. Sums are taken in
// float, in registers, over chunks of a fixed number of blocks and combined in float64 in
// chunk order, so results do not depend on the number of threads; the forward's sums are of
// z minus the first pixel's values, which keeps the variance from cancelling.

#include "batch_norm_relu.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <type_traits>
#include <vector>

#include "simd.h"

namespace tcm {
namespace {

using simd::broadcast;
using simd::kLanes;
using simd::load;
using simd::store;
using simd::Vec;
using simd::vzero;

// Elements per chunk of the sums (about 32 KB of floats).
constexpr int64_t kChunkElements = 8192;

void check_maps(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.dim() == 4, "tcm: ", name,
              " must be an (N, C, H, W) CPU tensor");
  TORCH_CHECK(t.is_contiguous(at::MemoryFormat::ChannelsLast), "tcm: ", name,
              " must be channels-last");
}

void check_channel_vector(const at::Tensor& v, const at::Tensor& z, const char* name) {
  TORCH_CHECK(v.numel() == z.size(1) && v.is_contiguous() && v.scalar_type() == z.scalar_type(),
              "tcm: ", name, " must be a contiguous (C,) vector of the maps' dtype");
}

void check_statistics(const at::Tensor& mean, const at::Tensor& var, int64_t C) {
  TORCH_CHECK(mean.scalar_type() == at::kDouble && var.scalar_type() == at::kDouble &&
                  mean.numel() == C && var.numel() == C && mean.is_contiguous() &&
                  var.is_contiguous(),
              "tcm: mean and var must be the float64 (C,) vectors of bn_relu_forward");
}

// The flat layout: n elements, C channels, blocks of P elements.
struct Blocks {
  int64_t n, C, P, blocks, chunk_blocks, chunks;
  template <typename T>
  static Blocks of(const at::Tensor& z) {
    Blocks b;
    b.n = z.numel();
    b.C = z.size(1);
    b.P = std::lcm<int64_t>(b.C, kLanes<T>);
    b.blocks = b.n / b.P;
    b.chunk_blocks = std::max<int64_t>(1, kChunkElements / b.P);
    b.chunks = (b.blocks + b.chunk_blocks - 1) / b.chunk_blocks;
    return b;
  }
  int64_t tail() const { return blocks * P; }  // first element after the whole blocks
};

// Per-channel values repeated over one block of P elements.
template <typename T>
std::vector<T> over_block(const std::vector<double>& per_channel, int64_t P) {
  std::vector<T> out(P);
  for (int64_t i = 0; i < P; ++i) out[i] = T(per_channel[i % per_channel.size()]);
  return out;
}

// One chunk's two sums, blocks first .. last - 1, into out (2 P doubles): add(block, s1, s2,
// vectors) adds one block's P / lanes vectors. With few vectors per block (kVectors known at
// compile time) the sums stay in registers, kInterleave of each taking every kInterleave-th
// block so that one block's adds need not wait for the last's; they are combined in float64.
template <typename T, int kVectors, typename Block>
void chunk_sums(int64_t first, int64_t last, Block add, double* out) {
  using V = Vec<T>;
  constexpr int L = kLanes<T>;
  constexpr int kInterleave = kVectors >= 4 ? 1 : 4 / kVectors;
  V s1[kInterleave][kVectors], s2[kInterleave][kVectors];
  for (int u = 0; u < kInterleave; ++u)
    for (int v = 0; v < kVectors; ++v) s1[u][v] = s2[u][v] = vzero<V>();
  const std::integral_constant<int64_t, kVectors> vectors;
  int64_t block = first;
  for (; block + kInterleave <= last; block += kInterleave)
    for (int u = 0; u < kInterleave; ++u) add(block + u, s1[u], s2[u], vectors);
  for (int u = 0; block < last; ++block, ++u) add(block, s1[u], s2[u], vectors);
  for (int v = 0; v < kVectors; ++v)
    for (int l = 0; l < L; ++l) {
      double t1 = 0.0, t2 = 0.0;
      for (int u = 0; u < kInterleave; ++u) {
        t1 += double(s1[u][v][l]);
        t2 += double(s2[u][v][l]);
      }
      out[v * L + l] = t1;
      out[kVectors * L + v * L + l] = t2;
    }
}

// chunk_sums for any number of vectors per block, the sums kept in memory.
template <typename T, typename Block>
void chunk_sums_any(int64_t vectors, int64_t first, int64_t last, Block add, double* out) {
  using V = Vec<T>;
  constexpr int L = kLanes<T>;
  std::vector<V> acc(2 * vectors, vzero<V>());
  for (int64_t block = first; block < last; ++block)
    add(block, acc.data(), acc.data() + vectors, vectors);
  for (int64_t v = 0; v < 2 * vectors; ++v)
    for (int l = 0; l < L; ++l) out[v * L + l] = double(acc[v][l]);
}

// Two per-channel sums, sum_i f(i) over all elements: add(block, acc1, acc2, vectors) adds
// one whole block (P / lanes vectors each), one(i, s1, s2) one element of the tail. Chunks of
// chunk_blocks blocks are summed apart and combined in order, whatever the thread count.
template <typename T, typename Block, typename One>
std::vector<double> two_sums(const Blocks& b, Block add, One one) {
  constexpr int L = kLanes<T>;
  const int64_t vectors = b.P / L;
  std::vector<double> partial(b.chunks * 2 * b.P, 0.0);
  at::parallel_for(0, b.chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t chunk = begin; chunk < end; ++chunk) {
      const int64_t first = chunk * b.chunk_blocks;
      const int64_t last = std::min(b.blocks, first + b.chunk_blocks);
      double* out = partial.data() + chunk * 2 * b.P;
      switch (vectors) {
        case 1: chunk_sums<T, 1>(first, last, add, out); break;
        case 2: chunk_sums<T, 2>(first, last, add, out); break;
        case 3: chunk_sums<T, 3>(first, last, add, out); break;
        case 4: chunk_sums<T, 4>(first, last, add, out); break;
        default: chunk_sums_any<T>(vectors, first, last, add, out);
      }
    }
  });
  std::vector<double> sums(2 * b.C, 0.0);
  for (int64_t chunk = 0; chunk < b.chunks; ++chunk)
    for (int64_t i = 0; i < b.P; ++i) {
      sums[i % b.C] += partial[chunk * 2 * b.P + i];
      sums[b.C + i % b.C] += partial[chunk * 2 * b.P + b.P + i];
    }
  for (int64_t i = b.tail(); i < b.n; ++i) one(i, sums[i % b.C], sums[b.C + i % b.C]);
  return sums;
}

// The normalisation of the forward, t = z * scale + shift per channel (y = relu(t)), as
// per-block vectors of scale and shift: the backward recomputes t from z with the same values
// and the same arithmetic, so its ReLU mask is the forward's without reading y.
template <typename T>
struct Affine {
  std::vector<T> scale, shift;  // P values each
};

template <typename T>
Affine<T> affine_of(const double* mean, const double* var, const T* gamma, const T* beta,
                    double eps, int64_t C, int64_t P) {
  std::vector<double> scale(C), shift(C);
  for (int64_t c = 0; c < C; ++c) {
    scale[c] = double(gamma[c]) / std::sqrt(var[c] + eps);
    shift[c] = double(beta[c]) - mean[c] * scale[c];
  }
  return {over_block<T>(scale, P), over_block<T>(shift, P)};
}

template <typename V>
inline __attribute__((always_inline)) V normalized(V z, V scale, V shift) {
  return z * scale + shift;
}

template <typename T>
void forward_kernel(const Blocks& b, const T* z, const T* gamma, const T* beta, double eps,
                    T* y, double* mean, double* var) {
  using V = Vec<T>;
  constexpr int L = kLanes<T>;
  const int64_t vectors = b.P / L, C = b.C;
  const double count = double(b.n / C);
  // Sums of d = z - z[first pixel] and d * d.
  std::vector<double> first(z, z + C);
  const std::vector<T> shift_block = over_block<T>(first, b.P);
  const T* k = shift_block.data();
  const std::vector<double> sums = two_sums<T>(
      b,
      [&](int64_t block, V* s1, V* s2, auto vectors) {
        const T* zb = z + block * b.P;
        for (int64_t v = 0; v < vectors; ++v) {
          const V d = load<V>(zb + v * L) - load<V>(k + v * L);
          s1[v] += d;
          s2[v] += d * d;
        }
      },
      [&](int64_t i, double& s1, double& s2) {
        const double d = double(z[i]) - first[i % C];
        s1 += d;
        s2 += d * d;
      });
  for (int64_t c = 0; c < C; ++c) {
    const double m = sums[c] / count;
    mean[c] = first[c] + m;
    var[c] = std::max(sums[C + c] / count - m * m, 0.0);
  }
  const Affine<T> affine = affine_of(mean, var, gamma, beta, eps, C, b.P);
  const T* sc = affine.scale.data();
  const T* sh = affine.shift.data();
  at::parallel_for(0, b.blocks, std::max<int64_t>(1, b.chunk_blocks), [&](int64_t lo, int64_t hi) {
    const V zero = vzero<V>();
    for (int64_t block = lo; block < hi; ++block)
      for (int64_t v = 0; v < vectors; ++v) {
        const int64_t i = block * b.P + v * L;
        const V t = normalized(load<V>(z + i), load<V>(sc + v * L), load<V>(sh + v * L));
        store(y + i, t > zero ? t : zero);
      }
  });
  for (int64_t i = b.tail(); i < b.n; ++i)
    y[i] = std::max(normalized(z[i], sc[i % b.P], sh[i % b.P]), T(0));
}

template <typename T>
void backward_kernel(const Blocks& b, const T* grad, const T* z, const double* mean,
                     const double* var, const T* gamma, const T* beta, double eps, T* gz,
                     T* ggamma, T* gbeta) {
  using V = Vec<T>;
  constexpr int L = kLanes<T>;
  const int64_t vectors = b.P / L, C = b.C;
  const double count = double(b.n / C);
  const std::vector<T> mean_block = over_block<T>(std::vector<double>(mean, mean + C), b.P);
  const T* mb = mean_block.data();
  const Affine<T> affine = affine_of(mean, var, gamma, beta, eps, C, b.P);
  const T* sc = affine.scale.data();
  const T* sh = affine.shift.data();
  // Where the forward's ReLU passed t = normalized(z) > 0.
  auto passed = [&](int64_t i, int64_t j) {
    return normalized(load<V>(z + i), load<V>(sc + j), load<V>(sh + j)) > vzero<V>();
  };
  // Sums of the masked gradient g (zero where the ReLU's output is) and of g * (z - mean).
  const std::vector<double> sums = two_sums<T>(
      b,
      [&](int64_t block, V* s1, V* s2, auto vectors) {
        const V zero = vzero<V>();
        const int64_t base = block * b.P;
        for (int64_t v = 0; v < vectors; ++v) {
          const int64_t i = base + v * L;
          const V g = passed(i, v * L) ? load<V>(grad + i) : zero;
          s1[v] += g;
          s2[v] += g * (load<V>(z + i) - load<V>(mb + v * L));
        }
      },
      [&](int64_t i, double& s1, double& s2) {
        const int64_t j = i % b.P;
        const double g = normalized(z[i], sc[j], sh[j]) > T(0) ? double(grad[i]) : 0.0;
        s1 += g;
        s2 += g * double(z[i] - mb[j]);
      });
  // grad_z = k1 * g + k2 * (z - mean) + k3.
  std::vector<double> k1(C), k2(C), k3(C);
  for (int64_t c = 0; c < C; ++c) {
    const double invstd = 1.0 / std::sqrt(var[c] + eps);
    const double a = double(gamma[c]) * invstd;
    ggamma[c] = T(sums[C + c] * invstd);
    gbeta[c] = T(sums[c]);
    k1[c] = a;
    k2[c] = -a * invstd * invstd * sums[C + c] / count;
    k3[c] = -a * sums[c] / count;
  }
  const std::vector<T> k1b = over_block<T>(k1, b.P), k2b = over_block<T>(k2, b.P),
                       k3b = over_block<T>(k3, b.P);
  at::parallel_for(0, b.blocks, std::max<int64_t>(1, b.chunk_blocks), [&](int64_t lo, int64_t hi) {
    const V zero = vzero<V>();
    for (int64_t block = lo; block < hi; ++block)
      for (int64_t v = 0; v < vectors; ++v) {
        const int64_t i = block * b.P + v * L, j = v * L;
        const V g = passed(i, j) ? load<V>(grad + i) : zero;
        store(gz + i, g * load<V>(k1b.data() + j) +
                          (load<V>(z + i) - load<V>(mb + j)) * load<V>(k2b.data() + j) +
                          load<V>(k3b.data() + j));
      }
  });
  for (int64_t i = b.tail(); i < b.n; ++i) {
    const int64_t j = i % b.P;
    const T g = normalized(z[i], sc[j], sh[j]) > T(0) ? grad[i] : T(0);
    gz[i] = g * k1b[j] + (z[i] - mb[j]) * k2b[j] + k3b[j];
  }
}

}  // namespace

std::vector<at::Tensor> bn_relu_forward(at::Tensor z, at::Tensor gamma, at::Tensor beta,
                                        double eps) {
  check_maps(z, "the maps");
  check_channel_vector(gamma, z, "gamma");
  check_channel_vector(beta, z, "beta");
  const int64_t C = z.size(1);
  TORCH_CHECK(C > 0 && z.numel() > 0, "tcm: batch norm needs channels and pixels");
  const auto options = z.options().memory_format(at::MemoryFormat::ChannelsLast);
  at::Tensor y = at::empty_like(z, options);
  at::Tensor mean = at::empty({C}, z.options().dtype(at::kDouble));
  at::Tensor var = at::empty({C}, z.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "bn_relu_forward", [&] {
    forward_kernel<scalar_t>(Blocks::of<scalar_t>(z), z.data_ptr<scalar_t>(),
                             gamma.data_ptr<scalar_t>(), beta.data_ptr<scalar_t>(), eps,
                             y.data_ptr<scalar_t>(), mean.data_ptr<double>(),
                             var.data_ptr<double>());
  });
  return {y, mean, var};
}

void bn_update_running_stats(at::Tensor running_mean, at::Tensor running_var, at::Tensor mean,
                             at::Tensor var, double momentum, int64_t count) {
  const int64_t C = running_mean.numel();
  TORCH_CHECK(running_mean.device().is_cpu() && running_var.device().is_cpu() &&
                  running_mean.is_contiguous() && running_var.is_contiguous() &&
                  running_var.numel() == C &&
                  running_var.scalar_type() == running_mean.scalar_type(),
              "tcm: the running statistics must be contiguous (C,) CPU vectors of one dtype");
  check_statistics(mean, var, C);
  TORCH_CHECK(count > 1, "tcm: the unbiased variance needs more than one value per channel");
  const double* m = mean.data_ptr<double>();
  const double* v = var.data_ptr<double>();
  const double unbias = double(count) / double(count - 1);
  AT_DISPATCH_FLOATING_TYPES(running_mean.scalar_type(), "bn_update_running_stats", [&] {
    scalar_t* rm = running_mean.data_ptr<scalar_t>();
    scalar_t* rv = running_var.data_ptr<scalar_t>();
    for (int64_t c = 0; c < C; ++c) {
      rm[c] = scalar_t((1.0 - momentum) * double(rm[c]) + momentum * m[c]);
      rv[c] = scalar_t((1.0 - momentum) * double(rv[c]) + momentum * v[c] * unbias);
    }
  });
  running_mean.unsafeGetTensorImpl()->bump_version();
  running_var.unsafeGetTensorImpl()->bump_version();
}

std::vector<at::Tensor> bn_relu_backward(at::Tensor grad, at::Tensor z, at::Tensor mean,
                                         at::Tensor var, at::Tensor gamma, at::Tensor beta,
                                         double eps) {
  check_maps(z, "the maps");
  check_maps(grad, "the gradient");
  check_channel_vector(gamma, z, "gamma");
  check_channel_vector(beta, z, "beta");
  TORCH_CHECK(grad.sizes() == z.sizes() && grad.scalar_type() == z.scalar_type(),
              "tcm: the gradient must match the maps");
  const int64_t C = z.size(1);
  check_statistics(mean, var, C);
  at::Tensor gz = at::empty_like(z, z.options().memory_format(at::MemoryFormat::ChannelsLast));
  at::Tensor ggamma = at::empty_like(gamma);
  at::Tensor gbeta = at::empty_like(gamma);
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "bn_relu_backward", [&] {
    backward_kernel<scalar_t>(Blocks::of<scalar_t>(z), grad.data_ptr<scalar_t>(),
                              z.data_ptr<scalar_t>(), mean.data_ptr<double>(),
                              var.data_ptr<double>(), gamma.data_ptr<scalar_t>(),
                              beta.data_ptr<scalar_t>(), eps, gz.data_ptr<scalar_t>(),
                              ggamma.data_ptr<scalar_t>(), gbeta.data_ptr<scalar_t>());
  });
  return {gz, ggamma, gbeta};
}

}  // namespace tcm
