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
// -march=native. Work is split into tasks of a few rows of one pair, handed to torch's threads
// (torch.set_num_threads) one at a time. Temporaries: copies of the inputs with padded rows
// (about 1.2 to 1.7 times their size) and per-thread buffers; the volume is written only when
// it is asked for, into memory of a freed volume where there is one (VolumeCache).
//
// - Correlation, forward and backward: blocked outer products of vectors over x held in
//   registers, like the inner kernel of a matrix multiply (see "Local correlation" below).
// - Kernel soft-argmax: per vector of 16 pixels over the K displacements (arg-max, separable
//   Gaussian window, softmax with a vectorised exp, expectation), fused after the forward so
//   that inference never writes the volume.

#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <type_traits>
#include <utility>
#include <vector>

#include "simd.h"

#if defined(__linux__)
#include <sys/mman.h>
#endif
#if defined(__SSE__)
#include <xmmintrin.h>
#endif

namespace {

using namespace tcm::simd;  // NOLINT: the vector helpers throughout

inline int64_t round_up(int64_t value, int64_t multiple) {
  return (value + multiple - 1) / multiple * multiple;
}

// Copies count values: whole vectors, then the rest one by one. The rows copied here are
// short, and a call to memcpy per row costs about as much as the copy.
template <typename T>
inline void copy_row(T* dst, const T* src, int64_t count) {
  constexpr int L = kLanes<T>;
  int64_t x = 0;
  for (; x + L <= count; x += L) store(dst + x, load<Vec<T>>(src + x));
  if constexpr (L >= 4) {
    if (x + L / 2 <= count) {
      store(dst + x, load<VecN<T, L / 2>>(src + x));
      x += L / 2;
    }
  }
  for (; x < count; ++x) dst[x] = src[x];
}

constexpr uintptr_t kHugePage = uintptr_t(2) << 20;

// Where the kernel offers transparent huge pages on request (Linux, "madvise" mode), asks for
// them over [data, data + bytes): first writes then take one page fault per 2 MB instead of
// one per 4 kB.
void advise_huge_pages(void* data, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const uintptr_t begin = reinterpret_cast<uintptr_t>(data);
  const uintptr_t first = (begin + kHugePage - 1) & ~(kHugePage - 1);
  const uintptr_t last = (begin + bytes) & ~(kHugePage - 1);
  if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#endif
}

// at::empty for the large buffers of these kernels, which are written right after.
at::Tensor empty_large(at::IntArrayRef sizes, const at::TensorOptions& options) {
  at::Tensor t = at::empty(sizes, options);
  advise_huge_pages(t.data_ptr(), t.nbytes());
  return t;
}

// Correlation volumes (tens of MB) come from a small cache of the ones freed before. The C
// library hands buffers this large straight from the system and gives them back when they are
// freed (glibc: always above 32 MB), so every new volume would be written into fresh pages,
// each costing a page fault and the system's zeroing: at TCM's shape about as much as
// computing the volume, and several times that on virtual machines whose host backs guest
// memory lazily. A freed volume whose size is asked for again is reused instead; at most
// kCachedBytes are kept, the oldest freed first (as PyTorch's caching allocator does on GPUs).
class VolumeCache {
 public:
  static constexpr size_t kMinBytes = size_t(32) << 20;
  static constexpr size_t kCachedBytes = size_t(256) << 20;

  static VolumeCache& instance() {
    static VolumeCache* cache = new VolumeCache();  // never destroyed: volumes may outlive it
    return *cache;
  }

  // A tensor of the given sizes whose memory returns to the cache when it is freed.
  at::Tensor empty(at::IntArrayRef sizes, const at::TensorOptions& options) {
    const size_t bytes = c10::multiply_integers(sizes) * options.dtype().itemsize();
    void* data = take(bytes);
    return at::from_blob(
        data, sizes, [bytes](void* freed) { instance().give(freed, bytes); }, options);
  }

 private:
  void* take(size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto it = free_.begin(); it != free_.end(); ++it) {
        if (it->second == bytes) {
          void* data = it->first;
          cached_ -= bytes;
          free_.erase(it);
          return data;
        }
      }
    }
    void* data = nullptr;
    TORCH_CHECK(posix_memalign(&data, kHugePage, bytes) == 0, "tcm: out of memory for ", bytes,
                " bytes");
    advise_huge_pages(data, bytes);
    return data;
  }

  void give(void* data, size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    free_.emplace_back(data, bytes);
    cached_ += bytes;
    while (cached_ > kCachedBytes) {
      std::free(free_.front().first);
      cached_ -= free_.front().second;
      free_.erase(free_.begin());
    }
  }

  std::mutex mutex_;
  std::vector<std::pair<void*, size_t>> free_;  // (data, bytes), oldest first
  size_t cached_ = 0;
};

// A buffer for a correlation volume (or its gradient): from VolumeCache when it is large
// enough for the C library to hand it straight from the system, else empty_large.
at::Tensor empty_volume(at::IntArrayRef sizes, const at::TensorOptions& options) {
  const size_t bytes = c10::multiply_integers(sizes) * options.dtype().itemsize();
  if (bytes < VolumeCache::kMinBytes) return empty_large(sizes, options);
  return VolumeCache::instance().empty(sizes, options);
}

// While alive, the calling thread treats subnormal floats as zero, in and out (x86's FTZ and
// DAZ bits; elsewhere nothing changes). The soft-argmax's backward multiplies the softmax's
// weights, most of them below 1e-38 for peaked correlations, and arithmetic on such values
// takes the processor's slow path: the fields' backward inside a training step of the demo's
// model ran 2.2 times as long. Values this small change no gradient that float32 can show.
class FlushSubnormals {
 public:
#if defined(__SSE__)
  FlushSubnormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040); }
  ~FlushSubnormals() { _mm_setcsr(saved_); }

 private:
  unsigned int saved_;
