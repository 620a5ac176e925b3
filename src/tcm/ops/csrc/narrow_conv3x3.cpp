// Narrow 3x3 convolutions of channels-last maps (see narrow_conv3x3.h).
//
// A channels-last image row is a flat run of W * C values, value k of channel k % C. The
// kernels walk each output row in whole vectors over that run, whatever C is (6 or 64): tap
// (i, j) of the kernel is input row h + i - 1 shifted by (j - 1) * C values, times the
// weights of the lanes' channels, which repeat over blocks of P = lcm(C, lanes) values. With
// G = 2 the lane of output channel o takes input channel 2 * (o / 2) + g of the shifted row,
// a shuffle within pairs of lanes (C is even, so pairs start at even positions). Each image is
// first copied into a buffer with a zero border, so no tap needs a bounds check. oneDNN's
// kernels for these shapes (few channels per group, 8x8 maps) are several times slower.

#include "narrow_conv3x3.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <type_traits>
#include <utility>
#include <vector>

#include "simd.h"

namespace tcm {
namespace {

using simd::kLanes;
using simd::load;
using simd::store;
using simd::Vec;
using simd::vzero;

constexpr int kTaps = 9;
// Pixels per chunk of the weight gradient's sums (a chunk is whole images).
constexpr int64_t kChunkPixels = 1024;

template <typename T, int g, size_t... l>
constexpr typename simd::VecOf<T>::itype pair_mask(std::index_sequence<l...>) {
  using E = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
  return typename simd::VecOf<T>::itype{E((l & ~size_t(1)) + g)...};
}

// Lane l of the result is lane l of v (G = 1) or lane (l & ~1) + g (G = 2): the input channel
// g of the group of the lane's output channel.
template <typename T, int G, int g>
inline __attribute__((always_inline)) Vec<T> group_lanes(Vec<T> v) {
  if constexpr (G == 1) {
    return v;
  } else {
    return __builtin_shuffle(v, pair_mask<T, g>(std::make_index_sequence<kLanes<T>>()));
  }
}

// One call's layout: N images of H rows of W * C values; G input channels per output
// channel; blocks of P values.
struct Maps {
  int64_t N, C, H, W, G, P;
  int64_t row() const { return W * C; }
  int64_t image() const { return H * row(); }
  int64_t padded_row() const { return (W + 2) * C; }
  int64_t padded_image() const { return (H + 2) * padded_row(); }
  int64_t blocks() const { return row() / P; }  // whole blocks per row; the rest is scalar
};

void check_maps(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.dim() == 4, "tcm: ", name,
              " must be an (N, C, H, W) CPU tensor");
  TORCH_CHECK(t.is_contiguous(at::MemoryFormat::ChannelsLast), "tcm: ", name,
              " must be channels-last");
}

template <typename T>
Maps maps_of(const at::Tensor& x, int64_t group_channels) {
  TORCH_CHECK(group_channels == 1 || group_channels == 2,
              "tcm: narrow convolutions read 1 or 2 input channels per group, got ",
              group_channels);
  Maps m{x.size(0), x.size(1), x.size(2), x.size(3), group_channels, 0};
  TORCH_CHECK(m.C > 0 && m.C % m.G == 0, "tcm: ", m.C, " channels do not split into groups of ",
              m.G);
  m.P = std::lcm<int64_t>(m.C, kLanes<T>);
  return m;
}

void check_weight(const at::Tensor& weight, const at::Tensor& x) {
  TORCH_CHECK(weight.dim() == 4 && weight.size(0) == x.size(1) && weight.size(2) == 3 &&
                  weight.size(3) == 3 && weight.is_contiguous() &&
                  weight.scalar_type() == x.scalar_type(),
              "tcm: the weight must be a contiguous (C, G, 3, 3) tensor of the maps' dtype");
}

// Weights w (C, G, 3, 3) as table[(t * G + g) * P + p] = w[p % C, g, tap t].
template <typename T>
std::vector<T> weight_table(const Maps& m, const T* w) {
  std::vector<T> table(kTaps * m.G * m.P);
  for (int t = 0; t < kTaps; ++t)
    for (int64_t g = 0; g < m.G; ++g)
      for (int64_t p = 0; p < m.P; ++p)
        table[(t * m.G + g) * m.P + p] = w[((p % m.C) * m.G + g) * kTaps + t];
  return table;
}

// Image x into buf's interior; buf's zero border is never written.
template <typename T>
void copy_padded(const Maps& m, const T* x, T* buf) {
  for (int64_t h = 0; h < m.H; ++h)
    std::memcpy(buf + (h + 1) * m.padded_row() + m.C, x + h * m.row(), m.row() * sizeof(T));
}

// fn(n, buf) for every image n on torch's threads, buf a zero-bordered image buffer.
template <typename T, typename Fn>
void for_each_image(const Maps& m, int64_t first, int64_t last, Fn fn) {
  std::vector<T> buf(m.padded_image(), T(0));
  for (int64_t n = first; n < last; ++n) fn(n, buf.data());
}

// Input position of output value k's tap (i, j), input channel g, in the padded image (the
// output's row 0 reads padded rows 0-2).
inline int64_t tap_offset(const Maps& m, int64_t h, int64_t k, int i, int j, int64_t g) {
  const int64_t channel_start = m.G == 2 ? (k & ~int64_t(1)) + g : k;
  return (h + i) * m.padded_row() + j * m.C + channel_start;
}

// One image's output y (H rows of W * C) from its padded input buf.
template <typename T, int G>
void conv_image(const Maps& m, const T* buf, const T* table, const T* bias, T* y) {
  using V = Vec<T>;
  constexpr int L = kLanes<T>;
  const int64_t P = m.P, row = m.row(), prow = m.padded_row(), C = m.C;
  const int64_t blocks = m.blocks();
  for (int64_t v = 0; v < P / L; ++v) {
    V w[kTaps][G];
    for (int t = 0; t < kTaps; ++t)
      for (int g = 0; g < G; ++g) w[t][g] = load<V>(table + (t * G + g) * P + v * L);
    const V b = bias ? load<V>(bias + v * L) : vzero<V>();
    for (int64_t h = 0; h < m.H; ++h)
      for (int64_t block = 0; block < blocks; ++block) {
        const int64_t k = block * P + v * L;
        const T* in = buf + h * prow + k;
        V acc = b;
        for (int i = 0; i < 3; ++i)
          for (int j = 0; j < 3; ++j) {
            const V s = load<V>(in + i * prow + j * C);
            acc += w[i * 3 + j][0] * group_lanes<T, G, 0>(s);
            if constexpr (G == 2) acc += w[i * 3 + j][1] * group_lanes<T, G, 1>(s);
          }
        store(y + h * row + k, acc);
      }
  }
  for (int64_t h = 0; h < m.H; ++h)
    for (int64_t k = blocks * P; k < row; ++k) {
      const int64_t p = k - blocks * P;
      T acc = bias ? bias[p] : T(0);
      for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j)
          for (int g = 0; g < G; ++g)
            acc += table[((i * 3 + j) * G + g) * P + p] * buf[tap_offset(m, h, k, i, j, g)];
      y[h * row + k] = acc;
    }
}

