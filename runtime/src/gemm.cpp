// Built with -ffp-contract=fast (runtime/CMakeLists.txt) so the multiply-adds fuse where the
// target has FMA.
#include "gemm.h"

#include "ebm/kernels.h"
#include "vec.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__AVX512F__) && (defined(__x86_64__) || defined(__i386__))
#include <cpuid.h>
#endif

#if defined(__EMSCRIPTEN__)
#include <emscripten.h>

// Whether the module runs in node rather than a browser (GemmDepthSteps::kAuto).
EM_JS(int, ebm_running_in_node, (), { return ENVIRONMENT_IS_NODE ? 1 : 0; });
#endif

namespace ebm {

namespace {

using simd::load;
using simd::splat;
using simd::store;
using simd::Vec;
constexpr int kLanes = simd::kLanes, kMR = kGemmMR, kNV = kGemmNV, kNR = kGemmNR;
static_assert(kGemmLanes == simd::kLanes, "gemm.h and vec.h must agree on the vector width");
constexpr int kKC = 256;  // depth of one pass over the packed panels (a B micro-panel fits L1)

enum class Init { kZero, kAccumulate, kBias };

// Where a micro-kernel reads row p of its B tile: a packed panel (kNR floats per row, one after
// another) or rows of an unpacked matrix (any alignment).
struct PackedB {
  const float* b;
  const float* row(int p) const { return b + size_t(p) * kNR; }
};
struct ShiftedB {
  const float* b;        // b + offsets[p] + j0: the tile's first column in row p
  const int* offsets;
  const float* row(int p) const { return b + offsets[p]; }
};
struct StridedB {
  const float* b;  // the tile's first column in row 0
  size_t ldb;
  const float* row(int p) const { return b + size_t(p) * ldb; }
};

// C[0:R, 0:cols] = init + acc, for a tile's R rows of NV vectors of accumulators (cols <= NV
// vectors' worth).
template <int R, int NV = kNV>
__attribute__((always_inline)) inline void store_tile(const Vec (&acc)[R][NV], float* c, int ldc,
                                                      Init init, const float* bias, int cols) {
  if (cols == NV * kLanes) {
    for (int r = 0; r < R; ++r) {
      float* cr = c + size_t(r) * ldc;
      for (int v = 0; v < NV; ++v) {
        Vec out = acc[r][v];
        if (init == Init::kAccumulate) out = load(cr + v * kLanes) + out;
        if (init == Init::kBias) out = splat(bias[r]) + out;
        store(cr + v * kLanes, out);
      }
    }
    return;
  }
  float tile[NV * kLanes];
  for (int r = 0; r < R; ++r) {
    for (int v = 0; v < NV; ++v) store(tile + v * kLanes, acc[r][v]);
    float* cr = c + size_t(r) * ldc;
    const float base = init == Init::kBias ? bias[r] : 0.0f;
    for (int j = 0; j < cols; ++j) cr[j] = (init == Init::kAccumulate ? cr[j] : base) + tile[j];
  }
}

constexpr int kWideRows = 2;  // wide_kernel's rows (below)
// A packed B is read from several panels at once (a dense layer's weights for one image: four
// streams 590 KB apart, from L3): each step asks for its panels' rows this far ahead. Natively
// the paper network's 4608 -> 128 forward pass for one image, weights evicted first: 40.2
// against 46.9 us (16 rows; 8: 38-40, 32: 40-41). Nothing in wasm, which has no prefetch.
constexpr int kWidePrefetchRows = 16;

// C[0:R, 0:cols] = init + A panel x B tile over kc, for R <= MR rows (cols <= NR). Every element
// is accumulated in the same order whatever R, cols and B's layout are, so an image's result does
// not depend on which other images share its tiles, nor on whether its B was packed.
// Inlined where the blocked loop calls it for a full row tile (below): through the table of row
// counts a call is a call_indirect in wasm, 5-6% of a step there (bench/README.md). Its loop
// takes Steps steps of the depth an iteration (GemmDepthSteps in ebm/kernels.h): clang unrolls
// it (its own unrolled loop ran 2.4-3.2% faster in Chromium than one written out by hand), GCC
// runs the steps written out.
template <int R, class B, int Steps = 1, int NV = kNV>
__attribute__((always_inline)) inline void micro_kernel(int kc, const float* a, B b, float* c,
                                                        int ldc, Init init, const float* bias,
                                                        int cols) {
  Vec acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = Vec{};
  const auto step = [&](int p) __attribute__((always_inline)) {
    Vec bv[NV];
    const float* bp = b.row(p);
    // A last row tile of a packed B streams it too (a dense layer for 3 to 11 images, whose
    // weights come from memory each step): the paper network's 4608 -> 128 forward pass at 8
    // images 0.85-0.92x the time in the network's order (4 of 4 runs; bench/README.md).
    if constexpr (std::is_same_v<B, PackedB> && R < kMR && R > kWideRows)
      for (int v = 0; v < NV; ++v) __builtin_prefetch(bp + kWidePrefetchRows * kNR + v * kLanes);
    for (int v = 0; v < NV; ++v) bv[v] = load(bp + v * kLanes);
    const float* ap = a + size_t(p) * kMR;
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < NV; ++v) acc[r][v] += ap[r] * bv[v];
  };
  if constexpr (Steps == 1) {
    for (int p = 0; p < kc; ++p) step(p);
  } else {
#if defined(__clang__)
#pragma clang loop unroll_count(Steps)
    for (int p = 0; p < kc; ++p) step(p);
#else
    int p = 0;
    for (; p + Steps <= kc; p += Steps)
      for (int s = 0; s < Steps; ++s) step(p + s);
    for (; p < kc; ++p) step(p);
#endif
  }
  store_tile<R, NV>(acc, c, ldc, init, bias, cols);
}

// The same for the product's last R rows (R <= kWideRows < MR) across several column tiles at
// once: with one or two rows a tile holds 2 or 4 accumulators (natively and in wasm), whose sums
// wait on each other's latency; across wide_tiles<R> tiles there are 8. A dense layer for one
// image (a GEMV) and a convolution into one channel are all such rows. The same sums in the same
// order as micro_kernel, tile by tile.
constexpr int kWideAccumulators = 8, kWideMostTiles = kWideAccumulators / kNV;
template <int R>
constexpr int wide_tiles = kWideAccumulators / (R * kNV) > 1 ? kWideAccumulators / (R * kNV) : 1;
template <int R, class B>
void wide_kernel(int kc, const float* a, const B* b, float* const* c, int ldc, Init init,
                 const float* bias, const int* cols) {
  constexpr int T = wide_tiles<R>;
  Vec acc[T][R][kNV];
  for (int t = 0; t < T; ++t)
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < kNV; ++v) acc[t][r][v] = Vec{};
  const float* bp[T];
  for (int p = 0; p < kc; ++p) {
    const float* ap = a + size_t(p) * kMR;
    for (int t = 0; t < T; ++t) bp[t] = b[t].row(p);
    if constexpr (std::is_same_v<B, PackedB>)
      for (int t = 0; t < T; ++t)
        for (int v = 0; v < kNV; ++v)
          __builtin_prefetch(bp[t] + kWidePrefetchRows * kNR + v * kLanes);
    for (int t = 0; t < T; ++t)
      for (int v = 0; v < kNV; ++v) {
        const Vec bv = load(bp[t] + v * kLanes);
        for (int r = 0; r < R; ++r) acc[t][r][v] += ap[r] * bv;
      }
  }
  for (int t = 0; t < T; ++t) store_tile<R>(acc[t], c[t], ldc, init, bias, cols[t]);
}

