// White-box tests of the GEMM (runtime/src/gemm.h): the product on rows read in place
// (multiply_shifted, what stride-1 convolutions use) gives the packed product's bits.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "ebm/kernels.h"
#include "gemm.h"
#include "test_util.h"

namespace ebm {
namespace {

// B's rows are views of one buffer at scattered, unaligned offsets (as a padded image's shifted
// rows are); the same rows packed give multiply_packed's operand.
void expect_shifted_equals_packed(int m, int n, int k, bool bias) {
  SCOPED_TRACE(testing::Message() << "m " << m << ", n " << n << ", k " << k << (bias ? ", bias" : ""));
  const std::vector<float> a = test::random_inputs(size_t(m) * k, 1);
  const size_t whole = size_t((n + kGemmNR - 1) / kGemmNR) * kGemmNR;  // each row readable this far
  std::vector<float> buffer = test::random_inputs(size_t(k) * 3 + whole + 7, 2);
  std::vector<int> offsets(static_cast<size_t>(k));
  for (int p = 0; p < k; ++p) offsets[size_t(p)] = (p * 7 + 3) % (2 * k + 5);  // overlapping, unaligned
  const std::vector<float> row_bias = test::random_inputs(size_t(m), 3);

  std::vector<float> a_packed(packed_a_floats(m, k)), b_packed(packed_b_floats(k, n));
  pack_a(a.data(), k, false, m, k, a_packed.data());
  for (int p = 0; p < k; ++p) pack_b_row(buffer.data() + offsets[size_t(p)], p, k, n, b_packed.data());

  // C has two guard columns past n: the shifted product must not write them.
  const int ldc = n + 2;
  std::vector<float> packed(size_t(m) * ldc, -7.0f), shifted(size_t(m) * ldc, -7.0f);
  multiply_packed(m, n, k, a_packed.data(), b_packed.data(), packed.data(), ldc,
                  bias ? row_bias.data() : nullptr);
  multiply_shifted(m, n, k, a_packed.data(), buffer.data(), offsets.data(), shifted.data(), ldc,
                   bias ? row_bias.data() : nullptr);
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      const size_t at = size_t(i) * ldc + j;
      ASSERT_EQ(std::memcmp(&packed[at], &shifted[at], sizeof(float)), 0)
          << "C[" << i << ", " << j << "] = " << shifted[at] << ", packed " << packed[at];
    }
    EXPECT_EQ(shifted[size_t(i) * ldc + n], -7.0f);
    EXPECT_EQ(shifted[size_t(i) * ldc + n + 1], -7.0f);
  }
}

TEST(Gemm, ShiftedRowsGiveThePackedProductBitForBit) {
  expect_shifted_equals_packed(1, 1, 1, false);
  expect_shifted_equals_packed(kGemmMR + 3, 3 * kGemmNR + 5, 37, true);
  // Deeper than one pass over the panels (kKC = 256): the passes accumulate alike.
  expect_shifted_equals_packed(2 * kGemmMR + 1, kGemmNR - 1, 600, true);
  expect_shifted_equals_packed(16, 2 * kGemmNR, 144, false);
}

// The product in row tiles: C's columns are `rows` rows of `width` over B's columns r * b_stride
// + x, each output the bits of the flat product over the padded rows (whose other columns are
// dropped), and nothing written past C's rows * width columns.
void expect_rows_equal_flat(int m, int rows, int width, int b_stride, int k, bool bias) {
  SCOPED_TRACE(testing::Message() << "m " << m << ", " << rows << " rows of " << width << " in "
                                  << b_stride << ", k " << k << (bias ? ", bias" : ""));
  const std::vector<float> a = test::random_inputs(size_t(m) * k, 4);
  const int n = rows * b_stride;
  const size_t whole = size_t((n + kGemmNR - 1) / kGemmNR) * kGemmNR + kGemmNR;
  const std::vector<float> buffer = test::random_inputs(size_t(k) * 3 + whole + 7, 5);
  std::vector<int> offsets(static_cast<size_t>(k));
  for (int p = 0; p < k; ++p) offsets[size_t(p)] = (p * 5 + 1) % (2 * k + 3);
  const std::vector<float> row_bias = test::random_inputs(size_t(m), 6);
  std::vector<float> a_packed(packed_a_floats(m, k));
  pack_a(a.data(), k, false, m, k, a_packed.data());

  std::vector<float> flat(size_t(m) * n);
  multiply_shifted(m, n, k, a_packed.data(), buffer.data(), offsets.data(), flat.data(), n,
                   bias ? row_bias.data() : nullptr);
  const int ldc = rows * width + 3;  // three guard columns per row of C
  std::vector<float> tiled(size_t(m) * ldc, -7.0f);
  multiply_shifted_rows(m, rows, width, b_stride, k, a_packed.data(), buffer.data(), offsets.data(),
                        tiled.data(), ldc, bias ? row_bias.data() : nullptr);
  for (int i = 0; i < m; ++i) {
    for (int r = 0; r < rows; ++r)
      for (int x = 0; x < width; ++x) {
        const float got = tiled[size_t(i) * ldc + size_t(r) * width + x];
        const float want = flat[size_t(i) * n + size_t(r) * b_stride + x];
        ASSERT_EQ(std::memcmp(&got, &want, sizeof(float)), 0)
            << "C[" << i << "] row " << r << " column " << x << ": " << got << ", flat " << want;
      }
    for (int g = 0; g < 3; ++g) EXPECT_EQ(tiled[size_t(i) * ldc + size_t(rows) * width + g], -7.0f);
  }
}

