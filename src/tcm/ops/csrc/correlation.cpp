// Local correlation and MTDM's kernel soft-argmax on the CPU, forward and backward.
//
// Layout convention (see tcm/ops/correlation.py): maps a, b are (B, C, H, W); the correlation
// volume is (B, K, H, W) with K = P * P and k = i * P + j (i vertical, j horizontal):
//
//     c[n, k, y, x] = sum_c a[n, c, y, x] * b[n, c, y + i - d, x + j - d],  d = P / 2,
//
// zero where b is read out of bounds. MTDM's fields are (B, 3, H, W) = [u, v, conf].
//
// The kernels use the compiler's vector extensions (one register of 16 floats with AVX-512,
// 8 with AVX, 4 otherwise), so the same source builds for any CPU; the build passes
// -march=native. Work is split over (pair, row) with at::parallel_for, which follows
// torch.set_num_threads. Temporaries: padded copies of the inputs (at most about twice their
// size) and per-thread row buffers; the volume is written only when it is asked for.
//
// - Forward: per output row y and vertical offset i, vectors run over x; for each channel a
//   vector of a's row is multiplied with P shifted windows of b's row (x + j), so the P
//   accumulators are the P horizontal displacements and go straight to the volume's planes.
// - Backward: channel-last copies; per block of 4 pixels, every b (or a) position the block
//   touches is loaded once (channels in vectors) and multiplied with the matching gradient of
//   each pixel of the block, so loads are shared by 4 pixels.
// - Kernel soft-argmax: per vector of 16 pixels over the K displacements (arg-max, separable
//   Gaussian window, softmax with a vectorised exp, expectation), fused after the forward so
//   that inference never writes the volume.

#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

