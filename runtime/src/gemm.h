// The matrix products the layers need, row-major. One packed kernel in the style of Goto & van de
// Geijn / BLIS: A is packed into panels of kGemmMR rows, B into panels of kGemmNR columns, and C
// is computed in kGemmMR x kGemmNR register tiles by a micro-kernel written with GCC/Clang vector
// extensions (AVX-512 or AVX2 natively, SIMD128 under Emscripten).
//
// Layers pack their weights once (pack_a) and their per-call operand straight into the panel
// layout (pack_b_rows), so a steady-state Langevin step allocates and repacks nothing it need not.
#pragma once

#include <cstddef>

namespace ebm {

// Register tile: kGemmMR rows x kGemmNV vectors of kGemmLanes floats (override for experiments
// with -DEBM_GEMM_MR=.. -DEBM_GEMM_NV=..).
#if defined(__AVX512F__)
inline constexpr int kGemmLanes = 16;
#define EBM_GEMM_DEFAULT_MR 12
#define EBM_GEMM_DEFAULT_NV 2
#elif defined(__AVX__)
inline constexpr int kGemmLanes = 8;
#define EBM_GEMM_DEFAULT_MR 6
#define EBM_GEMM_DEFAULT_NV 2
#elif defined(__wasm_simd128__)
// 4x2 (8 accumulators) beats 6x2 by about 18% in V8, which keeps fewer wasm locals in registers
// than the 16 vector registers suggest (node 20, paper network: 7.4 against 9.0 ms per image-step
// in one run; 2x4 ties with 4x2, 3x3 and 5x2 fall between; bench/README.md).
inline constexpr int kGemmLanes = 4;
#define EBM_GEMM_DEFAULT_MR 4
#define EBM_GEMM_DEFAULT_NV 2
#else  // SSE2, NEON
inline constexpr int kGemmLanes = 4;
#define EBM_GEMM_DEFAULT_MR 6
#define EBM_GEMM_DEFAULT_NV 2
#endif
#ifndef EBM_GEMM_MR
#define EBM_GEMM_MR EBM_GEMM_DEFAULT_MR
#endif
#ifndef EBM_GEMM_NV
#define EBM_GEMM_NV EBM_GEMM_DEFAULT_NV
#endif
inline constexpr int kGemmMR = EBM_GEMM_MR, kGemmNV = EBM_GEMM_NV;
inline constexpr int kGemmNR = kGemmNV * kGemmLanes;

// Packed sizes in floats: panels are padded with zeros to whole tiles.
inline size_t packed_a_floats(int m, int k) {
  return size_t((m + kGemmMR - 1) / kGemmMR) * kGemmMR * size_t(k);
}
inline size_t packed_b_floats(int k, int n) {
  return size_t((n + kGemmNR - 1) / kGemmNR) * kGemmNR * size_t(k);
}

// op(A)[m, k] -> panels of MR rows; op(A) = A[m, k] (row stride lda) or A[k, m]^T.
void pack_a(const float* a, int lda, bool transposed, int m, int k, float* out);

// Writes row p (0 <= p < k) of B[k, n], given contiguously in `row` (n floats), into the packed
// panels `out` (packed_b_floats(k, n) floats; padding columns are zeroed).
void pack_b_row(const float* row, int p, int k, int n, float* out);

// C[m, n] (row stride ldc) = init + packed A [m, k] x packed B [k, n], where init is
// row_bias[i] for every column of row i when row_bias is given, else C itself when accumulate,
// else zero.
void multiply_packed(int m, int n, int k, const float* a_packed, const float* b_packed, float* c,
                     int ldc, const float* row_bias = nullptr, bool accumulate = false);

// C[m, n] = row_bias (or zero) + packed A [m, k] x B [k, n], where row p of B is the n floats from
// b + row_offsets[p], unpacked and of any alignment; each row must be readable up to n rounded up
// to a whole kGemmNR tile (the extra columns of C are not written). The same sums in the same
// order as multiply_packed on the packed B, without the packing: a stride-1 convolution's rows
// are shifted views of one zero-padded image (Conv2d).
void multiply_shifted(int m, int n, int k, const float* a_packed, const float* b,
                      const int* row_offsets, float* c, int ldc, const float* row_bias = nullptr);
// The same product with C's columns as `rows` rows of `width` (C[i, r * width + x]) and B's
// column r * b_stride + x under them: a convolution's output rows written straight into a compact
// image while B's rows step through a padded one (the padding columns are neither computed nor
// stored). Row r of B is read up to r * b_stride + width rounded up to a whole kGemmNR tile. The
// same sums in the same order as multiply_shifted.
void multiply_shifted_rows(int m, int rows, int width, int b_stride, int k, const float* a_packed,
                           const float* b, const int* row_offsets, float* c, int ldc,
                           const float* row_bias = nullptr);
// The same with row p of B at b + p * ldb, and C's init as for multiply_packed (C += A B when
// accumulate): the taps of a convolution over interleaved images (Conv2d).
void multiply_strided(int m, int n, int k, const float* a_packed, const float* b, int ldb,
                      float* c, int ldc, const float* row_bias = nullptr, bool accumulate = false);

// General products that pack both operands per call (into buffers that grow once per thread).
// C[m, n] = A[m, k] * B[k, n]           (C += ... when accumulate)
void gemm_nn(int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c,
             int ldc, bool accumulate = false);
// C[m, n] = A[k, m]^T * B[k, n]
void gemm_tn(int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c,
             int ldc, bool accumulate = false);
// C[m, n] = A[m, k] * B[n, k]^T
void gemm_nt(int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c,
             int ldc, bool accumulate = false);

}  // namespace ebm
