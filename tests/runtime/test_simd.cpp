// White-box tests of the vector helpers the kernels share (runtime/src/vec.h).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "ebm/layers.h"
#include "test_util.h"
#include "vec.h"

namespace ebm {
namespace {

TEST(Simd, ExpIsAccurateAndFiniteEverywhere) {
  double worst = 0;
  for (int i = -200000; i <= 200000; ++i) {
    const float x = float(i) * 4.4e-4f;  // [-88, 88]
    float in[simd::kLanes], out[simd::kLanes];
    for (float& v : in) v = x;
    simd::store(out, simd::exp(simd::load(in)));
    const double ref = std::exp(double(x));
    if (x > -87.3f) worst = std::max(worst, std::abs(out[0] - ref) / ref);
    ASSERT_TRUE(std::isfinite(out[0])) << x;
  }
  EXPECT_LT(worst, 3e-7);
  float big[simd::kLanes], out[simd::kLanes];
  for (float& v : big) v = 1000.0f;
  simd::store(out, simd::exp(simd::load(big)));
  EXPECT_TRUE(std::isfinite(out[0]));
  for (float& v : big) v = -1000.0f;
  simd::store(out, simd::exp(simd::load(big)));
  EXPECT_GT(out[0], 0.0f);
  // 2^n is built from the bits of x / ln 2 + 1.5 * 2^23: exact powers at the clamp's ends.
  for (float& v : big) v = 88.3f;
  simd::store(out, simd::exp(simd::load(big)));
  EXPECT_NEAR(out[0] / std::exp(double(88.3f)), 1.0, 3e-7);
  for (float& v : big) v = -87.3f;
  simd::store(out, simd::exp(simd::load(big)));
  EXPECT_NEAR(out[0] / std::exp(double(-87.3f)), 1.0, 3e-7);
  EXPECT_TRUE(std::isnormal(out[0]));
  for (float& v : big) v = std::nanf("");
  simd::store(out, simd::exp(simd::load(big)));
  EXPECT_TRUE(std::isnan(out[0]));
}

TEST(Simd, MinAndMaxReturnTheFirstOperandOnTiesAndNaN) {
  const float nan = std::nanf("");
  struct Case {
    float a, b, min, max;
  };
  const Case cases[] = {
      {1.0f, 2.0f, 1.0f, 2.0f}, {2.0f, 1.0f, 1.0f, 2.0f}, {3.0f, 3.0f, 3.0f, 3.0f},
      {nan, 5.0f, nan, nan},    {5.0f, nan, 5.0f, 5.0f},  {-0.0f, 0.0f, -0.0f, -0.0f},
      {0.0f, -0.0f, 0.0f, 0.0f},
  };
  for (const Case& c : cases) {
    float a[simd::kLanes], b[simd::kLanes], lo[simd::kLanes], hi[simd::kLanes];
    for (int k = 0; k < simd::kLanes; ++k) a[k] = c.a, b[k] = c.b;
    simd::store(lo, simd::min(simd::load(a), simd::load(b)));
    simd::store(hi, simd::max(simd::load(a), simd::load(b)));
    for (int k = 0; k < simd::kLanes; ++k) {  // bit for bit: NaN is NaN, -0 is not +0
      EXPECT_EQ(std::memcmp(&lo[k], &c.min, sizeof(float)), 0) << c.a << " " << c.b;
      EXPECT_EQ(std::memcmp(&hi[k], &c.max, sizeof(float)), 0) << c.a << " " << c.b;
    }
  }
}

TEST(Simd, StrideTwoLoadsAndInterleavedStoresPutEveryLaneWhereItBelongs) {
  float in[2 * simd::kLanes], a[simd::kLanes], b[simd::kLanes], out[2 * simd::kLanes];
  for (int i = 0; i < 2 * simd::kLanes; ++i) in[i] = float(i);
  simd::store(a, simd::even_lanes(simd::load(in), simd::load(in + simd::kLanes)));
  for (int i = 0; i < simd::kLanes; ++i) EXPECT_EQ(a[i], float(2 * i)) << i;
  simd::store(b, simd::odd_lanes(simd::load(in), simd::load(in + simd::kLanes)));
  for (int i = 0; i < simd::kLanes; ++i) EXPECT_EQ(b[i], float(2 * i + 1)) << i;
  for (int i = 0; i < simd::kLanes; ++i) b[i] = float(100 + i);
  simd::Vec lo, hi;
  simd::interleave(simd::load(a), simd::load(b), &lo, &hi);
  simd::store(out, lo);
  simd::store(out + simd::kLanes, hi);
  for (int i = 0; i < simd::kLanes; ++i) {
    EXPECT_EQ(out[2 * i], a[i]) << i;
    EXPECT_EQ(out[2 * i + 1], b[i]) << i;
  }
}

// Partial loads and stores at the ends of a buffer: every lane range, the vector hanging over
// the start and the end (the ASan build checks nothing outside the lanes is touched).
TEST(Simd, PartialLoadsAndStoresTouchOnlyTheirLanes) {
  constexpr int L = simd::kLanes;
  std::vector<float> src(L);
  for (int i = 0; i < L; ++i) src[size_t(i)] = float(i + 1);
  for (int lo = 0; lo <= L; ++lo)
    for (int hi = lo; hi <= L; ++hi)
      for (int base = -L + 1; base < L; ++base) {
        // lanes [lo, hi) of the vector at src + base that lie inside src
        const int l = std::max(lo, -base), h = std::max(l, std::min(hi, L - base));
        float got[L];
        simd::store(got, simd::load_lanes(src.data(), base, l, h));
        for (int i = 0; i < L; ++i)
          EXPECT_EQ(got[i], i >= l && i < h ? src[size_t(base + i)] : 0.0f)
              << "lanes " << l << ".." << h << " from " << base << ", lane " << i;
      }
  for (int valid = 0; valid <= L; ++valid) {
    std::vector<float> in(static_cast<size_t>(valid)), out(static_cast<size_t>(valid) + 1, -1.0f);
    for (int i = 0; i < valid; ++i) in[size_t(i)] = float(10 + i);
    const simd::Vec v = simd::load_first(in.data(), valid);
    float lanes[L];
    simd::store(lanes, v);
    for (int i = 0; i < L; ++i) EXPECT_EQ(lanes[i], i < valid ? float(10 + i) : 0.0f) << valid;
    simd::store_first(out.data(), v + 1.0f, valid);
    for (int i = 0; i < valid; ++i) EXPECT_EQ(out[size_t(i)], float(11 + i)) << valid;
    EXPECT_EQ(out[size_t(valid)], -1.0f) << "store_first wrote past " << valid << " lanes";
  }
}

TEST(Simd, SwishGivesTheSameBitsWhereverAValueSits) {
  // The same values at every offset and length must produce identical results: the tail goes
  // through the same vector code as the body.
  const nlohmann::json layers = nlohmann::json::parse(R"([{"type":"swish"}])");
  const std::vector<float> values = test::random_inputs(37, 3, -9.0f, 9.0f);
  std::vector<float> reference;
  for (int offset = 0; offset < 20; ++offset) {
    std::vector<float> buf = test::random_inputs(size_t(offset) + values.size(), 4);
    std::copy(values.begin(), values.end(), buf.begin() + offset);
    const Architecture a = resolve_architecture({int(buf.size()), 1, 1}, layers);
    const auto layer = make_layer(a.layers[0], random_model(a, 1));
    std::vector<float> y(buf.size());
    layer->forward(buf.data(), y.data(), 1, nullptr);
    const std::vector<float> got(y.begin() + offset, y.end());
    if (reference.empty())
      reference = got;
    else
      EXPECT_EQ(got, reference) << "offset " << offset;
  }
}

}  // namespace
}  // namespace ebm