#endif
};

// Runs fn(task, buffer) for every task in [0, count) on torch's threads (at::parallel_for,
// which follows torch.set_num_threads), with one buffer of buffer_size values per thread, zero
// at first. Tasks are handed out one at a time rather than in equal shares, so that a thread
// the system holds back (another process on the machine) delays only its current task.
template <typename T, typename Fn>
void parallel_tasks(int64_t count, int64_t buffer_size, Fn fn) {
  std::atomic<int64_t> next{0};
  const int64_t threads = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), count));
  at::parallel_for(0, threads, 1, [&](int64_t, int64_t) {
    const FlushSubnormals flush;
    std::vector<T> buffer(buffer_size, T(0));
    for (int64_t task; (task = next.fetch_add(1, std::memory_order_relaxed)) < count;) {
      fn(task, buffer.data());
    }
  });
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

// ---------------------------------------------------------------------------------------------
// Kernel soft-argmax over one vector of pixels.

template <typename T>
struct SoftArgmax {
  int64_t P, radius;
  T inv_two_sigma2, temperature, scale;
  bool relu;
};

// The separable Gaussian window around the arg-max (best_y, best_x): its H values along the
// first axis into gauss_y, its W along the second into gauss_x.
template <typename T>
inline void gaussian_window(const Vec<T>& best_y, const Vec<T>& best_x, int64_t H, int64_t W,
                            const SoftArgmax<T>& s, Vec<T>* gauss_y, Vec<T>* gauss_x) {
  for (int64_t r = 0; r < H; ++r) {
    const Vec<T> dy = broadcast<Vec<T>>(T(r)) - best_y;
    gauss_y[r] = vexp(-(dy * dy) * s.inv_two_sigma2);
  }
  for (int64_t c = 0; c < W; ++c) {
    const Vec<T> dx = broadcast<Vec<T>>(T(c)) - best_x;
    gauss_x[c] = vexp(-(dx * dx) * s.inv_two_sigma2);
  }
}

// Displacement rows lo .. hi - 1 of a vector of pixels; the others are zero for all of its
// lanes (rows of b outside the map), and soft_argmax_vector neither reads nor writes them.
struct RowRange {
  int64_t lo, hi;
};