// A column tile of at most one vector's columns (a product's last, an output row's last in
// multiply_shifted_rows) runs a full row tile's kernel on that one vector alone, rather than on
// kNV vectors of which the rest are padding: the same sums in the same order. With AVX-512 (12 x
// 1 vectors, 12 accumulators); the stride-2 Winograd gradient at 1 image, whose 36 blocks are a
// tile and 4 columns, took 0.85x the time, the paper network's layers alone 0.3-0.8% less. Not
// where a vector is 8 or 4 floats, where the narrower tile's fewer accumulators would wait on
// each other (not measured).
constexpr bool kHalfTiles = kNV > 1 && kLanes == 16;

// A full row tile's last column tile of at most 4 columns (with AVX-512): the stride-2 Winograd
// gradient at 1 image multiplies 36 blocks, a tile and 4 columns, and the half tile above spends
// 12 broadcasts and 12 multiply-adds a depth step on those 4. Here each vector holds 4 rows x the
// 4 columns (B's 4 floats repeated, A's 4 rows each spread over 4 lanes by one permute): 3
// multiply-adds a step. The same multiply-add per element in the same order, so the same bits as
// micro_kernel.
#if defined(__AVX512F__)
constexpr bool kQuadTiles = kLanes == 16 && kMR % 4 == 0;
template <class B>
void quad_kernel(int kc, const float* a, B b, float* c, int ldc, Init init, const float* bias,
                 int cols) {
  constexpr int G = kMR / 4;
  const __m512i spread = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  const __mmask8 first = __mmask8((1u << cols) - 1u);
  // The multiply-adds written as micro_kernel's are, so that they fuse exactly where its do
  // (-ffp-contract=fast when optimizing; the sanitizer build at -O1 keeps them apart).
  Vec acc[G];
  for (int g = 0; g < G; ++g) acc[g] = Vec{};
  for (int p = 0; p < kc; ++p) {
    // (The zero-masked forms: GCC 12 warns on the others' undefined vectors.)
    const Vec bv = (Vec)_mm512_maskz_broadcast_f32x4(0xffff, _mm_maskz_loadu_ps(first, b.row(p)));
    const float* ap = a + size_t(p) * kMR;
    for (int g = 0; g < G; ++g) {
      const __m512 four = _mm512_zextps128_ps512(_mm_loadu_ps(ap + 4 * g));
      const Vec av = (Vec)_mm512_maskz_permutexvar_ps(0xffff, spread, four);
      acc[g] += av * bv;
    }
  }
  for (int g = 0; g < G; ++g) {
    float tile[16];
    store(tile, acc[g]);
    for (int r = 0; r < 4; ++r) {
      float* cr = c + size_t(4 * g + r) * ldc;
      for (int j = 0; j < cols; ++j) {
        const float t = tile[4 * r + j];
        cr[j] = init == Init::kAccumulate ? cr[j] + t
                : init == Init::kBias     ? bias[4 * g + r] + t
                                          : t;
      }
    }
  }
}
#else
constexpr bool kQuadTiles = false;
template <class B>
void quad_kernel(int, const float*, B, float*, int, Init, const float*, int) {}
#endif