namespace {

#if defined(__AVX512F__)
constexpr int kVectorBytes = 64;
#elif defined(__AVX__)
constexpr int kVectorBytes = 32;
#else
constexpr int kVectorBytes = 16;
#endif

template <typename T>
struct VecOf;
template <>
struct VecOf<float> {
  typedef float type __attribute__((vector_size(kVectorBytes)));
  typedef int32_t itype __attribute__((vector_size(kVectorBytes)));
};
template <>
struct VecOf<double> {
  typedef double type __attribute__((vector_size(kVectorBytes)));
  typedef int64_t itype __attribute__((vector_size(kVectorBytes)));
};

template <typename T>
using Vec = typename VecOf<T>::type;
template <typename T>
constexpr int kLanes = kVectorBytes / sizeof(T);

template <typename V>
inline V vzero() {
  V v;
  std::memset(&v, 0, sizeof(V));
  return v;
}
template <typename V, typename T>
inline V broadcast(T s) {
  return vzero<V>() + s;
}
template <typename V, typename T>
inline V load(const T* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}
template <typename T, typename V>
inline void store(T* p, const V& v) {
  std::memcpy(p, &v, sizeof(V));
}

inline int64_t round_up(int64_t value, int64_t multiple) {
  return (value + multiple - 1) / multiple * multiple;
}

// exp on a vector of floats: Cephes' expf (range reduction by ln 2, degree-6 polynomial),
// about 1 ulp. Arguments below -87 give about 1.6e-38 instead of a smaller number.
inline Vec<float> vexp(Vec<float> x) {
  using V = Vec<float>;
  using VI = typename VecOf<float>::itype;
  const V hi = broadcast<V>(88.0f), lo = broadcast<V>(-87.0f);
  x = x > hi ? hi : x;
  x = x < lo ? lo : x;
  V fx = x * 1.44269504088896341f + 0.5f;
  VI n = __builtin_convertvector(fx, VI);
  const V nf = __builtin_convertvector(n, V);
  n = n + (nf > fx);  // floor: subtract 1 where truncation rounded up
  fx = __builtin_convertvector(n, V);
  x = x - fx * 0.693359375f;
  x = x - fx * -2.12194440e-4f;
  const V z = x * x;
  V y = broadcast<V>(1.9875691500e-4f);
  y = y * x + 1.3981999507e-3f;
  y = y * x + 8.3334519073e-3f;
  y = y * x + 4.1665795894e-2f;
  y = y * x + 1.6666665459e-1f;
  y = y * x + 5.0000001201e-1f;
  y = y * z + x + 1.0f;
  const VI bits = (n + 127) << 23;
  V two_n;
  std::memcpy(&two_n, &bits, sizeof(V));
  return y * two_n;
}

// exp on a vector of doubles, lane by lane (float64 is the tests' precision, not a fast path).
inline Vec<double> vexp(Vec<double> x) {
  for (int q = 0; q < kLanes<double>; ++q) x[q] = std::exp(x[q]);
  return x;
}

struct Dims {
  int64_t B, C, H, W, P, K, radius;
  int64_t Wa;  // row length of the forward's copy of a: W rounded up to the vector width
  int64_t Wb;  // row length of the forward's copy of b: Wa + window slack
};

template <typename T>
int forward_chunk(int64_t P) {
  // Accumulators per pass over the channels: as many displacements as fit in 16 registers.
  return P <= 4 ? 4 : (P <= 8 ? 8 : 16);
}

Dims make_dims(const at::Tensor& a, int64_t P, int jb) {
  Dims d;
  d.B = a.size(0);
  d.C = a.size(1);
  d.H = a.size(2);
  d.W = a.size(3);
  d.P = P;
  d.K = P * P;
  d.radius = P / 2;
  const int lanes = kVectorBytes / a.element_size();
  d.Wa = round_up(d.W, lanes);
  d.Wb = d.Wa + round_up(P, jb);
  return d;
}

// Row-major copies for the forward: a as (B, H, C, Wa), b as (B, H, C, Wb) with b's x shifted
// right by the radius; zero elsewhere.
std::pair<at::Tensor, at::Tensor> forward_copies(const at::Tensor& a, const at::Tensor& b,
                                                 const Dims& d) {
  // Only the padding is zeroed: on small maps it is most of the copy.
  at::Tensor a_rows = at::empty({d.B, d.H, d.C, d.Wa}, a.options());
  a_rows.narrow(3, 0, d.W).copy_(a.permute({0, 2, 1, 3}));
  a_rows.narrow(3, d.W, d.Wa - d.W).zero_();
  at::Tensor b_rows = at::empty({d.B, d.H, d.C, d.Wb}, b.options());
  b_rows.narrow(3, 0, d.radius).zero_();
  b_rows.narrow(3, d.radius, d.W).copy_(b.permute({0, 2, 1, 3}));
  b_rows.narrow(3, d.radius + d.W, d.Wb - d.radius - d.W).zero_();
  return {a_rows, b_rows};
}

// Correlations of output row y of one pair into out (K, Wa).
template <typename T, int JB>
void correlate_row(const T* a_row, const T* b_pair, int64_t y, const Dims& d, T* out) {
  using V = Vec<T>;
  constexpr int L = kLanes<T>;
  const int64_t P = d.P, Wa = d.Wa, Wb = d.Wb, C = d.C;
  const int64_t chunks = (P + JB - 1) / JB;
  for (int64_t i = 0; i < P; ++i) {
    const int64_t yy = y + i - d.radius;
    if (yy < 0 || yy >= d.H) {
      std::fill(out + i * P * Wa, out + (i + 1) * P * Wa, T(0));
      continue;
    }
    const T* b_row = b_pair + yy * C * Wb;
    for (int64_t x0 = 0; x0 < Wa; x0 += L) {
      for (int64_t jc = 0; jc < chunks; ++jc) {
        V acc[JB];
        for (int q = 0; q < JB; ++q) acc[q] = vzero<V>();
        const T* ap = a_row + x0;
        const T* bp = b_row + x0 + jc * JB;
        for (int64_t c = 0; c < C; ++c, ap += Wa, bp += Wb) {
          const V av = load<V>(ap);
#pragma GCC unroll 16
          for (int q = 0; q < JB; ++q) acc[q] += av * load<V>(bp + q);
        }
        const int64_t count = std::min<int64_t>(JB, P - jc * JB);
        for (int64_t q = 0; q < count; ++q) store(out + (i * P + jc * JB + q) * Wa + x0, acc[q]);
      }
    }
  }
}

// Runs fn(n, y, row) for every output row, row = (K, Wa) correlations of that row.
template <typename T, typename Fn>
void for_each_correlation_row(const at::Tensor& a, const at::Tensor& b, int64_t P, Fn fn) {
  const int jb = forward_chunk<T>(P);
  const Dims d = make_dims(a, P, jb);
  auto [a_rows, b_rows] = forward_copies(a, b, d);
  const T* a_ptr = a_rows.data_ptr<T>();
  const T* b_ptr = b_rows.data_ptr<T>();
  at::parallel_for(0, d.B * d.H, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> row(d.K * d.Wa);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / d.H, y = task % d.H;
      const T* a_row = a_ptr + (n * d.H + y) * d.C * d.Wa;
      const T* b_pair = b_ptr + n * d.H * d.C * d.Wb;
      if (jb == 4) {
        correlate_row<T, 4>(a_row, b_pair, y, d, row.data());
      } else if (jb == 8) {
        correlate_row<T, 8>(a_row, b_pair, y, d, row.data());
      } else {
        correlate_row<T, 16>(a_row, b_pair, y, d, row.data());
      }
      fn(n, y, row.data(), d);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Kernel soft-argmax over one vector of pixels.

template <typename T>
struct SoftArgmax {
  int64_t P, radius;
  T inv_two_sigma2, temperature, scale;
  bool relu;
};

// corr: (K, ld) values of L pixels at column 0 of each row. Writes u, v, conf (vectors); when
// grad_corr is given, also the gradient of sum(gu * u + gv * v + gc * conf) w.r.t. corr.
// scratch: K + 2 P vectors.
template <typename T>
void soft_argmax_vector(const T* corr, int64_t ld, const SoftArgmax<T>& s, Vec<T>* scratch,
                        Vec<T>& u, Vec<T>& v, Vec<T>& conf, const Vec<T>* grads = nullptr,
                        T* grad_corr = nullptr) {
  using V = Vec<T>;
  const int64_t P = s.P, K = P * P;
  V* values = scratch;      // K: logits, then exponentials
  V* gauss_i = values + K;  // P
  V* gauss_j = gauss_i + P;  // P
  const V zero = vzero<V>();
  auto read = [&](int64_t k) {
    V c = load<V>(corr + k * ld);
    return s.relu ? (c > zero ? c : zero) : c;
  };
  // Arg-max, first occurrence; confidence = max.
  V best = read(0), best_i = zero, best_j = zero;
  for (int64_t i = 0, k = 0; i < P; ++i) {
    for (int64_t j = 0; j < P; ++j, ++k) {
      const V c = read(k);
      const auto greater = c > best;
      best = greater ? c : best;
      best_i = greater ? broadcast<V>(T(i)) : best_i;
      best_j = greater ? broadcast<V>(T(j)) : best_j;
    }
  }
  conf = best;
  // Separable Gaussian window around the arg-max.
  for (int64_t q = 0; q < P; ++q) {
    const V di = broadcast<V>(T(q)) - best_i, dj = broadcast<V>(T(q)) - best_j;
    gauss_i[q] = vexp(-(di * di) * s.inv_two_sigma2);
    gauss_j[q] = vexp(-(dj * dj) * s.inv_two_sigma2);
  }
  V top = broadcast<V>(-INFINITY);
  for (int64_t i = 0, k = 0; i < P; ++i) {
    for (int64_t j = 0; j < P; ++j, ++k) {
      const V logit = (s.temperature * read(k)) * (gauss_i[i] * gauss_j[j]);
      values[k] = logit;
      top = logit > top ? logit : top;
    }
  }
  V total = zero, sum_u = zero, sum_v = zero;
  for (int64_t i = 0, k = 0; i < P; ++i) {
    const T vi = T(i - s.radius) * s.scale;
    V row_total = zero, row_u = zero;
    for (int64_t j = 0; j < P; ++j, ++k) {
      const V e = vexp(values[k] - top);
      values[k] = e;
      row_total += e;
      row_u += e * (T(j - s.radius) * s.scale);
    }
    total += row_total;
    sum_u += row_u;
    sum_v += row_total * vi;
  }
  const V inv_total = T(1) / total;
  u = sum_u * inv_total;
  v = sum_v * inv_total;
  if (grad_corr == nullptr) return;
  const V gu = grads[0], gv = grads[1], gc = grads[2];
  for (int64_t i = 0, k = 0; i < P; ++i) {
    const V vi_term = gv * (T(i - s.radius) * s.scale - v);
    const auto at_i = best_i == T(i);
    for (int64_t j = 0; j < P; ++j, ++k) {
      const V weight = values[k] * inv_total;
      const V d_logit = weight * (gu * (T(j - s.radius) * s.scale - u) + vi_term);
      V d_corr = s.temperature * (gauss_i[i] * gauss_j[j]) * d_logit;
      d_corr += (at_i & (best_j == T(j))) ? gc : zero;
      if (s.relu) {
        const V c = load<V>(corr + k * ld);
        d_corr = c > zero ? d_corr : zero;
      }
      store(grad_corr + k * ld, d_corr);
    }
  }
}

template <typename T>
SoftArgmax<T> soft_argmax_params(int64_t P, double sigma, double temperature, bool relu) {
  SoftArgmax<T> s;
  s.P = P;
  s.radius = P / 2;
  s.inv_two_sigma2 = T(1.0 / (2.0 * sigma * sigma));
  s.temperature = T(temperature);
  s.scale = T(1.0 / std::max<int64_t>(s.radius, 1));
  s.relu = relu;
  return s;
}

// Copies count values of a vector to p (the row tail may be shorter than a vector).
template <typename T>
inline void store_partial(T* p, const Vec<T>& v, int64_t count) {
  std::memcpy(p, &v, sizeof(T) * count);
}

void check_pair(const at::Tensor& a, const at::Tensor& b, int64_t P) {
  TORCH_CHECK(a.device().is_cpu() && b.device().is_cpu(), "tcm CPU kernels take CPU tensors");
  TORCH_CHECK(a.dim() == 4 && a.sizes() == b.sizes(), "expected two (B, C, H, W) maps");
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), "a and b must have the same dtype");
  TORCH_CHECK(P >= 1 && P % 2 == 1, "patch_size must be a positive odd number");
}

// ---------------------------------------------------------------------------------------------
// Entry points.

at::Tensor correlation_forward(at::Tensor a, at::Tensor b, int64_t P) {
  check_pair(a, b, P);
  a = a.contiguous();
  b = b.contiguous();
  const int64_t B = a.size(0), H = a.size(2), W = a.size(3);
  at::Tensor out = at::empty({B, P * P, H, W}, a.options());
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "tcm_correlation_forward", [&] {
    scalar_t* out_ptr = out.data_ptr<scalar_t>();
    for_each_correlation_row<scalar_t>(a, b, P, [&](int64_t n, int64_t y, const scalar_t* row,
                                                    const Dims& d) {
      for (int64_t k = 0; k < d.K; ++k) {
        std::memcpy(out_ptr + ((n * d.K + k) * H + y) * W, row + k * d.Wa, sizeof(scalar_t) * W);
      }
    });
  });
  return out;
}