// corr: (K, ld) values of L pixels at column 0 of each row. Writes u, v, conf (vectors); when
// grad_corr is given, also the gradient of sum(gu * u + gv * v + gc * conf) w.r.t. corr, as
// (K, grad_ld) values (grad_ld = ld by default), in rows.lo .. rows.hi - 1.
// scratch: K + 2 P vectors.
template <typename T>
void soft_argmax_vector(const T* corr, int64_t ld, const SoftArgmax<T>& s, RowRange rows,
                        Vec<T>* scratch, Vec<T>& u, Vec<T>& v, Vec<T>& conf,
                        const Vec<T>* grads = nullptr, T* grad_corr = nullptr,
                        int64_t grad_ld = 0) {
  using V = Vec<T>;
  const int64_t P = s.P, K = P * P;
  V* values = scratch;      // K: logits, then exponentials
  V* gauss_i = values + K;  // P
  V* gauss_j = gauss_i + P;  // P
  const V zero = vzero<V>();
  const bool zeros_before = rows.lo > 0, zeros_after = rows.hi < P;
  auto read = [&](int64_t k) {
    V c = load<V>(corr + k * ld);
    return s.relu ? (c > zero ? c : zero) : c;
  };
  // Arg-max, first occurrence; confidence = max. A zero row comes first where it precedes.
  V best = zeros_before ? zero : read(rows.lo * P);
  V best_i = broadcast<V>(T(zeros_before ? 0 : rows.lo)), best_j = zero;
  for (int64_t i = rows.lo; i < rows.hi; ++i) {
    for (int64_t j = 0, k = i * P; j < P; ++j, ++k) {
      const V c = read(k);
      const auto greater = c > best;
      best = greater ? c : best;
      best_i = greater ? broadcast<V>(T(i)) : best_i;
      best_j = greater ? broadcast<V>(T(j)) : best_j;
    }
  }
  if (zeros_after) {
    const auto greater = zero > best;
    best = greater ? zero : best;
    best_i = greater ? broadcast<V>(T(rows.hi)) : best_i;
    best_j = greater ? zero : best_j;
  }
  conf = best;
  gaussian_window(best_i, best_j, P, P, s, gauss_i, gauss_j);
  // The zero rows' logits are 0.
  V top = zeros_before || zeros_after ? zero : broadcast<V>(-INFINITY);
  for (int64_t i = rows.lo; i < rows.hi; ++i) {
    for (int64_t j = 0, k = i * P; j < P; ++j, ++k) {
      const V logit = (s.temperature * read(k)) * (gauss_i[i] * gauss_j[j]);
      values[k] = logit;
      top = logit > top ? logit : top;
    }
  }
  // A zero row adds P exp(-top) to the total and, its displacements being symmetric, 0 to u.
  const V zero_row_total = zeros_before || zeros_after ? T(P) * vexp(zero - top) : zero;
  V total = zero, sum_u = zero, sum_v = zero;
  for (int64_t i = 0; i < P; ++i) {
    const T vi = T(i - s.radius) * s.scale;
    if (i < rows.lo || i >= rows.hi) {
      total += zero_row_total;
      sum_v += zero_row_total * vi;
      continue;
    }
    V row_total = zero, row_u = zero;
    for (int64_t j = 0, k = i * P; j < P; ++j, ++k) {
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
  for (int64_t i = rows.lo; i < rows.hi; ++i) {
    const V vi_term = gv * (T(i - s.radius) * s.scale - v);
    const auto at_i = best_i == T(i);
    for (int64_t j = 0, k = i * P; j < P; ++j, ++k) {
      const V weight = values[k] * inv_total;
      const V d_logit = weight * (gu * (T(j - s.radius) * s.scale - u) + vi_term);
      V d_corr = s.temperature * (gauss_i[i] * gauss_j[j]) * d_logit;
      d_corr += (at_i & (best_j == T(j))) ? gc : zero;
      if (s.relu) {
        const V c = load<V>(corr + k * ld);
        d_corr = c > zero ? d_corr : zero;
      }
      store(grad_corr + k * (grad_ld > 0 ? grad_ld : ld), d_corr);
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
// Local correlation: blocked outer products.
//
// Every pass of the correlation, forward or backward, is a sum over some index t of outer
// products acc[r][s] += u[r](t) * v[s](t) of vectors that run over x: kRows rows of one map
// against kColumns vectors of the other, all held in registers. Loads per multiply-add are
// (kRows + kColumns) / (kRows * kColumns), about 0.45 with 32 registers.
//
// - Forward, for output rows y0 .. y0 + kRows - 1 and one row yy of b: u[r] = a's row y0 + r
//   at channel t, v[s] = b's row yy at channel t shifted by j = s (a block of kColumns
//   horizontal displacements); acc[r][s] is displacement (yy - y0 - r + d, s) of row y0 + r.
// - grad_a, rows y0 .. y0 + kRows - 1: t runs over (yy, j), u[r] = grad of displacement
//   (yy - y0 - r + d, j) at row y0 + r, v[s] = b's row yy at channel c0 + s shifted by j.
// - grad_b, rows yy0 .. yy0 + kRows - 1: t runs over (y, j), u[r] = grad of displacement
//   (yy0 + r - y + d, j) at row y shifted by -j, v[s] = a's row y at channel c0 + s shifted
//   by -j.
//
// At the top and bottom of the map some rows of a block have no partner row: the outer
// product is then taken over the rows that have one (a sub-range [R0, R1) chosen at compile
// time), so no multiply-add is wasted. The maps are first copied with their rows padded
// (B, C, H, Wx), one pass over each input.

constexpr int kRows = 3;
#if defined(__AVX512F__)
constexpr int kColumns = 8;  // 24 accumulators + 3 + 1 of the 32 registers
constexpr int kFewColumns = 5;  // the forward's, where they waste less (15 = 3 x 5, not 2 x 8)
#else
constexpr int kColumns = 4;  // 12 accumulators + 3 + 1 of the 16 registers
constexpr int kFewColumns = 4;
#endif

// Lanes of the correlation's vectors: a whole register, or half of one when the map's rows
// fit in half (8x8 maps with 16-lane registers), so that no more than half is padding.
template <typename T>
constexpr int kHalfLanes = kVectorBytes >= 32 ? kLanes<T> / 2 : kLanes<T>;

template <typename T>
bool use_half_lanes(int64_t W) {
  return kHalfLanes<T> != kLanes<T> && W <= kHalfLanes<T>;
}

struct Plan {
  int64_t B, C, H, W, P, K, radius;
  int64_t lanes;   // vector width of the correlation
  int64_t Wa;      // rows of a's forward copy: W rounded up to the lanes
  int64_t Wp;      // rows of the padded copies (x shifted right by the radius)
  int64_t Cp;      // channels of the padded copies: C rounded up to kColumns
  int64_t shift_columns;  // horizontal displacements per block in the forward
  int64_t shift_blocks;   // blocks of them
  int64_t blocks;  // row blocks per pair
  int64_t ld;      // row length of a block's volume buffer (K, ld): kRows rows of Wa
  int64_t ld_vectors;  // ld rounded up to whole vectors of kLanes
};

template <typename T>
Plan make_plan(const at::Tensor& a, int64_t P) {
  Plan p;
  p.B = a.size(0);
  p.C = a.size(1);
  p.H = a.size(2);
  p.W = a.size(3);
  p.P = P;
  p.K = P * P;
  p.radius = P / 2;
  p.lanes = use_half_lanes<T>(p.W) ? kHalfLanes<T> : kLanes<T>;
  p.Wa = round_up(p.W, p.lanes);
  // Blocks of kColumns displacements, or of kFewColumns when that wastes fewer.
  p.shift_columns =
      round_up(P, kFewColumns) < round_up(P, kColumns) ? kFewColumns : kColumns;
  p.shift_blocks = (P + p.shift_columns - 1) / p.shift_columns;
  // The forward reads up to x = Wa - 1 + shift_blocks * shift_columns - 1; the backward up to
  // Wa - 1 + 2 * radius.
  p.Wp = p.Wa + p.shift_blocks * p.shift_columns - 1;
  p.Cp = round_up(p.C, kColumns);
  p.blocks = (p.H + kRows - 1) / kRows;
  p.ld = kRows * p.Wa;
  p.ld_vectors = round_up(p.ld, kLanes<T>);
  return p;
}

// (B, channels, H, width) copy of t (B, C, H, W) with x shifted right by shift; zero elsewhere.
template <typename T>
at::Tensor padded_planes(const at::Tensor& t, int64_t shift, int64_t width, int64_t channels) {
  const int64_t B = t.size(0), C = t.size(1), H = t.size(2), W = t.size(3);
  at::Tensor out = empty_large({B, channels, H, width}, t.options());
  const T* src = t.data_ptr<T>();
  T* dst = out.data_ptr<T>();
  parallel_tasks<T>(B * channels, 0, [&](int64_t task, T*) {
    const int64_t n = task / channels, c = task % channels;
    T* row = dst + task * H * width;
    if (c >= C) {
      std::fill_n(row, H * width, T(0));
      return;
    }
    const T* from = src + (n * C + c) * H * W;
    for (int64_t y = 0; y < H; ++y, row += width, from += W) {
      for (int64_t x = 0; x < shift; ++x) row[x] = T(0);
      for (int64_t x = 0; x < W; ++x) row[shift + x] = from[x];
      for (int64_t x = shift + W; x < width; ++x) row[x] = T(0);
    }
  });
  return out;
}

// Keeps the compiler from folding a load into each instruction that uses it: an operand read
// from memory by R multiply-adds would be loaded R times (and split across cache lines).
template <typename V>
inline __attribute__((always_inline)) void in_register(V& v) {
#if defined(__x86_64__) || defined(__i386__)
  asm("" : "+v"(v));
#elif defined(__aarch64__)
  asm("" : "+w"(v));
#endif
}

// acc[r][s] += sum over t < n of u[r] * v[s] for rows R0 <= r < R1, with u[r] at
// u + (r - R0) * u_r + t * u_t and v[s] at v + s * v_s + t * v_t.
template <typename T, int L, int R0, int R1, int S>
inline __attribute__((always_inline)) void outer_products(VecN<T, L> (&acc)[kRows][S],
                                                          const T* u, int64_t u_r, int64_t u_t,
                                                          const T* v, int64_t v_s, int64_t v_t,
                                                          int64_t n) {
  using V = VecN<T, L>;
  constexpr int R = R1 - R0;
  for (int64_t t = 0; t < n; ++t, u += u_t, v += v_t) {
    V ur[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) ur[r] = load<V>(u + r * u_r);
#pragma GCC unroll 16
    for (int s = 0; s < S; ++s) {
      V vs = load<V>(v + s * v_s);
      in_register(vs);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) acc[R0 + r][s] += ur[r] * vs;
    }
  }
}

// Calls fn(R0, R1) with the compile-time constants equal to lo < hi <= kRows.
template <int R0 = 0, int R1 = 1, typename Fn>
inline __attribute__((always_inline)) void with_rows(int64_t lo, int64_t hi, Fn&& fn) {
  if constexpr (R0 < kRows) {
    if (lo == R0 && hi == R1) {
      fn(std::integral_constant<int, R0>(), std::integral_constant<int, R1>());
    } else if constexpr (R1 < kRows) {
      with_rows<R0, R1 + 1>(lo, hi, fn);
    } else {
      with_rows<R0 + 1, R0 + 2>(lo, hi, fn);
    }
  }
}

template <typename T, int L, int S>
inline void zero(VecN<T, L> (&acc)[kRows][S]) {
  for (auto& row : acc)
    for (auto& vec : row) vec = vzero<VecN<T, L>>();
}

// Correlations of rows y0 .. y0 + rows - 1 of one pair into buf (K, ld): displacement k of
// row y0 + r at buf[k * ld + r * Wa + x]. a_rows: the pair's (H, C, Wa) copy; b_pad: its
// (H, Cp, Wp) copy shifted by the radius.
template <typename T, int L, int S>
void correlate_block(const Plan& p, const T* a_rows, const T* b_pad, int64_t y0, T* buf) {
  using V = VecN<T, L>;
  const int64_t rows = std::min<int64_t>(kRows, p.H - y0);
  const int64_t d = p.radius;
  // Displacements that leave the map vertically are zero.
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < p.P; ++i) {
      const int64_t yy = y0 + r + i - d;
      if (yy >= 0 && yy < p.H) continue;
      for (int64_t j = 0; j < p.P; ++j) {
        std::fill_n(buf + (i * p.P + j) * p.ld + r * p.Wa, p.Wa, T(0));
      }
    }
  }
  const int64_t first = std::max<int64_t>(0, y0 - d), last = std::min(p.H, y0 + rows + d);
  for (int64_t yy = first; yy < last; ++yy) {
    const int64_t lo = std::max<int64_t>(0, yy - y0 - d);
    const int64_t hi = std::min(rows, yy - y0 + d + 1);
    with_rows(lo, hi, [&](auto r0, auto r1) {
      constexpr int R0 = decltype(r0)::value, R1 = decltype(r1)::value;
      for (int64_t x0 = 0; x0 < p.Wa; x0 += L) {
        for (int64_t jb = 0; jb < p.shift_blocks; ++jb) {
          V acc[kRows][S];
          zero<T, L, S>(acc);
          outer_products<T, L, R0, R1, S>(acc, a_rows + (y0 + R0) * p.Wa + x0, p.Wa, p.H * p.Wa,
                                       b_pad + yy * p.Wp + x0 + jb * S, 1, p.H * p.Wp,
                                       p.C);
          for (int r = R0; r < R1; ++r) {
            const int64_t i = yy - y0 - r + d;
            T* out = buf + (i * p.P + jb * S) * p.ld + r * p.Wa + x0;
            const int64_t count = std::min<int64_t>(S, p.P - jb * S);
            for (int64_t s = 0; s < count; ++s) store(out + s * p.ld, acc[r][s]);
          }
        }
      }
    });
  }
}

// Runs fn(n, y0, rows, buf, plan) for every block of kRows output rows (rows of them in the
// map), buf = (K, ld) correlations of the block (see correlate_block), followed by a vector of
// slack so that whole vectors may be read from any column of the last row.
template <typename T, typename Fn>
void for_each_correlation_block(const at::Tensor& a, const at::Tensor& b, int64_t P, Fn fn) {
  const Plan p = make_plan<T>(a, P);
  at::Tensor a_rows = padded_planes<T>(a, 0, p.Wa, p.C);
  at::Tensor b_pad = padded_planes<T>(b, p.radius, p.Wp, p.Cp);
  const T* a_ptr = a_rows.data_ptr<T>();
  const T* b_ptr = b_pad.data_ptr<T>();
  const bool few = p.shift_columns != kColumns;
  parallel_tasks<T>(p.B * p.blocks, p.K * p.ld + kLanes<T>, [&](int64_t task, T* buf) {
    const int64_t n = task / p.blocks, y0 = task % p.blocks * kRows;
    const T* a_pair = a_ptr + n * p.C * p.H * p.Wa;
    const T* b_pair = b_ptr + n * p.Cp * p.H * p.Wp;
    if (p.lanes == kLanes<T>) {
      (few ? correlate_block<T, kLanes<T>, kFewColumns>
           : correlate_block<T, kLanes<T>, kColumns>)(p, a_pair, b_pair, y0, buf);
    } else {
      (few ? correlate_block<T, kHalfLanes<T>, kFewColumns>
           : correlate_block<T, kHalfLanes<T>, kColumns>)(p, a_pair, b_pair, y0, buf);
    }
    fn(n, y0, std::min<int64_t>(kRows, p.H - y0), buf, p);
  });
}

// ---------------------------------------------------------------------------------------------
// Entry points.

at::Tensor correlation_forward(at::Tensor a, at::Tensor b, int64_t P) {
  check_pair(a, b, P);
  a = a.contiguous();
  b = b.contiguous();
  const int64_t B = a.size(0), H = a.size(2), W = a.size(3);
  at::Tensor out = empty_volume({B, P * P, H, W}, a.options());
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "tcm_correlation_forward", [&] {
    scalar_t* out_ptr = out.data_ptr<scalar_t>();
    for_each_correlation_block<scalar_t>(
        a, b, P, [&](int64_t n, int64_t y0, int64_t rows, const scalar_t* buf, const Plan& p) {
          for (int64_t k = 0; k < p.K; ++k) {
            for (int64_t r = 0; r < rows; ++r) {
              copy_row(out_ptr + ((n * p.K + k) * H + y0 + r) * W, buf + k * p.ld + r * p.Wa, W);
            }
          }
        });
  });
  return out;
}

// MTDM's fields [u, v, conf] of ReLU(correlation(a, b)), (B, 3, H, W). With keep_volume, also
// returns the ReLU'd volume for mtdm_fields_backward, in the forward's block layout: a flat
// (B * blocks * K * ld + lanes) tensor where block j of pair n holds rows 3 j .. 3 j + 2 as
// (K, ld) values (see for_each_correlation_block), followed by a vector of slack; otherwise an
// empty tensor. The third tensor is always empty (kept for the binding's shape).
std::vector<at::Tensor> mtdm_fields_forward(at::Tensor a, at::Tensor b, int64_t P, double sigma,
                                            double temperature, bool keep_volume) {
  check_pair(a, b, P);
  a = a.contiguous();
  b = b.contiguous();
  const int64_t B = a.size(0), H = a.size(2), W = a.size(3);
  at::Tensor fields = at::empty({B, 3, H, W}, a.options());
  at::Tensor volume;
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "tcm_mtdm_fields_forward", [&] {
    using V = Vec<scalar_t>;
    constexpr int L = kLanes<scalar_t>;
    const SoftArgmax<scalar_t> s = soft_argmax_params<scalar_t>(P, sigma, temperature, true);
    scalar_t* fields_ptr = fields.data_ptr<scalar_t>();
    if (keep_volume) {
      const Plan plan = make_plan<scalar_t>(a, P);
      volume = empty_volume({B * plan.blocks * plan.K * plan.ld + L}, a.options());
      volume.narrow(0, volume.numel() - L, L).zero_();
    }
    scalar_t* volume_ptr = keep_volume ? volume.data_ptr<scalar_t>() : nullptr;
    for_each_correlation_block<scalar_t>(
        a, b, P, [&](int64_t n, int64_t y0, int64_t rows, const scalar_t* buf, const Plan& p) {
          thread_local std::vector<V> scratch;
          scratch.resize(p.K + 2 * P);
          if (volume_ptr != nullptr) {
            scalar_t* dst = volume_ptr + (n * p.blocks + y0 / kRows) * p.K * p.ld;
            const V zero = vzero<V>();
            int64_t i = 0;
            for (; i + L <= p.K * p.ld; i += L) {
              const V c = load<V>(buf + i);
              store(dst + i, c > zero ? c : zero);
            }
            for (; i < p.K * p.ld; ++i) dst[i] = buf[i] > 0 ? buf[i] : scalar_t(0);
          }
          // The block's rows side by side: one vector may hold pixels of several rows.
          scalar_t* u_plane = fields_ptr + n * 3 * H * W;
          for (int64_t col0 = 0; col0 < rows * p.Wa; col0 += L) {
            V u, v, conf;
            soft_argmax_vector<scalar_t>(buf + col0, p.ld, s, {0, P}, scratch.data(), u, v, conf);
            for (int64_t q = 0; q < L; ++q) {
              const int64_t r = (col0 + q) / p.Wa, x = (col0 + q) % p.Wa;
              if (r >= rows || x >= W) continue;
              scalar_t* dst = u_plane + (y0 + r) * W + x;
              dst[0] = u[q];
              dst[H * W] = v[q];
              dst[2 * H * W] = conf[q];
            }
          }
        });
  });
  return {fields, volume, at::Tensor()};
}