TEST(Gemm, RowTilesGiveTheFlatProductsBitsWithoutThePaddingColumns) {
  expect_rows_equal_flat(1, 1, 1, 3, 1, false);
  expect_rows_equal_flat(kGemmMR + 3, 4, kGemmNR, kGemmNR + 2, 27, true);     // whole tiles
  expect_rows_equal_flat(5, 3, kGemmNR - 2, kGemmNR, 40, false);              // one partial tile a row
  expect_rows_equal_flat(2 * kGemmMR, 2, 2 * kGemmNR + 5, 2 * kGemmNR + 9, 600, true);  // two passes
  expect_rows_equal_flat(3, 6, 7, 7, 9, true);                                // no padding at all
}

// A product's last one or two rows (fewer than a row tile) go through a kernel of their own,
// several column tiles at once (a dense layer for one image is one such row): each must have the
// bits the same row of A gets inside a full row tile, with a bias, accumulating into C and over
// two passes, and nothing written past C's columns.
void expect_last_rows_as_in_a_full_tile(int rest, int n, int k, bool bias, bool accumulate) {
  SCOPED_TRACE(testing::Message() << rest << " last rows, n " << n << ", k " << k
                                  << (bias ? ", bias" : "") << (accumulate ? ", accumulate" : ""));
  const int m_full = 2 * kGemmMR;   // the tested rows at kGemmMR.. inside the second full tile
  const int m_rest = kGemmMR + rest;  // and as the last rows
  const std::vector<float> a = test::random_inputs(size_t(m_full) * k, 7);
  const std::vector<float> b = test::random_inputs(size_t(k) * n, 8);
  const std::vector<float> row_bias = test::random_inputs(size_t(m_full), 9);
  const std::vector<float> c0 = test::random_inputs(size_t(m_full) * (n + 2), 10);
  std::vector<float> b_packed(packed_b_floats(k, n));
  for (int p = 0; p < k; ++p) pack_b_row(b.data() + size_t(p) * n, p, k, n, b_packed.data());
  const int ldc = n + 2;  // two guard columns
  auto product = [&](int m) {
    std::vector<float> a_packed(packed_a_floats(m, k)), c(c0.begin(), c0.begin() + long(m) * ldc);
    pack_a(a.data(), k, false, m, k, a_packed.data());
    multiply_packed(m, n, k, a_packed.data(), b_packed.data(), c.data(), ldc,
                    bias ? row_bias.data() : nullptr, accumulate);
    return c;
  };
  const std::vector<float> full = product(m_full), last = product(m_rest);
  for (int i = 0; i < m_rest; ++i)
    for (int j = 0; j < ldc; ++j) {
      const size_t at = size_t(i) * ldc + j;
      ASSERT_EQ(std::memcmp(&last[at], &full[at], sizeof(float)), 0)
          << "C[" << i << ", " << j << "] = " << last[at] << ", in a full tile " << full[at];
    }
  // Also alone, as the whole product (a GEMV when rest is 1): the rows of A from kGemmMR on.
  std::vector<float> a_packed(packed_a_floats(rest, k)), alone(c0.begin(), c0.begin() + long(rest) * ldc);
  pack_a(a.data() + size_t(kGemmMR) * k, k, false, rest, k, a_packed.data());
  multiply_packed(rest, n, k, a_packed.data(), b_packed.data(), alone.data(), ldc,
                  bias ? row_bias.data() + kGemmMR : nullptr, accumulate);
  if (accumulate) return;  // C's starting rows differ from the full product's there
  for (int i = 0; i < rest; ++i)
    for (int j = 0; j < n; ++j)
      ASSERT_EQ(std::memcmp(&alone[size_t(i) * ldc + j], &full[size_t(kGemmMR + i) * ldc + j],
                            sizeof(float)), 0)
          << "row " << i << " alone, column " << j;
}

