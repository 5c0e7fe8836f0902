// Portable SIMD through GCC/Clang vector extensions: AVX-512 or AVX2 natively, SIMD128 under
// Emscripten (-msimd128). Kernels written with Vec compute every lane with the same operations,
// so a value's result never depends on its position in a buffer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace ebm::simd {

#if defined(__AVX512F__)
#define EBM_SIMD_LANES 16
#elif defined(__AVX__)
#define EBM_SIMD_LANES 8
#else  // SSE2, WebAssembly SIMD128, NEON
#define EBM_SIMD_LANES 4
#endif
inline constexpr int kLanes = EBM_SIMD_LANES;

typedef float Vec __attribute__((vector_size(kLanes * sizeof(float))));
typedef int32_t IVec __attribute__((vector_size(kLanes * sizeof(int32_t))));

inline Vec load(const float* p) {
  Vec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store(float* p, Vec v) { std::memcpy(p, &v, sizeof v); }

// src[base + i] in lanes i of [lo, hi) (0 <= lo <= hi <= kLanes), zero in the others; nothing
// outside those lanes is read, so the vector may hang over either end of an array. One masked
// load with AVX-512, else through a zeroed copy.
inline Vec load_lanes(const float* src, std::ptrdiff_t base, int lo, int hi) {
#if defined(__AVX512F__)
  const auto mask = __mmask16(((1u << hi) - 1u) & ~((1u << lo) - 1u));
  const auto p = reinterpret_cast<const float*>(reinterpret_cast<std::uintptr_t>(src) +
                                                base * std::ptrdiff_t(sizeof(float)));
  return (Vec)_mm512_maskz_loadu_ps(mask, p);
#else
  float t[kLanes] = {};
  for (int i = lo; i < hi; ++i) t[i] = src[base + i];
  return load(t);
#endif
}
// The first `valid` floats from src (0 <= valid <= kLanes), the other lanes zero.
inline Vec load_first(const float* src, int valid) {
  if (valid == kLanes) return load(src);
  return load_lanes(src, 0, 0, valid);
}
// The first `valid` lanes of v to dst (0 <= valid <= kLanes); nothing after them is written.
inline void store_first(float* dst, Vec v, int valid) {
  if (valid == kLanes) return store(dst, v);
#if defined(__AVX512F__)
  _mm512_mask_storeu_ps(dst, __mmask16((1u << valid) - 1u), (__m512)v);
#else
  float t[kLanes];
  store(t, v);
  std::memcpy(dst, t, sizeof(float) * size_t(valid));
#endif
}
// len floats from src to dst, a vector at a time and the last partial one under a mask: the rows
// the convolutions copy are a few dozen floats, where a library call per row cost more than the
// copy, and a memcpy of a length GCC does not know it may emit as `rep movs`, whose start-up
// dominates so short a copy (a GEMM operand's 11-float rows, bench/README.md).
inline void copy_row(const float* src, int len, float* dst) {
  int j = 0;
  for (; j + kLanes <= len; j += kLanes) store(dst + j, load(src + j));
  if (j < len) store_first(dst + j, load_first(src + j, len - j), len - j);
}
inline Vec splat(float x) { return Vec{} + x; }
// The smaller (larger) of a and b, a where they tie or either is NaN: one instruction each on
// x86 (minps / maxps, operands swapped) and in wasm as f32x4.pmin / pmax, asked for by name there
// since LLVM may turn the select into f32x4.min / max (NaN-propagating, which V8 expands into
// about seven x86 instructions; a < b ? a : b became a compare and a bitselect).
#if defined(__wasm_simd128__)
inline Vec min(Vec a, Vec b) { return (Vec)__builtin_wasm_pmin_f32x4(a, b); }
inline Vec max(Vec a, Vec b) { return (Vec)__builtin_wasm_pmax_f32x4(a, b); }
#else
inline Vec min(Vec a, Vec b) { return b < a ? b : a; }
inline Vec max(Vec a, Vec b) { return a < b ? b : a; }
#endif

// Lanes F, F + 2, F + 4, ... of the 2 * kLanes values in (a, b), F = 0 or 1: a stride-2 load.
template <int F>
inline Vec stride2_lanes(Vec a, Vec b) {
  static_assert(F == 0 || F == 1, "a stride-2 load starts at lane 0 or 1");
#if defined(__clang__)
#if EBM_SIMD_LANES == 16
  return __builtin_shufflevector(a, b, F, F + 2, F + 4, F + 6, F + 8, F + 10, F + 12, F + 14,
                                 F + 16, F + 18, F + 20, F + 22, F + 24, F + 26, F + 28, F + 30);
#elif EBM_SIMD_LANES == 8
  return __builtin_shufflevector(a, b, F, F + 2, F + 4, F + 6, F + 8, F + 10, F + 12, F + 14);
#else
  return __builtin_shufflevector(a, b, F, F + 2, F + 4, F + 6);
#endif
#else
  IVec idx;
  for (int i = 0; i < kLanes; ++i) idx[i] = 2 * i + F;
  return __builtin_shuffle(a, b, idx);
#endif
}
inline Vec even_lanes(Vec a, Vec b) { return stride2_lanes<0>(a, b); }
inline Vec odd_lanes(Vec a, Vec b) { return stride2_lanes<1>(a, b); }

// (a0, b0, a1, b1, ...) as two vectors: a and b interleaved, for a stride-2 store of two rows of
// values.
inline void interleave(Vec a, Vec b, Vec* lo, Vec* hi) {
#if defined(__clang__)
#if EBM_SIMD_LANES == 16
  *lo = __builtin_shufflevector(a, b, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  *hi = __builtin_shufflevector(a, b, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
#elif EBM_SIMD_LANES == 8
  *lo = __builtin_shufflevector(a, b, 0, 8, 1, 9, 2, 10, 3, 11);
  *hi = __builtin_shufflevector(a, b, 4, 12, 5, 13, 6, 14, 7, 15);
#else
  *lo = __builtin_shufflevector(a, b, 0, 4, 1, 5);
  *hi = __builtin_shufflevector(a, b, 2, 6, 3, 7);
#endif
#else
  IVec il, ih;
  for (int i = 0; i < kLanes; ++i) {
    il[i] = i / 2 + (i % 2 ? kLanes : 0);
    ih[i] = kLanes / 2 + i / 2 + (i % 2 ? kLanes : 0);
  }
  *lo = __builtin_shuffle(a, b, il);
  *hi = __builtin_shuffle(a, b, ih);
#endif
}

// (a0, 0, a1, 0, ...) as two vectors: the low and high halves of a interleaved with zeros, for a
// stride-2 scatter-add.
inline void interleave_zeros(Vec a, Vec* lo, Vec* hi) { interleave(a, Vec{}, lo, hi); }

// N vectors r[0..N) (N a power of two) as N rows of a block, transposed in place: afterwards the
// vectors hold the block's columns in order, each column's N entries together (row 0 first). Log2
// N rounds of interleave(), each pairing rows N / 2 apart, then the halves in turn.
template <int N>
inline void interleave_rows(Vec* r) {
  static_assert(N >= 1 && (N & (N - 1)) == 0, "N rows, a power of two");
  if constexpr (N > 1) {
    constexpr int h = N / 2;
    Vec lo[h], hi[h];
    for (int b = 0; b < h; ++b) interleave(r[b], r[b + h], &lo[b], &hi[b]);
    interleave_rows<h>(lo);
    interleave_rows<h>(hi);
    for (int b = 0; b < h; ++b) {
      r[b] = lo[b];
      r[h + b] = hi[b];
    }
  }
}
// The inverse of interleave_rows<N>.
template <int N>
inline void deinterleave_rows(Vec* r) {
  static_assert(N >= 1 && (N & (N - 1)) == 0, "N rows, a power of two");
  if constexpr (N > 1) {
    constexpr int h = N / 2;
    Vec lo[h], hi[h];
    for (int b = 0; b < h; ++b) {
      lo[b] = r[b];
      hi[b] = r[h + b];
    }
    deinterleave_rows<h>(lo);
    deinterleave_rows<h>(hi);
    for (int b = 0; b < h; ++b) {
      r[b] = even_lanes(lo[b], hi[b]);
      r[b + h] = odd_lanes(lo[b], hi[b]);
    }
  }
}
// Of a block of `cols` (<= kLanes) columns of N rows interleaved, how many floats vector b holds.
template <int N>
inline int interleaved_floats(int cols, int b) {
  const int rest = N * cols - b * kLanes;
  return rest < 0 ? 0 : rest < kLanes ? rest : kLanes;
}
// One block of `cols` (<= kLanes) columns of interleave_rows / deinterleave_rows below (inlined:
// with cols == kLanes the masks fold away).
template <int N>
inline void interleave_block(const float* src, size_t stride, int cols, float* dst) {
  Vec r[N];
  for (int b = 0; b < N; ++b) r[b] = load_first(src + size_t(b) * stride, cols);
  interleave_rows<N>(r);
  for (int b = 0; b < N; ++b)
    store_first(dst + size_t(b) * kLanes, r[b], interleaved_floats<N>(cols, b));
}
template <int N>
inline void deinterleave_block(const float* src, int cols, float* dst, size_t stride) {
  Vec r[N];
  for (int b = 0; b < N; ++b)
    r[b] = load_first(src + size_t(b) * kLanes, interleaved_floats<N>(cols, b));
  deinterleave_rows<N>(r);
  for (int b = 0; b < N; ++b) store_first(dst + size_t(b) * stride, r[b], cols);
}
// dst[j * N + b] = src[b * stride + j] for j < len and b < N: N rows of len floats interleaved,
// each column's N entries together; a block of kLanes columns at a time, the last under masks
// (stride 0 repeats one row N times).
template <int N>
inline void interleave_rows(const float* src, size_t stride, size_t len, float* dst) {
  size_t j = 0;
  for (; j + kLanes <= len; j += kLanes) interleave_block<N>(src + j, stride, kLanes, dst + j * N);
  if (j < len) interleave_block<N>(src + j, stride, int(len - j), dst + j * N);
}
// The inverse: dst[b * stride + j] = src[j * N + b].
template <int N>
inline void deinterleave_rows(const float* src, size_t len, float* dst, size_t stride) {
  size_t j = 0;
  for (; j + kLanes <= len; j += kLanes)
    deinterleave_block<N>(src + j * N, kLanes, dst + j, stride);
  if (j < len) deinterleave_block<N>(src + j * N, int(len - j), dst + j, stride);
}

// e^x, relative error below 2e-7, inputs clamped to [-87.3, 88.3] so the result is a finite
// normal float (NaN stays NaN). k = round(x 16 / ln 2), so x = k ln 2 / 16 + r with |r| <= ln 2 /
// 32 and e^x = 2^(k / 16) e^r, where 2^(k / 16) = 2^floor(k / 16) 2^((k mod 16) / 16): the second
// factor from a table of 16 held in one register and read by the low 4 bits of k (vpermps), e^r
// a cubic. Its dependency chain is about two thirds of the degree-7 polynomial's below (the
// other targets' Cephes expf, which AVX-512 took too until 2026-12-07): the paper network's swish
// layers, all that calls it, 0.75-0.82x the time (bench/README.md).
inline Vec exp(Vec x) {
  x = min(max(x, splat(-87.3f)), splat(88.3f));
  typedef uint32_t UVec __attribute__((vector_size(sizeof(Vec))));
#if defined(__AVX512F__)
  // k = round(x / (ln 2 / 16)) with the 1.5 * 2^23 trick (t's bits hold 0x4b400000 + k, where
  // 0x4b400000 is a multiple of 16); r = x - k ln 2 / 16 in two parts (Cephes' ln 2 split, / 16).
  const Vec t = x * 23.0831206542234f + 12582912.0f;
  const Vec k = t - 12582912.0f;
  Vec r = x - k * 0.0433349609375f;
  r = r - k * -1.326215250e-5f;
  const Vec p = ((r * (1.0f / 6) + 0.5f) * (r * r) + r);  // e^r - 1, |r| <= 0.0217
  UVec bits;
  std::memcpy(&bits, &t, sizeof bits);
  // 2^(j / 16), j = 0..15, rounded to float.
  const __m512 table = _mm512_setr_ps(
      1.0f, 1.04427378242741384f, 1.09050773266525766f, 1.13878863475669165f,
      1.18920711500272107f, 1.24185781207348405f, 1.29683955465100967f, 1.35425554693689273f,
      1.41421356237309505f, 1.47682614593949931f, 1.54221082540794082f, 1.61049033194925431f,
      1.68179283050742909f, 1.75625216037329948f, 1.83400808640934246f, 1.91520656139714729f);
  // The low 4 bits pick, k mod 16 (the zero-masked form: GCC 12 warns on the other's undefined
  // vector).
  const Vec tj = (Vec)_mm512_maskz_permutexvar_ps(0xffff, (__m512i)bits, table);
  // 2^floor(k / 16): t's bits over 16 hold 0x04b40000 + floor(k / 16), and shifted into the
  // exponent field the 0x04b40000 leaves the word while floor(k / 16) + 127 (1 to 254) stays.
  bits = ((bits >> 4) + 127u) << 23;
  Vec scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return (tj * p + tj) * scale;
#else
  // Cephes expf: n = round(x / ln 2) with the 1.5 * 2^23 trick (exact for |n| < 2^22);
  // r = x - n ln 2.
  const Vec t = x * 1.44269504088896341f + 12582912.0f;
  const Vec n = t - 12582912.0f;
  Vec r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  Vec p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  // 2^n from t's own bits, which hold 0x4b400000 + n: shifted into the exponent field, the
  // 0x4b400000 leaves the word and n + 127 stays (1 to 254 after the clamp). The same bits as
  // converting n to an integer, without wasm's saturating conversion (several x86 instructions).
  // Unsigned, so that the shift may push bits out of the word (IVec's << may not).
  UVec bits;
  std::memcpy(&bits, &t, sizeof bits);
  bits = (bits + 127u) << 23;
  Vec scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
#endif
}

// Applies f(Vec...) -> Vec to arrays of length len, the tail through a zero-padded vector so
// every element goes through identical code. `f` receives loaded inputs, writes one output.
template <class F>
inline void map1(const float* a, float* out, size_t len, F f) {
  size_t i = 0;
  for (; i + kLanes <= len; i += kLanes) store(out + i, f(load(a + i)));
  if (i < len) {
    float ta[kLanes] = {}, to[kLanes];
    std::memcpy(ta, a + i, sizeof(float) * (len - i));
    store(to, f(load(ta)));
    std::memcpy(out + i, to, sizeof(float) * (len - i));
  }
}

template <class F>
inline void map2(const float* a, const float* b, float* out, size_t len, F f) {
  size_t i = 0;
  for (; i + kLanes <= len; i += kLanes) store(out + i, f(load(a + i), load(b + i)));
  if (i < len) {
    float ta[kLanes] = {}, tb[kLanes] = {}, to[kLanes];
    const size_t rest = sizeof(float) * (len - i);
    std::memcpy(ta, a + i, rest);
    std::memcpy(tb, b + i, rest);
    store(to, f(load(ta), load(tb)));
    std::memcpy(out + i, to, rest);
  }
}

template <class F>
inline void map3(const float* a, const float* b, const float* c, float* out, size_t len, F f) {
  size_t i = 0;
  for (; i + kLanes <= len; i += kLanes) store(out + i, f(load(a + i), load(b + i), load(c + i)));
  if (i < len) {
    float ta[kLanes] = {}, tb[kLanes] = {}, tc[kLanes] = {}, to[kLanes];
    const size_t rest = sizeof(float) * (len - i);
    std::memcpy(ta, a + i, rest);
    std::memcpy(tb, b + i, rest);
    std::memcpy(tc, c + i, rest);
    store(to, f(load(ta), load(tb), load(tc)));
    std::memcpy(out + i, to, rest);
  }
}

}  // namespace ebm::simd