// ---------------------------------------------------------------------------------------------
// Correlation backward (see "Local correlation: blocked outer products" above).

// Rows (x contiguous) of a gradient volume: row y of displacement k of pair n.
template <typename T>
struct VolumeRows {
  const T* data;
  int64_t sn, sk;
  std::vector<int64_t> y_offset;  // where row y starts in a displacement's plane
  int64_t block_ld = 0;           // in the block layout: the length of a block's rows
  const T* row(int64_t n, int64_t k, int64_t y) const { return data + n * sn + k * sk + y_offset[y]; }

  // A (B, K, H, W) tensor with any strides but the last.
  static VolumeRows planes(const at::Tensor& g) {
    VolumeRows rows{g.data_ptr<T>(), g.stride(0), g.stride(1), {}};
    for (int64_t y = 0; y < g.size(2); ++y) rows.y_offset.push_back(y * g.stride(2));
    return rows;
  }

  // The block layout of mtdm_fields_forward's volume, with rows of length ld.
  static VolumeRows blocks(const T* data, const Plan& p, int64_t ld) {
    VolumeRows rows{data, p.blocks * p.K * ld, ld, {}, ld};
    for (int64_t y = 0; y < p.H; ++y) {
      rows.y_offset.push_back(y / kRows * p.K * ld + y % kRows * p.Wa);
    }
    return rows;
  }
};