TEST(Gemm, TheLastOneOrTwoRowsGetTheBitsOfAFullRowTile) {
  for (int rest : {1, 2}) {
    expect_last_rows_as_in_a_full_tile(rest, 1, 1, false, false);
    expect_last_rows_as_in_a_full_tile(rest, 9 * kGemmNR + 5, 37, true, false);  // 10 tiles, one partial
    expect_last_rows_as_in_a_full_tile(rest, 4 * kGemmNR, 600, false, true);     // two passes
    expect_last_rows_as_in_a_full_tile(rest, 3 * kGemmNR - 1, 300, true, true);
  }
}

// The micro-kernel's loop taking two steps of the depth an iteration (GemmDepthSteps::kTwo, what
// WebAssembly in a browser runs) gives one step's bits, for every kind of B, odd depths (a last
// single step) and depths of two passes.
TEST(Gemm, TwoDepthStepsGiveTheBitsOfOne) {
  const GemmDepthSteps before = gemm_depth_steps();
  for (int k : {1, 7, 300, 513}) {
    const int m = 2 * kGemmMR + 1, n = 3 * kGemmNR - 5, ldc = n;
    SCOPED_TRACE(testing::Message() << "k " << k);
    const std::vector<float> a = test::random_inputs(size_t(m) * k, 4);
    const std::vector<float> b = test::random_inputs(size_t(k) * (n + kGemmNR) + 9, 5);
    const std::vector<float> row_bias = test::random_inputs(size_t(m), 6);
    std::vector<int> offsets(static_cast<size_t>(k));
    for (int p = 0; p < k; ++p) offsets[size_t(p)] = (p * 5 + 1) % (k + 9);
    std::vector<float> a_packed(packed_a_floats(m, k)), b_packed(packed_b_floats(k, n));
    pack_a(a.data(), k, false, m, k, a_packed.data());
    for (int p = 0; p < k; ++p) pack_b_row(b.data() + size_t(p) * n, p, k, n, b_packed.data());

    std::vector<float> out[2][3];
    for (int two = 0; two < 2; ++two) {
      set_gemm_depth_steps(two ? GemmDepthSteps::kTwo : GemmDepthSteps::kOne);
      for (auto& c : out[two]) c.assign(size_t(m) * ldc, 0.0f);
      multiply_packed(m, n, k, a_packed.data(), b_packed.data(), out[two][0].data(), ldc,
                      row_bias.data());
      multiply_shifted(m, n, k, a_packed.data(), b.data(), offsets.data(), out[two][1].data(), ldc);
      multiply_strided(m, n, k, a_packed.data(), b.data(), n + kGemmNR, out[two][2].data(), ldc);
    }
    for (int kind = 0; kind < 3; ++kind) {
      const size_t bytes = sizeof(float) * out[0][kind].size();
      EXPECT_EQ(std::memcmp(out[0][kind].data(), out[1][kind].data(), bytes), 0)
          << "product " << kind << " (packed, shifted, strided) differs with two steps";
    }
    // A product that did not depend on the depth loop at all would pass trivially.
    EXPECT_NE(out[0][0][0], row_bias[0]);
  }
  set_gemm_depth_steps(before);
}

// A last column tile of at most one vector's columns runs a kernel of its own with AVX-512 (one
// vector instead of kGemmNV; at most 4 columns, another with 4 rows x 4 columns a vector): its
// columns must get the bits they get inside a full tile of a
// wider product over the same rows of B, for every kind of B, with a bias, accumulating, over
// two passes and in rows of a row-tiled product, and nothing may be written past C's columns.
void expect_narrow_last_tile_as_in_a_full_one(int tail, int k, bool bias, bool accumulate) {
  const int m = 2 * kGemmMR + 1, n = kGemmNR + tail, wide = 2 * kGemmNR, ldc = wide + 2;
  SCOPED_TRACE(testing::Message() << "last tile " << tail << " columns, k " << k
                                  << (bias ? ", bias" : "") << (accumulate ? ", accumulate" : ""));
  const std::vector<float> a = test::random_inputs(size_t(m) * k, 11);
  const size_t b_floats = size_t(k) * 3 + size_t(wide) * 3 + 7;  // rows readable past `wide`
  const std::vector<float> buffer = test::random_inputs(b_floats, 12);
  const std::vector<float> row_bias = test::random_inputs(size_t(m), 13);
  const std::vector<float> c0 = test::random_inputs(size_t(m) * ldc, 14);
  std::vector<int> offsets(static_cast<size_t>(k));
  for (int p = 0; p < k; ++p) offsets[size_t(p)] = (p * 7 + 3) % (2 * k + 5);
  std::vector<float> a_packed(packed_a_floats(m, k));
  pack_a(a.data(), k, false, m, k, a_packed.data());
  const float* rb = bias ? row_bias.data() : nullptr;
  // Product `kind` over the first `cols` columns of the same B (row p at buffer + offsets[p]).
  auto product = [&](int kind, int cols) {
    std::vector<float> c = c0;
    std::vector<float> b_packed(packed_b_floats(k, cols));
    switch (kind) {
      case 0:
        for (int p = 0; p < k; ++p)
          pack_b_row(buffer.data() + offsets[size_t(p)], p, k, cols, b_packed.data());
        multiply_packed(m, cols, k, a_packed.data(), b_packed.data(), c.data(), ldc, rb,
                        accumulate);
        break;
      case 1:
        multiply_shifted(m, cols, k, a_packed.data(), buffer.data(), offsets.data(), c.data(),
                         ldc, rb);
        break;
      case 2:
        multiply_strided(m, cols, k, a_packed.data(), buffer.data(), 3, c.data(), ldc, rb,
                         accumulate);
        break;
      default:  // one row of `cols` columns over B's columns from 0: a row tile's own last tile
        multiply_shifted_rows(m, 1, cols, wide, k, a_packed.data(), buffer.data(), offsets.data(),
                              c.data(), ldc, rb);
    }
    return c;
  };
  for (int kind = 0; kind < 4; ++kind) {
    if (accumulate && (kind == 1 || kind == 3)) continue;  // the shifted products overwrite C
    static const char* const kKinds[] = {"packed", "shifted", "strided", "in rows"};
    SCOPED_TRACE(testing::Message() << "B " << kKinds[kind]);
    const std::vector<float> narrow = product(kind, n), full = product(kind, wide);
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < ldc; ++j) {
        const size_t at = size_t(i) * ldc + j;
        const float want = j < n ? full[at] : c0[at];  // past n: C as it was
        ASSERT_EQ(std::memcmp(&narrow[at], &want, sizeof(float)), 0)
            << "C[" << i << ", " << j << "] = " << narrow[at] << ", expected " << want;
      }
    // A product that wrote nothing would pass the columns past n: the first must have changed.
    EXPECT_NE(narrow[0], c0[0]);
  }
}