// MTDM's fields [u, v, conf] of ReLU(correlation(a, b)), (B, 3, H, W). With keep_volume, also
// returns the ReLU'd volume (B, K, H, W) for the backward; otherwise an empty tensor.
std::vector<at::Tensor> mtdm_fields_forward(at::Tensor a, at::Tensor b, int64_t P, double sigma,
                                            double temperature, bool keep_volume) {
  check_pair(a, b, P);
  a = a.contiguous();
  b = b.contiguous();
  const int64_t B = a.size(0), H = a.size(2), W = a.size(3);
  at::Tensor fields = at::empty({B, 3, H, W}, a.options());
  at::Tensor volume = keep_volume ? at::empty({B, P * P, H, W}, a.options()) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "tcm_mtdm_fields_forward", [&] {
    using V = Vec<scalar_t>;
    constexpr int L = kLanes<scalar_t>;
    const SoftArgmax<scalar_t> s = soft_argmax_params<scalar_t>(P, sigma, temperature, true);
    scalar_t* fields_ptr = fields.data_ptr<scalar_t>();
    scalar_t* volume_ptr = keep_volume ? volume.data_ptr<scalar_t>() : nullptr;
    for_each_correlation_row<scalar_t>(a, b, P, [&](int64_t n, int64_t y, scalar_t* row,
                                                    const Dims& d) {
      thread_local std::vector<V> scratch;
      scratch.resize(d.K + 2 * P);
      if (volume_ptr != nullptr) {
        for (int64_t k = 0; k < d.K; ++k) {
          scalar_t* dst = volume_ptr + ((n * d.K + k) * H + y) * W;
          const scalar_t* src = row + k * d.Wa;
          for (int64_t x = 0; x < W; ++x) dst[x] = src[x] > 0 ? src[x] : scalar_t(0);
        }
      }
      scalar_t* u_row = fields_ptr + ((n * 3 + 0) * H + y) * W;
      scalar_t* v_row = u_row + H * W;
      scalar_t* c_row = v_row + H * W;
      for (int64_t x0 = 0; x0 < W; x0 += L) {
        V u, v, conf;
        soft_argmax_vector<scalar_t>(row + x0, d.Wa, s, scratch.data(), u, v, conf);
        const int64_t count = std::min<int64_t>(L, W - x0);
        store_partial(u_row + x0, u, count);
        store_partial(v_row + x0, v, count);
        store_partial(c_row + x0, conf, count);
      }
    });
  });
  return {fields, volume};
}