// Writes acc's rows [0, rows) and channels [c0, C) to out (C, H, W) of one pair at row y0,
// columns x0 .. x0 + L - 1 cut at W.
template <typename T, int L>
void store_block(const VecN<T, L> (&acc)[kRows][kColumns], const Plan& p, int64_t rows,
                 int64_t c0, int64_t y0, int64_t x0, T* out) {
  const int64_t channels = std::min<int64_t>(kColumns, p.C - c0);
  const int64_t count = std::min<int64_t>(L, p.W - x0);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t s = 0; s < channels; ++s) {
      T* dst = out + ((c0 + s) * p.H + y0 + r) * p.W + x0;
      if (count == L) {
        store(dst, acc[r][s]);
      } else {
        for (int64_t x = 0; x < count; ++x) dst[x] = acc[r][s][x];
      }
    }
  }
}

// The operands of one outer_products call of a gradient block (see outer_products).
template <typename T>
struct Operands {
  const T* u;
  int64_t u_r, u_t;
  const T* v;
  int64_t v_s, v_t;
};

// Gradient rows y0 .. y0 + rows - 1 of one pair (C, H, W) into out: for each block of L pixels
// and kColumns channels, the sum over the rows yy within the radius of row block of
// outer_products(operands(x0, c0, yy, R0)), R0 the block's first row that meets row yy.
template <typename T, int L, typename Fn>
inline __attribute__((always_inline)) void gradient_block(const Plan& p, int64_t y0,
                                                          int64_t rows, T* out, Fn operands) {
  using V = VecN<T, L>;
  const int64_t d = p.radius;
  const int64_t first = std::max<int64_t>(0, y0 - d), last = std::min(p.H, y0 + rows + d);
  for (int64_t x0 = 0; x0 < p.Wa; x0 += L) {
    for (int64_t c0 = 0; c0 < p.Cp; c0 += kColumns) {
      V acc[kRows][kColumns];
      zero<T, L, kColumns>(acc);
      for (int64_t yy = first; yy < last; ++yy) {
        const int64_t lo = std::max<int64_t>(0, yy - y0 - d);
        const int64_t hi = std::min(rows, yy - y0 + d + 1);
        with_rows(lo, hi, [&](auto r0, auto r1) {
          constexpr int R0 = decltype(r0)::value, R1 = decltype(r1)::value;
          const Operands<T> o = operands(x0, c0, yy, R0);
          outer_products<T, L, R0, R1, kColumns>(acc, o.u, o.u_r, o.u_t, o.v, o.v_s, o.v_t,
                                                 p.P);
        });
      }
      store_block<T, L>(acc, p, rows, c0, y0, x0, out);
    }
  }
}

