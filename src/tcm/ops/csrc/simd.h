// Vectors of the compiler's vector extensions, one register wide (16 floats with AVX-512, 8
// with AVX, 4 otherwise): the same source builds for any CPU; the build passes -march=native.
#pragma once

#include <cstdint>
#include <cstring>

namespace tcm::simd {

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

// Vectors of N lanes (the correlation also uses half registers).
template <typename T, int N>
struct LanesOf {
  typedef T type __attribute__((vector_size(N * sizeof(T))));
};
template <typename T, int N>
using VecN = typename LanesOf<T, N>::type;

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

}  // namespace tcm::simd