// Runs fn(n, y, row, ld) with row = (K, ld) copy of volume's row y of pair n, zero padded to a
// whole number of vectors.
template <typename T, typename Fn>
void for_each_volume_row(const at::Tensor& volume, Fn fn) {
  const int64_t B = volume.size(0), K = volume.size(1), H = volume.size(2), W = volume.size(3);
  const int64_t ld = round_up(W, kLanes<T>);
  const T* src = volume.data_ptr<T>();
  at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> row(K * ld, T(0));
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / H, y = task % H;
      for (int64_t k = 0; k < K; ++k) {
        std::memcpy(row.data() + k * ld, src + ((n * K + k) * H + y) * W, sizeof(T) * W);
      }
      fn(n, y, row.data(), ld);
    }
  });
}

at::Tensor soft_argmax_forward(at::Tensor volume, int64_t P, double sigma, double temperature,
                               bool relu) {
  TORCH_CHECK(volume.dim() == 4 && volume.size(1) == P * P, "expected a (B, P*P, H, W) volume");
  volume = volume.contiguous();
  const int64_t B = volume.size(0), H = volume.size(2), W = volume.size(3);
  at::Tensor fields = at::empty({B, 3, H, W}, volume.options());
  AT_DISPATCH_FLOATING_TYPES(volume.scalar_type(), "tcm_soft_argmax_forward", [&] {
    using V = Vec<scalar_t>;
    constexpr int L = kLanes<scalar_t>;
    const SoftArgmax<scalar_t> s = soft_argmax_params<scalar_t>(P, sigma, temperature, relu);
    scalar_t* fields_ptr = fields.data_ptr<scalar_t>();
    for_each_volume_row<scalar_t>(volume, [&](int64_t n, int64_t y, scalar_t* row, int64_t ld) {
      std::vector<V> scratch(P * P + 2 * P);
      scalar_t* u_row = fields_ptr + ((n * 3 + 0) * H + y) * W;
      for (int64_t x0 = 0; x0 < W; x0 += L) {
        V u, v, conf;
        soft_argmax_vector<scalar_t>(row + x0, ld, s, scratch.data(), u, v, conf);
        const int64_t count = std::min<int64_t>(L, W - x0);
        store_partial(u_row + x0, u, count);
        store_partial(u_row + H * W + x0, v, count);
        store_partial(u_row + 2 * H * W + x0, conf, count);
      }
    });
  });
  return fields;
}