// grad_a rows y0 .. y0 + rows - 1 of one pair. g: the block's gradients, displacement k of row
// y0 + r at g + r * r_stride + k * k_stride (zero beyond x = W); b_pad: the pair's (Cp, H, Wp)
// copy of b shifted by the radius; out: grad_a (C, H, W).
template <typename T, int L>
void grad_a_block(const Plan& p, const T* g, int64_t r_stride, int64_t k_stride, const T* b_pad,
                  int64_t y0, int64_t rows, T* out) {
  const int64_t d = p.radius;
  gradient_block<T, L>(p, y0, rows, out, [&](int64_t x0, int64_t c0, int64_t yy, int r0) {
    // Row r meets b's row yy at displacement i = yy - y0 - r + d.
    return Operands<T>{g + r0 * r_stride + (yy - y0 - r0 + d) * p.P * k_stride + x0,
                       r_stride - p.P * k_stride, k_stride,
                       b_pad + (c0 * p.H + yy) * p.Wp + x0, p.H * p.Wp, 1};
  });
}

// grad_b rows yy0 .. yy0 + rows - 1 of one pair. g: (rows, K, Wp) gradients where g[r][i P + j]
// is displacement (i, j) at row yy0 + r + d - i (the pixels that meet b's row yy0 + r), shifted
// right by the radius; a_pad: the pair's (Cp, H, Wp) copy of a shifted by the radius; out:
// grad_b (C, H, W).
template <typename T, int L>
void grad_b_block(const Plan& p, const T* g, const T* a_pad, int64_t yy0, int64_t rows,
                  T* out) {
  const int64_t d = p.radius;
  gradient_block<T, L>(p, yy0, rows, out, [&](int64_t m0, int64_t c0, int64_t y, int r0) {
    // Pixel m of b meets pixel m + d - j of a: position m + 2 d - j of the padded rows.
    // Row r meets a's row y at displacement i = yy0 + r + d - y.
    return Operands<T>{g + (r0 * p.K + (yy0 + r0 + d - y) * p.P) * p.Wp + m0 + 2 * d,
                       (p.K + p.P) * p.Wp, p.Wp - 1,
                       a_pad + (c0 * p.H + y) * p.Wp + m0 + 2 * d, p.H * p.Wp, -1};
  });
}