// One image's contribution to the weight gradient's sums, acc[(t * G + g) * P + p], from the
// output gradient gy and the padded input buf.
template <typename T, int G>
void weight_grad_image(const Maps& m, const T* buf, const T* gy, T* acc) {
  using V = Vec<T>;
  constexpr int L = kLanes<T>;
  const int64_t P = m.P, row = m.row(), prow = m.padded_row(), C = m.C;
  const int64_t blocks = m.blocks();
  for (int64_t v = 0; v < P / L; ++v) {
    V s[kTaps][G];
    for (int t = 0; t < kTaps; ++t)
      for (int g = 0; g < G; ++g) s[t][g] = load<V>(acc + (t * G + g) * P + v * L);
    for (int64_t h = 0; h < m.H; ++h)
      for (int64_t block = 0; block < blocks; ++block) {
        const int64_t k = block * P + v * L;
        const V gv = load<V>(gy + h * row + k);
        const T* in = buf + h * prow + k;
        for (int i = 0; i < 3; ++i)
          for (int j = 0; j < 3; ++j) {
            const V x = load<V>(in + i * prow + j * C);
            s[i * 3 + j][0] += gv * group_lanes<T, G, 0>(x);
            if constexpr (G == 2) s[i * 3 + j][1] += gv * group_lanes<T, G, 1>(x);
          }
      }
    for (int t = 0; t < kTaps; ++t)
      for (int g = 0; g < G; ++g) store(acc + (t * G + g) * P + v * L, s[t][g]);
  }
  for (int64_t h = 0; h < m.H; ++h)
    for (int64_t k = blocks * P; k < row; ++k) {
      const int64_t p = k - blocks * P;
      for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j)
          for (int g = 0; g < G; ++g)
            acc[((i * 3 + j) * G + g) * P + p] += gy[h * row + k] * buf[tap_offset(m, h, k, i, j, g)];
    }
}

// fn(std::integral_constant<int, G>) for the call's G.
template <typename Fn>
void with_group_channels(const Maps& m, Fn fn) {
  if (m.G == 1)
    fn(std::integral_constant<int, 1>());
  else
    fn(std::integral_constant<int, 2>());
}

// y = conv(x, w) + bias over all images.
template <typename T>
void conv(const Maps& m, const T* x, const T* w, const T* bias, T* y) {
  const std::vector<T> table = weight_table(m, w);
  std::vector<T> bias_block;
  if (bias) {
    bias_block.resize(m.P);
    for (int64_t p = 0; p < m.P; ++p) bias_block[p] = bias[p % m.C];
  }
  const T* b = bias ? bias_block.data() : nullptr;
  with_group_channels(m, [&](auto G) {
    at::parallel_for(0, m.N, 1, [&](int64_t first, int64_t last) {
      for_each_image<T>(m, first, last, [&](int64_t n, T* buf) {
        copy_padded(m, x + n * m.image(), buf);
        conv_image<T, G()>(m, buf, table.data(), b, y + n * m.image());
      });
    });
  });
}