// Gradient w.r.t. the volume given the gradient of the fields (B, 3, H, W). With relu, volume
// holds ReLU'd correlations and the gradient is w.r.t. the correlations before the ReLU.
at::Tensor soft_argmax_backward(at::Tensor volume, at::Tensor grad_fields, int64_t P, double sigma,
                                double temperature, bool relu) {
  TORCH_CHECK(volume.dim() == 4 && volume.size(1) == P * P, "expected a (B, P*P, H, W) volume");
  volume = volume.contiguous();
  grad_fields = grad_fields.contiguous().to(volume.scalar_type());
  const int64_t B = volume.size(0), K = P * P, H = volume.size(2), W = volume.size(3);
  at::Tensor grad_volume = at::empty_like(volume);
  AT_DISPATCH_FLOATING_TYPES(volume.scalar_type(), "tcm_soft_argmax_backward", [&] {
    using V = Vec<scalar_t>;
    constexpr int L = kLanes<scalar_t>;
    const SoftArgmax<scalar_t> s = soft_argmax_params<scalar_t>(P, sigma, temperature, relu);
    const scalar_t* g_ptr = grad_fields.data_ptr<scalar_t>();
    scalar_t* out_ptr = grad_volume.data_ptr<scalar_t>();
    for_each_volume_row<scalar_t>(volume, [&](int64_t n, int64_t y, scalar_t* row, int64_t ld) {
      std::vector<V> scratch(K + 2 * P);
      std::vector<scalar_t> grads(3 * ld, scalar_t(0));
      std::vector<scalar_t> grad_row(K * ld);
      for (int64_t f = 0; f < 3; ++f) {
        std::memcpy(grads.data() + f * ld, g_ptr + ((n * 3 + f) * H + y) * W,
                    sizeof(scalar_t) * W);
      }
      for (int64_t x0 = 0; x0 < W; x0 += L) {
        V u, v, conf;
        const V g[3] = {load<V>(grads.data() + x0), load<V>(grads.data() + ld + x0),
                        load<V>(grads.data() + 2 * ld + x0)};
        soft_argmax_vector<scalar_t>(row + x0, ld, s, scratch.data(), u, v, conf, g,
                                     grad_row.data() + x0);
      }
      for (int64_t k = 0; k < K; ++k) {
        std::memcpy(out_ptr + ((n * K + k) * H + y) * W, grad_row.data() + k * ld,
                    sizeof(scalar_t) * W);
      }
    });
  });
  return grad_volume;
}