TEST(Gemm, ANarrowLastColumnTileGetsTheBitsOfAFullOne) {
  for (int tail : {1, 2, 4, 5, kGemmLanes - 1, kGemmLanes, kGemmLanes + 1}) {
    expect_narrow_last_tile_as_in_a_full_one(tail, 37, true, false);
    expect_narrow_last_tile_as_in_a_full_one(tail, 600, false, true);  // two passes
    expect_narrow_last_tile_as_in_a_full_one(tail, 300, true, true);
  }
}

// The ceiling probe does every round of every chain in every lane: its sums are the recurrence's
// closed forms (exact in floats), so a probe that skipped rounds, chains or lanes would fail.
TEST(Gemm, TheMultiplyAddProbeRunsEveryRoundOfEveryChain) {
  const int floats = multiply_add_probe_floats();
  EXPECT_EQ(floats % 4, 0);
  EXPECT_GE(floats, 12 * 4);
  EXPECT_EQ(multiply_add_probe(0, 5.0f, 5.0f), 0.0);
  EXPECT_EQ(multiply_add_probe(1000, 1.0f, 1.0f), 1000.0 * floats);
  EXPECT_EQ(multiply_add_probe(3, 2.0f, 1.0f), 7.0 * floats);  // 1, 3, 7
  EXPECT_EQ(multiply_add_probe(5, 0.5f, 1.0f), 1.9375 * floats);
}

// The core's multiply-add width comes from CPUID; Linux states the same vendor and family in
// /proc/cpuinfo, so the two readings must agree: true exactly for an AVX-512 build on AMD's
// family 25 (19h, Zen 4), false in every other build.
TEST(Gemm, HalvedWideMultiplyAddsAreZen4sAccordingToProcCpuinfo) {
  std::ifstream info("/proc/cpuinfo");
  if (!info) GTEST_SKIP() << "no /proc/cpuinfo to compare with";
  std::string line, vendor;
  int family = -1;
  while (std::getline(info, line) && (vendor.empty() || family < 0)) {
    const size_t colon = line.find(':');
    if (colon == std::string::npos || colon + 2 > line.size()) continue;
    const std::string key = line.substr(0, line.find_last_not_of(" \t", colon - 1) + 1);
    if (key == "vendor_id") vendor = line.substr(colon + 2);
    if (key == "cpu family") family = std::stoi(line.substr(colon + 2));
  }
  if (kGemmLanes == 16 && (vendor.empty() || family < 0))
    GTEST_SKIP() << "/proc/cpuinfo names no vendor_id and cpu family to compare with";
  const bool zen4 = kGemmLanes == 16 && vendor == "AuthenticAMD" && family == 25;
  EXPECT_EQ(halves_wide_multiply_adds(), zen4) << vendor << ", family " << family;
  // With it, the automatic 3x3 stride-1 form may be Winograd's (ebm/kernels.h).
  if (zen4) {
    EXPECT_TRUE(winograd_by_default());
  }
}

}  // namespace
}  // namespace ebm