at::Tensor empty_maps_like(const at::Tensor& x) {
  return at::empty_like(x, x.options().memory_format(at::MemoryFormat::ChannelsLast));
}

}  // namespace

at::Tensor narrow_conv3x3_forward(at::Tensor x, at::Tensor weight,
                                  std::optional<at::Tensor> bias) {
  check_maps(x, "the maps");
  check_weight(weight, x);
  if (bias)
    TORCH_CHECK(bias->numel() == x.size(1) && bias->is_contiguous() &&
                    bias->scalar_type() == x.scalar_type(),
                "tcm: the bias must be a contiguous (C,) vector of the maps' dtype");
  at::Tensor y = empty_maps_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "narrow_conv3x3_forward", [&] {
    conv<scalar_t>(maps_of<scalar_t>(x, weight.size(1)), x.data_ptr<scalar_t>(),
                   weight.data_ptr<scalar_t>(), bias ? bias->data_ptr<scalar_t>() : nullptr,
                   y.data_ptr<scalar_t>());
  });
  return y;
}

at::Tensor narrow_conv3x3_input_grad(at::Tensor grad, at::Tensor weight) {
  check_maps(grad, "the gradient");
  check_weight(weight, grad);
  at::Tensor gx = empty_maps_like(grad);
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "narrow_conv3x3_input_grad", [&] {
    const Maps m = maps_of<scalar_t>(grad, weight.size(1));
    // The input gradient is the convolution of grad with the kernels flipped and, for G = 2,
    // transposed within each group: w'[q, o, t] = w[2 (q / 2) + o, q % 2, 8 - t].
    const scalar_t* w = weight.data_ptr<scalar_t>();
    std::vector<scalar_t> flipped(m.C * m.G * kTaps);
    for (int64_t q = 0; q < m.C; ++q)
      for (int64_t o = 0; o < m.G; ++o) {
        const int64_t out = m.G == 2 ? (q & ~int64_t(1)) + o : q;
        const int64_t in = m.G == 2 ? q % 2 : 0;
        for (int t = 0; t < kTaps; ++t)
          flipped[(q * m.G + o) * kTaps + t] = w[(out * m.G + in) * kTaps + (kTaps - 1 - t)];
      }
    conv<scalar_t>(m, grad.data_ptr<scalar_t>(), flipped.data(), nullptr,
                   gx.data_ptr<scalar_t>());
  });
  return gx;
}

at::Tensor narrow_conv3x3_weight_grad(at::Tensor grad, at::Tensor x, int64_t group_channels) {
  check_maps(grad, "the gradient");
  check_maps(x, "the maps");
  TORCH_CHECK(grad.sizes() == x.sizes() && grad.scalar_type() == x.scalar_type(),
              "tcm: the gradient must match the maps");
  at::Tensor gw = at::empty({x.size(1), group_channels, 3, 3}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "narrow_conv3x3_weight_grad", [&] {
    using T = scalar_t;
    const Maps m = maps_of<T>(x, group_channels);
    const int64_t sums = kTaps * m.G * m.P;
    const int64_t per_chunk = std::max<int64_t>(1, kChunkPixels / std::max<int64_t>(1, m.H * m.W));
    const int64_t chunks = (m.N + per_chunk - 1) / per_chunk;
    std::vector<double> partial(chunks * sums, 0.0);
    const T* xp = x.data_ptr<T>();
    const T* gp = grad.data_ptr<T>();
    with_group_channels(m, [&](auto G) {
      at::parallel_for(0, chunks, 1, [&](int64_t first, int64_t last) {
        std::vector<T> acc(sums);
        for (int64_t chunk = first; chunk < last; ++chunk) {
          std::fill(acc.begin(), acc.end(), T(0));
          const int64_t n0 = chunk * per_chunk, n1 = std::min(m.N, n0 + per_chunk);
          for_each_image<T>(m, n0, n1, [&](int64_t n, T* buf) {
            copy_padded(m, xp + n * m.image(), buf);
            weight_grad_image<T, G()>(m, buf, gp + n * m.image(), acc.data());
          });
          std::copy(acc.begin(), acc.end(), partial.begin() + chunk * sums);
        }
      });
    });
    // gw[c, g, t] = sum over chunks, in order, of the sums at positions p with p % C == c.
    std::vector<double> total(m.C * m.G * kTaps, 0.0);
    for (int64_t chunk = 0; chunk < chunks; ++chunk)
      for (int t = 0; t < kTaps; ++t)
        for (int64_t g = 0; g < m.G; ++g)
          for (int64_t p = 0; p < m.P; ++p)
            total[((p % m.C) * m.G + g) * kTaps + t] +=
                partial[chunk * sums + (t * m.G + g) * m.P + p];
    T* out = gw.data_ptr<T>();
    for (size_t i = 0; i < total.size(); ++i) out[i] = T(total[i]);
  });
  return gw;
}

}  // namespace tcm