// ---------------------------------------------------------------------------------------------
// Correlation backward, channel-last.

constexpr int kPixelBlock = 4;     // pixels sharing each load
constexpr int kChannelVectors = 4;  // channel vectors per pass (4 x 4 accumulators)

// Channel-last copy (B, H, Wx + 2 d, Cp) of x with x shifted right by d; zero elsewhere.
at::Tensor channel_last_copy(const at::Tensor& t, int64_t radius, int64_t Wx, int64_t Cp) {
  const int64_t W = t.size(3), C = t.size(1), Wpad = Wx + 2 * radius;
  at::Tensor out = at::empty({t.size(0), t.size(2), Wpad, Cp}, t.options());
  // Only the padding is zeroed: on small maps it is most of the copy.
  out.narrow(2, 0, radius).zero_();
  out.narrow(2, radius + W, Wpad - radius - W).zero_();
  at::Tensor centre = out.narrow(2, radius, W);
  centre.narrow(3, 0, C).copy_(t.permute({0, 2, 3, 1}));
  centre.narrow(3, C, Cp - C).zero_();
  return out;
}

// acc[xb] += sum over t of G(t, xb) * rows[x0 + t] for the NV channel vectors at c0, then the
// sums of the pixels x0 + xb < W go to out[c, x0 + xb] (row of a (C, H, W) map at stride HW).
template <typename T, int NV, typename Weight>
void accumulate_block(const T* positions, int64_t Cp, int64_t span, Weight weight, Vec<T> (*acc)[NV]) {
  using V = Vec<T>;
  constexpr int L = kLanes<T>;
  for (int64_t t = 0; t < span; ++t) {
    V rows[NV];
    for (int q = 0; q < NV; ++q) rows[q] = load<V>(positions + t * Cp + q * L);
#pragma GCC unroll 4
    for (int xb = 0; xb < kPixelBlock; ++xb) {
      T w;
      if (!weight(t, xb, w)) continue;
      const V wv = broadcast<V>(w);
      for (int q = 0; q < NV; ++q) acc[xb][q] += wv * rows[q];
    }
  }
}

template <typename T, int NV>
void flush_block(Vec<T> (*acc)[NV], int64_t c0, int64_t C, int64_t x0, int64_t W, int64_t HW,
                 T* out_row) {
  constexpr int L = kLanes<T>;
  alignas(64) T values[kPixelBlock][NV * L];
  for (int xb = 0; xb < kPixelBlock; ++xb) {
    for (int q = 0; q < NV; ++q) store(values[xb] + q * L, acc[xb][q]);
  }
  const int64_t channels = std::min<int64_t>(NV * L, C - c0);
  const int64_t pixels = std::min<int64_t>(kPixelBlock, W - x0);
  for (int64_t c = 0; c < channels; ++c) {
    T* dst = out_row + (c0 + c) * HW + x0;
    for (int64_t xb = 0; xb < pixels; ++xb) dst[xb] = values[xb][c];
  }
}

