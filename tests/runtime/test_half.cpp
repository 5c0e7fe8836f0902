#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "ebm/half.h"
#include "ebm/rng.h"

namespace ebm {
namespace {

// Reference: the nearest half (ties to even) found by brute force over all finite halves.
uint16_t nearest_half_bruteforce(float f) {
  uint16_t best = 0;
  double best_err = INFINITY;
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7c00u) == 0x7c00u) continue;  // skip inf/NaN
    const double v = half_to_float(uint16_t(h));
    const double err = std::abs(v - double(f));
    if (err < best_err || (err == best_err && (h & 1u) == 0 && std::signbit(v) == std::signbit(f))) {
      best_err = err;
      best = uint16_t(h);
    }
  }
  return best;
}

TEST(Half, EveryHalfSurvivesARoundTripThroughFloat) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = half_to_float(uint16_t(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(half_to_float(float_to_half(f)))) << std::hex << h;
      continue;
    }
    EXPECT_EQ(float_to_half(f), h) << std::hex << h << " -> " << f;
  }
}

TEST(Half, DecodesKnownValues) {
  EXPECT_EQ(half_to_float(0x3c00), 1.0f);
  EXPECT_EQ(half_to_float(0xc000), -2.0f);
  EXPECT_EQ(half_to_float(0x7bff), 65504.0f);
  EXPECT_EQ(half_to_float(0x0400), std::ldexp(1.0f, -14));  // smallest normal
  EXPECT_EQ(half_to_float(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(half_to_float(0x7c00), INFINITY);
  EXPECT_TRUE(std::signbit(half_to_float(0x8000)));
}

TEST(Half, RoundsToNearestEvenLikeABruteForceSearch) {
  Pcg32 rng(5, 1);
  for (int i = 0; i < 300; ++i) {
    // Log-uniform magnitudes across the half range, both signs, subnormals included.
    const float mag = std::ldexp(1.0f + rng.uniform(), int(rng.below(40)) - 25);
    const float f = (rng.next_u32() & 1) ? -mag : mag;
    if (std::abs(f) >= 65504.0f) continue;
    EXPECT_EQ(float_to_half(f), nearest_half_bruteforce(f)) << f;
  }
}

TEST(Half, TiesGoToEven) {
  // 1 + 2^-11 lies halfway between 1 and 1 + 2^-10: rounds down to the even mantissa.
  EXPECT_EQ(float_to_half(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
  // 1 + 3 * 2^-11 lies halfway between 1 + 2^-10 (odd) and 1 + 2^-9 (even): rounds up.
  EXPECT_EQ(float_to_half(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  EXPECT_EQ(float_to_half(std::ldexp(1.0f, -25)), 0x0000);  // half of the smallest subnormal
  EXPECT_EQ(float_to_half(std::ldexp(1.5f, -25)), 0x0001);
}

TEST(Half, OverflowBecomesInfinityAndTheLargestHalfStays) {
  EXPECT_EQ(float_to_half(65504.0f), 0x7bff);
  EXPECT_EQ(float_to_half(65519.0f), 0x7bff);
  EXPECT_EQ(float_to_half(65520.0f), 0x7c00);
  EXPECT_EQ(float_to_half(-1e9f), 0xfc00);
}

}  // namespace
}  // namespace ebm