// Rows per task of the backward: whole blocks, several of them so that the gradient is read
// in runs of many rows per displacement (it is read once, from memory rather than cache), but
// enough tasks for every thread.
int64_t backward_chunk_blocks(const Plan& p) {
  const int64_t threads = at::get_num_threads();
  int64_t blocks = std::min<int64_t>(p.blocks, 16);
  while (blocks > 1 && p.B * ((p.blocks + blocks - 1) / blocks) < 4 * threads) --blocks;
  return blocks;
}

template <typename T>
void correlation_backward_impl(const VolumeRows<T>& grad, const at::Tensor& a,
                               const at::Tensor& b, int64_t P, at::Tensor* grad_a,
                               at::Tensor* grad_b) {
  const Plan p = make_plan<T>(a, P);
  const int64_t d = p.radius;
  const bool half = p.lanes != kLanes<T>;
  const int64_t chunk_blocks = backward_chunk_blocks(p);
  const int64_t chunks = (p.blocks + chunk_blocks - 1) / chunk_blocks;
  const int64_t chunk_rows = chunk_blocks * kRows;
  // Runs fn(n, y0, y1, g) for rows [y0, y1) of pair n, every chunk; g: a buffer of g_size
  // values per thread, zero at first.
  auto for_each_chunk = [&](int64_t g_size, auto fn) {
    parallel_tasks<T>(p.B * chunks, g_size, [&](int64_t task, T* g) {
      const int64_t n = task / chunks, y0 = task % chunks * chunk_rows;
      fn(n, y0, std::min(p.H, y0 + chunk_rows), g);
    });
  };
  if (grad_a != nullptr) {
    at::Tensor b_pad = padded_planes<T>(b, d, p.Wp, p.Cp);
    const T* b_ptr = b_pad.data_ptr<T>();
    T* out = grad_a->data_ptr<T>();
    // The block layout is read in place; other layouts are gathered per chunk as
    // g[y - y0][k] = gradient of displacement k at row y (zero beyond x = W).
    const bool in_place = grad.block_ld > 0;
    const int64_t g_size = in_place ? 0 : chunk_rows * p.K * p.Wa;
    for_each_chunk(g_size, [&](int64_t n, int64_t y0, int64_t y1, T* g) {
      if (!in_place) {
        for (int64_t k = 0; k < p.K; ++k) {
          for (int64_t y = y0; y < y1; ++y) {
            copy_row(g + ((y - y0) * p.K + k) * p.Wa, grad.row(n, k, y), p.W);
          }
        }
      }
      const T* b_pair = b_ptr + n * p.Cp * p.H * p.Wp;
      T* out_pair = out + n * p.C * p.H * p.W;
      for (int64_t yb = y0; yb < y1; yb += kRows) {
        const int64_t rows = std::min<int64_t>(kRows, y1 - yb);
        const T* g_block = in_place ? grad.row(n, 0, yb) : g + (yb - y0) * p.K * p.Wa;
        const int64_t r_stride = in_place ? p.Wa : p.K * p.Wa;
        const int64_t k_stride = in_place ? grad.block_ld : p.Wa;
        (half ? grad_a_block<T, kHalfLanes<T>> : grad_a_block<T, kLanes<T>>)(
            p, g_block, r_stride, k_stride, b_pair, yb, rows, out_pair);
      }
    });
  }
  if (grad_b != nullptr) {
    at::Tensor a_pad = padded_planes<T>(a, d, p.Wp, p.Cp);
    const T* a_ptr = a_pad.data_ptr<T>();
    T* out = grad_b->data_ptr<T>();
    for_each_chunk(chunk_rows * p.K * p.Wp, [&](int64_t n, int64_t y0, int64_t y1, T* g) {
      // g[yy - y0][i P + j] = gradient of displacement (i, j) at row yy + d - i, the pixels
      // that meet b's row yy (zero where that row is outside the map), shifted right by d;
      // the rows for successive yy are successive rows of the gradient.
      for (int64_t k = 0; k < p.K; ++k) {
        const int64_t shift = d - k / P;
        for (int64_t yy = y0; yy < y1; ++yy) {
          T* dst = g + ((yy - y0) * p.K + k) * p.Wp + d;
          if (yy + shift >= 0 && yy + shift < p.H) {
            copy_row(dst, grad.row(n, k, yy + shift), p.W);
          } else {
            std::fill_n(dst, p.W, T(0));
          }
        }
      }
      const T* a_pair = a_ptr + n * p.Cp * p.H * p.Wp;
      T* out_pair = out + n * p.C * p.H * p.W;
      for (int64_t yb = y0; yb < y1; yb += kRows) {
        const int64_t rows = std::min<int64_t>(kRows, y1 - yb);
        const T* g_block = g + (yb - y0) * p.K * p.Wp;
        if (half) {
          grad_b_block<T, kHalfLanes<T>>(p, g_block, a_pair, yb, rows, out_pair);
        } else {
          grad_b_block<T, kLanes<T>>(p, g_block, a_pair, yb, rows, out_pair);
        }
      }
    });
  }
}