template <typename T>
struct BackwardRow {
  int64_t C, Cp, H, W, Wx, Wpad, P, K, radius;
};

// grad_a row y of pair n: g_row (Wx, K) gradients of that row's pixels.
template <typename T, int NV>
void grad_a_pass(const BackwardRow<T>& r, const T* b_pair, const T* g_row, int64_t y, int64_t c0,
                 T* out_row) {
  using V = Vec<T>;
  const int64_t span = r.P + kPixelBlock - 1;
  for (int64_t x0 = 0; x0 < r.W; x0 += kPixelBlock) {
    V acc[kPixelBlock][NV];
    for (auto& pixel : acc)
      for (auto& vec : pixel) vec = vzero<V>();
    for (int64_t i = 0; i < r.P; ++i) {
      const int64_t yy = y + i - r.radius;
      if (yy < 0 || yy >= r.H) continue;
      const T* positions = b_pair + (yy * r.Wpad + x0) * r.Cp + c0;
      const T* g = g_row + x0 * r.K + i * r.P;
      // Pixel x0 + xb meets b at x0 + xb + j - d, padded position x0 + t with j = t - xb.
      accumulate_block<T, NV>(positions, r.Cp, span, [&](int64_t t, int xb, T& w) {
        const int64_t j = t - xb;
        if (j < 0 || j >= r.P) return false;
        w = g[xb * r.K + j];
        return true;
      }, acc);
    }
    flush_block<T, NV>(acc, c0, r.C, x0, r.W, r.H * r.W, out_row);
  }
}

// grad_b row y of pair n: g_rows (P, Wpad, P) where g_rows[i][x + d][j] is the gradient of
// displacement (i, j) at pixel (y + d - i, x), zero out of bounds.
template <typename T, int NV>
void grad_b_pass(const BackwardRow<T>& r, const T* a_pair, const T* g_rows, int64_t y,
                 int64_t c0, T* out_row) {
  using V = Vec<T>;
  const int64_t span = r.P + kPixelBlock - 1;
  for (int64_t x0 = 0; x0 < r.W; x0 += kPixelBlock) {
    V acc[kPixelBlock][NV];
    for (auto& pixel : acc)
      for (auto& vec : pixel) vec = vzero<V>();
    for (int64_t i = 0; i < r.P; ++i) {
      const int64_t ya = y + r.radius - i;
      if (ya < 0 || ya >= r.H) continue;
      const T* positions = a_pair + (ya * r.Wpad + x0) * r.Cp + c0;
      const T* g = g_rows + (i * r.Wpad + x0) * r.P;
      // Pixel x0 + xb of b meets a at x0 + xb + d - j, padded position x0 + t with
      // j = xb + P - 1 - t.
      accumulate_block<T, NV>(positions, r.Cp, span, [&](int64_t t, int xb, T& w) {
        const int64_t j = xb + r.P - 1 - t;
        if (j < 0 || j >= r.P) return false;
        w = g[t * r.P + j];
        return true;
      }, acc);
    }
    flush_block<T, NV>(acc, c0, r.C, x0, r.W, r.H * r.W, out_row);
  }
}

template <typename T, typename Pass>
void over_channel_chunks(const BackwardRow<T>& r, Pass pass) {
  constexpr int L = kLanes<T>;
  for (int64_t c0 = 0; c0 < r.Cp; c0 += kChannelVectors * L) {
    switch (std::min<int64_t>(kChannelVectors, (r.Cp - c0) / L)) {
      case 1: pass(std::integral_constant<int, 1>(), c0); break;
      case 2: pass(std::integral_constant<int, 2>(), c0); break;
      case 3: pass(std::integral_constant<int, 3>(), c0); break;
      default: pass(std::integral_constant<int, 4>(), c0); break;
    }
  }
}

