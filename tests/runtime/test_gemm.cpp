// White-box tests of the GEMM (runtime/src/gemm.h): the product on rows read in place
// (multiply_shifted, what stride-1 convolutions use) gives the packed product's bits.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

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

}  // namespace
}  // namespace ebm