template <class B>
using Kernel = void (*)(int, const float*, B, float*, int, Init, const float*, int);

template <class B, int... R>
constexpr std::array<Kernel<B>, sizeof...(R)> kernel_table(std::integer_sequence<int, R...>) {
  return {&micro_kernel<R + 1, B>...};
}
// kKernels<B>[r - 1] computes r rows.
template <class B>
constexpr std::array<Kernel<B>, kMR> kKernels =
    kernel_table<B>(std::make_integer_sequence<int, kMR>{});

// The column tiles of a product: tile t is `cols` columns from column b_col of B (as its tile
// functor takes them) and c_col of C.
struct ColumnTile {
  int b_col, c_col, cols;
};
// C's n columns in NR-wide tiles, B's columns the same.
struct FlatColumns {
  int n;
  int tiles() const { return (n + kNR - 1) / kNR; }
  int c_cols() const { return n; }
  ColumnTile at(int t) const { return {t * kNR, t * kNR, std::min(kNR, n - t * kNR)}; }
};

// The blocked loops over kc-deep passes, NR-wide column tiles and MR-high row tiles, shared by the
// packed and the unpacked B; tile(pc, b_col) gives the B tile of pass pc at column b_col. The full
// row tiles' micro-kernel takes Steps steps of the depth an iteration.
template <class B, int Steps, class TileOf, class Columns>
void multiply_blocked(int m, int k, const float* a_packed, TileOf tile, Columns columns, float* c,
                      int ldc, const float* row_bias, bool accumulate) {
  const int n = columns.c_cols();
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    for (int i = 0; i < m; ++i) {
      float* ci = c + size_t(i) * ldc;
      if (row_bias)
        std::fill(ci, ci + n, row_bias[i]);
      else if (!accumulate)
        std::fill(ci, ci + n, 0.0f);
    }
    return;
  }
  const Init first = row_bias ? Init::kBias : accumulate ? Init::kAccumulate : Init::kZero;
  const int n_tiles = columns.tiles();
  // The last rows, if fewer than a row tile: few enough for wide_kernel, or through the table.
  const int full = m - m % kMR, rest = m - full;
  const bool wide = rest > 0 && rest <= kWideRows;
  for (int pc = 0; pc < k; pc += kKC) {
    const int kc = std::min(kKC, k - pc);
    const Init init = pc == 0 ? first : Init::kAccumulate;
    for (int t = 0; t < n_tiles; ++t) {
      const ColumnTile ct = columns.at(t);
      const B b = tile(pc, ct.b_col);
      // Full row tiles inlined, a last partial one through the table.
      for (int i0 = 0; i0 < m; i0 += kMR) {
        const float* a = a_packed + size_t(i0) * k + size_t(pc) * kMR;
        float* ci = c + size_t(i0) * ldc + ct.c_col;
        const float* bias = row_bias ? row_bias + i0 : nullptr;
        const int cols = ct.cols;
        if (m - i0 >= kMR && kQuadTiles && cols <= 4)
          quad_kernel<B>(kc, a, b, ci, ldc, init, bias, cols);
        else if (m - i0 >= kMR && kHalfTiles && cols <= kLanes)
          micro_kernel<kMR, B, Steps, 1>(kc, a, b, ci, ldc, init, bias, cols);
        else if (m - i0 >= kMR)
          micro_kernel<kMR, B, Steps>(kc, a, b, ci, ldc, init, bias, cols);
        else if (!wide)
          kKernels<B>[size_t(m - i0 - 1)](kc, a, b, ci, ldc, init, bias, cols);
      }
    }
    if (!wide) continue;
    const float* a = a_packed + size_t(full) * k + size_t(pc) * kMR;
    const float* bias = row_bias ? row_bias + full : nullptr;
    const int per_call = rest == 1 ? wide_tiles<1> : wide_tiles<2>;
    int t = 0;
    for (; t + per_call <= n_tiles; t += per_call) {
      B b[kWideMostTiles];
      float* ci[kWideMostTiles];
      int cols[kWideMostTiles];
      for (int u = 0; u < per_call; ++u) {
        const ColumnTile ct = columns.at(t + u);
        b[u] = tile(pc, ct.b_col);
        ci[u] = c + size_t(full) * ldc + ct.c_col;
        cols[u] = ct.cols;
      }
      if (rest == 1)
        wide_kernel<1, B>(kc, a, b, ci, ldc, init, bias, cols);
      else
        wide_kernel<2, B>(kc, a, b, ci, ldc, init, bias, cols);
    }
    for (; t < n_tiles; ++t) {
      const ColumnTile ct = columns.at(t);
      kKernels<B>[size_t(rest - 1)](kc, a, tile(pc, ct.b_col), c + size_t(full) * ldc + ct.c_col,
                                    ldc, init, bias, ct.cols);
    }
  }
}