std::vector<at::Tensor> correlation_backward(at::Tensor grad, at::Tensor a, at::Tensor b,
                                             int64_t P, bool need_a, bool need_b) {
  check_pair(a, b, P);
  a = a.contiguous();
  b = b.contiguous();
  grad = grad.to(a.scalar_type());
  if (grad.stride(3) != 1) grad = grad.contiguous();
  TORCH_CHECK(grad.dim() == 4 && grad.size(0) == a.size(0) && grad.size(1) == P * P &&
                  grad.size(2) == a.size(2) && grad.size(3) == a.size(3),
              "expected a (B, P*P, H, W) gradient");
  at::Tensor grad_a = need_a ? empty_large(a.sizes(), a.options()) : at::Tensor();
  at::Tensor grad_b = need_b ? empty_large(b.sizes(), b.options()) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "tcm_correlation_backward", [&] {
    correlation_backward_impl<scalar_t>(VolumeRows<scalar_t>::planes(grad), a, b, P,
                                        need_a ? &grad_a : nullptr,
                                        need_b ? &grad_b : nullptr);
  });
  return {grad_a, grad_b};
}

// Gradients w.r.t. a and b of MTDM's fields, from the ReLU'd volume mtdm_fields_forward kept
// (block layout) and the fields' gradient (B, 3, H, W): the soft-argmax's backward block by
// block into a gradient volume of the same layout, then the correlation's backward from it.
std::vector<at::Tensor> mtdm_fields_backward(at::Tensor a, at::Tensor b, at::Tensor volume,
                                             c10::optional<at::Tensor> stats,
                                             at::Tensor grad_fields, int64_t P, double sigma,
                                             double temperature, bool need_a, bool need_b) {
  check_pair(a, b, P);
  a = a.contiguous();
  b = b.contiguous();
  grad_fields = grad_fields.contiguous().to(a.scalar_type());
  const int64_t B = a.size(0), H = a.size(2), W = a.size(3);
  TORCH_CHECK(grad_fields.sizes() == at::IntArrayRef({B, 3, H, W}),
              "expected a (B, 3, H, W) gradient of the fields");
  at::Tensor grad_a = need_a ? empty_large(a.sizes(), a.options()) : at::Tensor();
  at::Tensor grad_b = need_b ? empty_large(b.sizes(), b.options()) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "tcm_mtdm_fields_backward", [&] {
    using T = scalar_t;
    using V = Vec<T>;
    constexpr int L = kLanes<T>;
    const Plan p = make_plan<T>(a, P);
    TORCH_CHECK(volume.scalar_type() == a.scalar_type() &&
                    volume.numel() == B * p.blocks * p.K * p.ld + L,
                "the volume is not the one mtdm_fields_forward kept for these maps");
    const SoftArgmax<T> s = soft_argmax_params<T>(P, sigma, temperature, true);
    // (B, blocks, K, ld_vectors): whole vectors may be written from any column.
    at::Tensor grad_volume = empty_volume({B * p.blocks * p.K * p.ld_vectors}, a.options());
    const T* volume_ptr = volume.contiguous().data_ptr<T>();
    const T* fields_ptr = grad_fields.data_ptr<T>();
    T* grad_ptr = grad_volume.data_ptr<T>();
    parallel_tasks<T>(B * p.blocks, 3 * p.ld_vectors, [&](int64_t task, T* grads) {
      thread_local std::vector<V> scratch;
      scratch.resize(p.K + 2 * P);
      const int64_t n = task / p.blocks, y0 = task % p.blocks * kRows;
      const int64_t rows = std::min<int64_t>(kRows, H - y0);
      // The block's gradients of u, v, conf side by side as its correlations; zero elsewhere.
      for (int64_t f = 0; f < 3; ++f) {
        for (int64_t r = 0; r < kRows; ++r) {
          T* dst = grads + f * p.ld_vectors + r * p.Wa;
          if (r < rows) {
            copy_row(dst, fields_ptr + ((n * 3 + f) * H + y0 + r) * W, W);
          } else {
            std::fill_n(dst, W, T(0));
          }
        }
      }
      const T* corr = volume_ptr + task * p.K * p.ld;
      T* grad_corr = grad_ptr + task * p.K * p.ld_vectors;
      for (int64_t col0 = 0; col0 < rows * p.Wa; col0 += L) {
        V u, v, conf;
        const V g[3] = {load<V>(grads + col0), load<V>(grads + p.ld_vectors + col0),
                        load<V>(grads + 2 * p.ld_vectors + col0)};
        soft_argmax_vector<T>(corr + col0, p.ld, s, {0, P}, scratch.data(), u, v, conf, g,
                              grad_corr + col0, p.ld_vectors);
      }
    });
    correlation_backward_impl<T>(VolumeRows<T>::blocks(grad_ptr, p, p.ld_vectors), a, b, P,
                                 need_a ? &grad_a : nullptr, need_b ? &grad_b : nullptr);
  });
  return {grad_a, grad_b};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "tcm: local correlation and MTDM's fields on the CPU";
  m.def("correlation_forward", &correlation_forward, "(B,C,H,W) x2 -> (B,P*P,H,W)");
  m.def("correlation_backward", &correlation_backward,
        "grad (B,P*P,H,W), a, b -> [grad_a, grad_b]");
  m.def("mtdm_fields_forward", &mtdm_fields_forward,
        "(B,C,H,W) x2 -> [fields (B,3,H,W), kept volume or empty, kept stats or empty]");
  m.def("mtdm_fields_backward", &mtdm_fields_backward,
        "a, b, kept volume, kept stats, grad fields (B,3,H,W) -> [grad_a, grad_b]");
  m.def("vector_bytes", []() { return kVectorBytes; }, "SIMD register width the build uses");
}