std::vector<at::Tensor> correlation_backward(at::Tensor grad, at::Tensor a, at::Tensor b,
                                             int64_t P, bool need_a, bool need_b) {
  check_pair(a, b, P);
  a = a.contiguous();
  b = b.contiguous();
  grad = grad.contiguous().to(a.scalar_type());
  TORCH_CHECK(grad.dim() == 4 && grad.size(0) == a.size(0) && grad.size(1) == P * P &&
                  grad.size(2) == a.size(2) && grad.size(3) == a.size(3),
              "expected a (B, P*P, H, W) gradient");
  at::Tensor grad_a = need_a ? at::empty_like(a) : at::Tensor();
  at::Tensor grad_b = need_b ? at::empty_like(b) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "tcm_correlation_backward", [&] {
    using T = scalar_t;
    constexpr int L = kLanes<T>;
    BackwardRow<T> r;
    const int64_t B = a.size(0);
    r.C = a.size(1);
    r.H = a.size(2);
    r.W = a.size(3);
    r.P = P;
    r.K = P * P;
    r.radius = P / 2;
    r.Cp = round_up(r.C, L);
    r.Wx = round_up(r.W, kPixelBlock);
    r.Wpad = r.Wx + 2 * r.radius;
    const T* g_ptr = grad.data_ptr<T>();
    const int64_t HW = r.H * r.W;
    if (need_a) {
      at::Tensor b_last = channel_last_copy(b, r.radius, r.Wx, r.Cp);
      const T* b_ptr = b_last.data_ptr<T>();
      T* out = grad_a.data_ptr<T>();
      at::parallel_for(0, B * r.H, 1, [&](int64_t begin, int64_t end) {
        std::vector<T> g_row(r.Wx * r.K, T(0));
        for (int64_t task = begin; task < end; ++task) {
          const int64_t n = task / r.H, y = task % r.H;
          for (int64_t k = 0; k < r.K; ++k) {
            const T* src = g_ptr + (n * r.K + k) * HW + y * r.W;
            for (int64_t x = 0; x < r.W; ++x) g_row[x * r.K + k] = src[x];
          }
          const T* b_pair = b_ptr + n * r.H * r.Wpad * r.Cp;
          T* out_row = out + n * r.C * HW + y * r.W;
          over_channel_chunks<T>(r, [&](auto nv, int64_t c0) {
            grad_a_pass<T, decltype(nv)::value>(r, b_pair, g_row.data(), y, c0, out_row);
          });
        }
      });
    }
    if (need_b) {
      at::Tensor a_last = channel_last_copy(a, r.radius, r.Wx, r.Cp);
      const T* a_ptr = a_last.data_ptr<T>();
      T* out = grad_b.data_ptr<T>();
      at::parallel_for(0, B * r.H, 1, [&](int64_t begin, int64_t end) {
        std::vector<T> g_rows(r.P * r.Wpad * r.P, T(0));
        for (int64_t task = begin; task < end; ++task) {
          const int64_t n = task / r.H, y = task % r.H;
          for (int64_t i = 0; i < r.P; ++i) {
            const int64_t ya = y + r.radius - i;
            if (ya < 0 || ya >= r.H) continue;
            for (int64_t j = 0; j < r.P; ++j) {
              const T* src = g_ptr + (n * r.K + i * r.P + j) * HW + ya * r.W;
              T* dst = g_rows.data() + (i * r.Wpad + r.radius) * r.P + j;
              for (int64_t x = 0; x < r.W; ++x) dst[x * r.P] = src[x];
            }
          }
          const T* a_pair = a_ptr + n * r.H * r.Wpad * r.Cp;
          T* out_row = out + n * r.C * HW + y * r.W;
          over_channel_chunks<T>(r, [&](auto nv, int64_t c0) {
            grad_b_pass<T, decltype(nv)::value>(r, a_pair, g_rows.data(), y, c0, out_row);
          });
        }
      });
    }
  });
  return {grad_a, grad_b};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "tcm: local correlation and MTDM's kernel soft-argmax on the CPU";
  m.def("correlation_forward", &correlation_forward, "(B,C,H,W) x2 -> (B,P*P,H,W)");
  m.def("correlation_backward", &correlation_backward,
        "grad (B,P*P,H,W), a, b -> [grad_a, grad_b]");
  m.def("mtdm_fields_forward", &mtdm_fields_forward,
        "(B,C,H,W) x2 -> [fields (B,3,H,W), ReLU'd volume (B,P*P,H,W) or empty]");
  m.def("soft_argmax_forward", &soft_argmax_forward, "(B,P*P,H,W) -> (B,3,H,W)");
  m.def("soft_argmax_backward", &soft_argmax_backward,
        "volume (B,P*P,H,W), grad fields (B,3,H,W) -> grad volume (B,P*P,H,W)");
  m.def("vector_bytes", []() { return kVectorBytes; }, "SIMD register width the build uses");
}