std::atomic<GemmDepthSteps> g_depth_steps{GemmDepthSteps::kAuto};

// What kAuto takes: two in WebAssembly in a browser, else one (ebm/kernels.h).
bool two_depth_steps_by_default() {
#if defined(__EMSCRIPTEN__)
  static const bool in_node = ebm_running_in_node() != 0;
  return !in_node;
#else
  return false;
#endif
}

// multiply_blocked with the depth steps that set_gemm_depth_steps asks for.
template <class B, class TileOf, class Columns>
void multiply_tiles(int m, int k, const float* a_packed, TileOf tile, Columns columns, float* c,
                    int ldc, const float* row_bias, bool accumulate) {
  const GemmDepthSteps steps = g_depth_steps.load();
  if (steps == GemmDepthSteps::kTwo ||
      (steps == GemmDepthSteps::kAuto && two_depth_steps_by_default()))
    multiply_blocked<B, 2>(m, k, a_packed, tile, columns, c, ldc, row_bias, accumulate);
  else
    multiply_blocked<B, 1>(m, k, a_packed, tile, columns, c, ldc, row_bias, accumulate);
}

// Packing buffers for the general products: grown on first use, then reused (one set per thread).
struct PackBuffers {
  std::vector<float> a, b, row;
};
PackBuffers& buffers() {
  thread_local PackBuffers buf;
  return buf;
}

