// A packed GEMM in the style of Goto & van de Geijn / BLIS: C is computed in MR x NR register
// tiles by a micro-kernel written with GCC/Clang vector extensions, so the same source becomes
// AVX-512 or AVX2 natively and SIMD128 under Emscripten. Panels of A and B are packed into
// buffers that grow once and are then reused: a steady-state call allocates nothing.
//
// Built with -ffp-contract=fast (runtime/CMakeLists.txt) so the multiply-adds fuse where the
// target has FMA.
#include "gemm.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace ebm {

namespace {

#if defined(__AVX512F__)
constexpr int kLanes = 16;
constexpr int kMR = 12;
#elif defined(__AVX__)
constexpr int kLanes = 8;
constexpr int kMR = 6;
#else  // SSE2, WebAssembly SIMD128, NEON
constexpr int kLanes = 4;
constexpr int kMR = 6;
#endif
constexpr int kNR = 2 * kLanes;
constexpr int kKC = 256;   // depth of a packed block
constexpr int kMC = 120;   // rows of A per block (a multiple of kMR)
constexpr int kNC = 2048;  // columns of B per block (a multiple of kNR)
static_assert(kMC % kMR == 0 && kNC % kNR == 0, "block sizes must hold whole tiles");

typedef float Vec __attribute__((vector_size(kLanes * sizeof(float))));

inline Vec load(const float* p) {
  Vec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store(float* p, Vec v) { std::memcpy(p, &v, sizeof v); }

// Element (i, j) of op(X): X itself is row-major with row stride ld; transposed reads X[j, i].
struct Operand {
  const float* data;
  int ld;
  bool transposed;
  float at(int i, int j) const {
    return transposed ? data[size_t(j) * ld + i] : data[size_t(i) * ld + j];
  }
};

// A[ic : ic+mc, pc : pc+kc] -> MR-row panels, each stored p-major: panel[p * MR + r].
void pack_a(const Operand& a, int ic, int mc, int pc, int kc, float* out) {
  for (int r0 = 0; r0 < mc; r0 += kMR) {
    const int rows = std::min(kMR, mc - r0);
    float* panel = out + size_t(r0) * kc;
    for (int p = 0; p < kc; ++p) {
      float* dst = panel + size_t(p) * kMR;
      int r = 0;
      for (; r < rows; ++r) dst[r] = a.at(ic + r0 + r, pc + p);
      for (; r < kMR; ++r) dst[r] = 0.0f;
    }
  }
}

// B[pc : pc+kc, jc : jc+nc] -> NR-column panels, each stored p-major: panel[p * NR + c].
void pack_b(const Operand& b, int pc, int kc, int jc, int nc, float* out) {
  for (int c0 = 0; c0 < nc; c0 += kNR) {
    const int cols = std::min(kNR, nc - c0);
    float* panel = out + size_t(c0) * kc;
    if (!b.transposed && cols == kNR) {
      for (int p = 0; p < kc; ++p)
        std::memcpy(panel + size_t(p) * kNR, b.data + size_t(pc + p) * b.ld + jc + c0,
                    sizeof(float) * kNR);
      continue;
    }
    for (int p = 0; p < kc; ++p) {
      float* dst = panel + size_t(p) * kNR;
      int c = 0;
      for (; c < cols; ++c) dst[c] = b.at(pc + p, jc + c0 + c);
      for (; c < kNR; ++c) dst[c] = 0.0f;
    }
  }
}

// C[0:rows, 0:cols] (+)= packed A panel x packed B panel over kc; rows <= MR, cols <= NR.
void micro_kernel(int kc, const float* a, const float* b, float* c, int ldc, bool accumulate,
                  int rows, int cols) {
  Vec acc0[kMR], acc1[kMR];
  for (int r = 0; r < kMR; ++r) acc0[r] = acc1[r] = Vec{};
  for (int p = 0; p < kc; ++p) {
    const Vec b0 = load(b + size_t(p) * kNR), b1 = load(b + size_t(p) * kNR + kLanes);
    const float* ap = a + size_t(p) * kMR;
    for (int r = 0; r < kMR; ++r) {
      acc0[r] += ap[r] * b0;
      acc1[r] += ap[r] * b1;
    }
  }
  if (rows == kMR && cols == kNR) {
    for (int r = 0; r < kMR; ++r) {
      float* cr = c + size_t(r) * ldc;
      if (accumulate) {
        store(cr, load(cr) + acc0[r]);
        store(cr + kLanes, load(cr + kLanes) + acc1[r]);
      } else {
        store(cr, acc0[r]);
        store(cr + kLanes, acc1[r]);
      }
    }
    return;
  }
  float tile[kMR * kNR];
  for (int r = 0; r < kMR; ++r) {
    store(tile + r * kNR, acc0[r]);
    store(tile + r * kNR + kLanes, acc1[r]);
  }
  for (int r = 0; r < rows; ++r)
    for (int j = 0; j < cols; ++j)
      c[size_t(r) * ldc + j] = (accumulate ? c[size_t(r) * ldc + j] : 0.0f) + tile[r * kNR + j];
}

// Packing buffers: grown on first use, reused afterwards (one set per thread).
struct PackBuffers {
  std::vector<float> a, b;
};
PackBuffers& buffers() {
  thread_local PackBuffers buf;
  return buf;
}

void gemm(int m, int n, int k, const Operand& a, const Operand& b, float* c, int ldc,
          bool accumulate) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    if (!accumulate)
      for (int i = 0; i < m; ++i) std::memset(c + size_t(i) * ldc, 0, sizeof(float) * size_t(n));
    return;
  }
  PackBuffers& buf = buffers();
  const int nc_max = std::min(kNC, (n + kNR - 1) / kNR * kNR);
  const int mc_max = std::min(kMC, (m + kMR - 1) / kMR * kMR);
  const int kc_max = std::min(kKC, k);
  if (buf.a.size() < size_t(mc_max) * kc_max) buf.a.resize(size_t(mc_max) * kc_max);
  if (buf.b.size() < size_t(nc_max) * kc_max) buf.b.resize(size_t(nc_max) * kc_max);

  for (int jc = 0; jc < n; jc += kNC) {
    const int nc = std::min(kNC, n - jc);
    for (int pc = 0; pc < k; pc += kKC) {
      const int kc = std::min(kKC, k - pc);
      const bool acc = accumulate || pc > 0;
      pack_b(b, pc, kc, jc, nc, buf.b.data());
      for (int ic = 0; ic < m; ic += kMC) {
        const int mc = std::min(kMC, m - ic);
        pack_a(a, ic, mc, pc, kc, buf.a.data());
        for (int jr = 0; jr < nc; jr += kNR)
          for (int ir = 0; ir < mc; ir += kMR)
            micro_kernel(kc, buf.a.data() + size_t(ir) * kc, buf.b.data() + size_t(jr) * kc,
                         c + size_t(ic + ir) * ldc + jc + jr, ldc, acc, std::min(kMR, mc - ir),
                         std::min(kNR, nc - jr));
      }
    }
  }
}

}  // namespace

void gemm_nn(int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c,
             int ldc, bool accumulate) {
  gemm(m, n, k, {a, lda, false}, {b, ldb, false}, c, ldc, accumulate);
}

void gemm_tn(int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c,
             int ldc, bool accumulate) {
  gemm(m, n, k, {a, lda, true}, {b, ldb, false}, c, ldc, accumulate);
}

void gemm_nt(int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c,
             int ldc, bool accumulate) {
  gemm(m, n, k, {a, lda, false}, {b, ldb, true}, c, ldc, accumulate);
}

}  // namespace ebm