template <class T>
void grow(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

}  // namespace

// A panel that the rows do not fill is zeroed first, at once (a dense layer's one image: 4608
// depth steps of 1 float and 11 zeros, whose zeros were written one at a time); transposed, a
// depth step's row of the tile is one copy (copy_row: the taps' runs of 11 pixels at batch 1
// spent most of this function in a `memcpy` GCC made `rep movs`).
void pack_a(const float* a, int lda, bool transposed, int m, int k, float* out) {
  for (int r0 = 0; r0 < m; r0 += kMR) {
    const int rows = std::min(kMR, m - r0);
    float* panel = out + size_t(r0) * k;
    if (rows < kMR) std::memset(panel, 0, sizeof(float) * size_t(kMR) * size_t(k));
    if (transposed) {
      for (int p = 0; p < k; ++p)
        simd::copy_row(a + size_t(p) * lda + r0, rows, panel + size_t(p) * kMR);
      continue;
    }
    for (int p = 0; p < k; ++p) {
      float* dst = panel + size_t(p) * kMR;
      for (int r = 0; r < rows; ++r) dst[r] = a[size_t(r0 + r) * lda + p];
    }
  }
}

void pack_b_row(const float* row, int p, int k, int n, float* out) {
  for (int c0 = 0; c0 < n; c0 += kNR) {
    float* dst = out + size_t(c0) * k + size_t(p) * kNR;
    const int cols = std::min(kNR, n - c0);
    std::memcpy(dst, row + c0, sizeof(float) * size_t(cols));
    if (cols < kNR) std::memset(dst + cols, 0, sizeof(float) * size_t(kNR - cols));
  }
}

void multiply_packed(int m, int n, int k, const float* a_packed, const float* b_packed, float* c,
                     int ldc, const float* row_bias, bool accumulate) {
  multiply_tiles<PackedB>(
      m, k, a_packed,
      [&](int pc, int j0) { return PackedB{b_packed + size_t(j0) * k + size_t(pc) * kNR}; },
      FlatColumns{n}, c, ldc, row_bias, accumulate);
}

// Out of line, so that multiply_shifted_rows (below) calls it rather than taking its loops in.
__attribute__((noinline)) void multiply_shifted(int m, int n, int k, const float* a_packed,
                                                const float* b, const int* row_offsets, float* c,
                                                int ldc, const float* row_bias) {
  multiply_tiles<ShiftedB>(
      m, k, a_packed, [&](int pc, int j0) { return ShiftedB{b + j0, row_offsets + pc}; },
      FlatColumns{n}, c, ldc, row_bias, false);
}

// One product per output row, each a call of multiply_shifted: V8's TurboFan gave one product
// whose column tiles step over the rows (the same loops with the row and column worked out per
// tile) a micro-kernel loop that keeps an accumulator and a B vector on the stack, 1.8x the time of the flat product in node 20 (the paper
// network's first layer, 32 x 2304 x 25: 188-197 against 106 us; bench/README.md). Natively
// (and in the sums, element by element) it makes no difference.
void multiply_shifted_rows(int m, int rows, int width, int b_stride, int k, const float* a_packed,
                           const float* b, const int* row_offsets, float* c, int ldc,
                           const float* row_bias) {
  for (int r = 0; r < rows; ++r)
    multiply_shifted(m, width, k, a_packed, b + size_t(r) * size_t(b_stride), row_offsets,
                     c + size_t(r) * size_t(width), ldc, row_bias);
}

void multiply_strided(int m, int n, int k, const float* a_packed, const float* b, int ldb,
                      float* c, int ldc, const float* row_bias, bool accumulate) {
  multiply_tiles<StridedB>(
      m, k, a_packed,
      [&](int pc, int j0) { return StridedB{b + size_t(pc) * size_t(ldb) + j0, size_t(ldb)}; },
      FlatColumns{n}, c, ldc, row_bias, accumulate);
}

namespace {

void gemm(int m, int n, int k, const float* a, int lda, bool a_t, const float* b, int ldb,
          bool b_t, float* c, int ldc, bool accumulate) {
  if (m <= 0 || n <= 0) return;
  PackBuffers& buf = buffers();
  grow(buf.a, packed_a_floats(m, k));
  grow(buf.b, packed_b_floats(k, n));
  pack_a(a, lda, a_t, m, k, buf.a.data());
  if (b_t) grow(buf.row, size_t(n));
  for (int p = 0; p < k; ++p) {
    const float* row = b + size_t(p) * ldb;
    if (b_t) {
      for (int j = 0; j < n; ++j) buf.row[size_t(j)] = b[size_t(j) * ldb + p];
      row = buf.row.data();
    }
    pack_b_row(row, p, k, n, buf.b.data());
  }
  multiply_packed(m, n, k, buf.a.data(), buf.b.data(), c, ldc, nullptr, accumulate);
}

}  // namespace

void set_gemm_depth_steps(GemmDepthSteps steps) { g_depth_steps.store(steps); }
GemmDepthSteps gemm_depth_steps() { return g_depth_steps.load(); }

// Twelve chains: a fused multiply-add's latency (4 cycles) times two units natively, a multiply's
// and an add's (3 + 3) times two of each in WebAssembly on x86, with slack; the GEMM's native
// register tile holds 24.
constexpr int kProbeChains = 12;

int multiply_add_probe_floats() { return kProbeChains * kLanes; }

double multiply_add_probe(int rounds, float b, float c) {
  Vec acc[kProbeChains];
  for (Vec& a : acc) a = Vec{};
  const Vec vb = splat(b), vc = splat(c);
  for (int r = 0; r < rounds; ++r)
    for (Vec& a : acc) a = a * vb + vc;
  double sum = 0;
  for (const Vec& a : acc) {
    float lanes[kLanes];
    store(lanes, a);
    for (float v : lanes) sum += double(v);
  }
  return sum;
}

bool halves_wide_multiply_adds() {
#if defined(__AVX512F__) && (defined(__x86_64__) || defined(__i386__))
  // AMD's family 19h: Zen 3 (no AVX-512) and Zen 4, which splits a 512-bit operation into two
  // 256-bit ones. Zen 5 (family 1Ah) and Intel's AVX-512 cores are taken as full width.
  static const bool halves = [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (!__get_cpuid(0, &eax, &ebx, &ecx, &edx)) return false;
    const bool amd = ebx == 0x68747541 && edx == 0x69746e65 && ecx == 0x444d4163;  // "AuthenticAMD"
    if (!amd || !__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return false;
    unsigned family = (eax >> 8) & 0xf;
    if (family == 0xf) family += (eax >> 20) & 0xff;
    return family == 0x19;
  }();
  return halves;
#else
  return false;
#endif
}

void gemm_nn(int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c,
             int ldc, bool accumulate) {
  gemm(m, n, k, a, lda, false, b, ldb, false, c, ldc, accumulate);
}

void gemm_tn(int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c,
             int ldc, bool accumulate) {
  gemm(m, n, k, a, lda, true, b, ldb, false, c, ldc, accumulate);
}

void gemm_nt(int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c,
             int ldc, bool accumulate) {
  gemm(m, n, k, a, lda, false, b, ldb, true, c, ldc, accumulate);
}

}  // namespace ebm
