// The evaluation measures on constructed cases whose answers are known.
#include <gtest/gtest.h>

#include <cmath>

#include "ebm/error.h"
#include "ebm/metrics.h"
#include "test_util.h"

namespace ebm {
namespace {

TEST(Gaussian, FitsMeanAndUnbiasedCovariance) {
  const std::vector<float> x = {1, 2, 3, 6, 5, 10};  // three samples of dimension 2
  const Gaussian g = fit_gaussian(x.data(), 3, 2);
  EXPECT_DOUBLE_EQ(g.mean[0], 3.0);
  EXPECT_DOUBLE_EQ(g.mean[1], 6.0);
  EXPECT_DOUBLE_EQ(g.cov[0], 4.0);   // ((-2)^2 + 0 + 2^2) / 2
  EXPECT_DOUBLE_EQ(g.cov[3], 16.0);  // ((-4)^2 + 0 + 4^2) / 2
  EXPECT_DOUBLE_EQ(g.cov[1], 8.0);
  EXPECT_DOUBLE_EQ(g.cov[2], 8.0);
}

TEST(FrechetDistance, OfASetToItselfIsZero) {
  const std::vector<float> x = test::random_inputs(200 * 16, 3);
  const Gaussian g = fit_gaussian(x.data(), 200, 16);
  EXPECT_NEAR(frechet_distance(g, g), 0.0, 1e-9);
}

TEST(FrechetDistance, MatchesTheClosedFormForDiagonalCovariances) {
  // Diagonal C1 = diag(s1^2), C2 = diag(s2^2): |mu1 - mu2|^2 + sum (s1 - s2)^2.
  Gaussian a, b;
  a.dim = b.dim = 3;
  a.mean = {0, 1, 2};
  b.mean = {1, 1, 0};
  const double s1[] = {1, 2, 0.5}, s2[] = {3, 2, 1.5};
  a.cov.assign(9, 0.0);
  b.cov.assign(9, 0.0);
  double expected = 1 + 0 + 4;
  for (int i = 0; i < 3; ++i) {
    a.cov[size_t(i) * 4] = s1[i] * s1[i];
    b.cov[size_t(i) * 4] = s2[i] * s2[i];
    expected += (s1[i] - s2[i]) * (s1[i] - s2[i]);
  }
  EXPECT_NEAR(frechet_distance(a, b), expected, 1e-9);
  EXPECT_NEAR(frechet_distance(b, a), expected, 1e-9);
}

TEST(FrechetDistance, DoesNotDependOnARotationOfBothSets) {
  // The same pair of correlated Gaussians expressed in a rotated basis.
  Gaussian a, b;
  a.dim = b.dim = 2;
  a.mean = {0, 0};
  b.mean = {0.5, -0.25};
  a.cov = {2.0, 0.6, 0.6, 1.0};
  b.cov = {1.0, -0.3, -0.3, 0.5};
  const double c = std::cos(0.7), s = std::sin(0.7);
  auto rotate = [&](const Gaussian& g) {
    Gaussian r = g;
    r.mean = {c * g.mean[0] - s * g.mean[1], s * g.mean[0] + c * g.mean[1]};
    const double R[2][2] = {{c, -s}, {s, c}};
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 2; ++j) {
        double v = 0;
        for (int k = 0; k < 2; ++k)
          for (int l = 0; l < 2; ++l) v += R[i][k] * g.cov[size_t(k) * 2 + l] * R[j][l];
        r.cov[size_t(i) * 2 + j] = v;
      }
    return r;
  };
  EXPECT_NEAR(frechet_distance(rotate(a), rotate(b)), frechet_distance(a, b), 1e-9);
  EXPECT_GT(frechet_distance(a, b), 0.1);
}

TEST(FrechetDistance, OfTwoSamplesOfOneDistributionShrinksWithSampleSize) {
  auto fd = [](int n) {
    const std::vector<float> x = test::random_inputs(size_t(n) * 4, 5),
                             y = test::random_inputs(size_t(n) * 4, 6);
    return frechet_distance(fit_gaussian(x.data(), n, 4), fit_gaussian(y.data(), n, 4));
  };
  EXPECT_LT(fd(20000), fd(100));
  EXPECT_LT(fd(20000), 1e-3);
}

TEST(Sharpness, IsOneForPureLineDrawingsAndZeroForGrey) {
  std::vector<float> imgs(3 * 10, 1.0f);
  for (int k = 0; k < 5; ++k) imgs[size_t(k)] = -1.0f;
  for (int k = 10; k < 20; ++k) imgs[size_t(k)] = 0.0f;
  for (int k = 20; k < 30; ++k) imgs[size_t(k)] = 0.5f;
  const std::vector<double> s = sharpness(imgs.data(), 3, 10);
  EXPECT_DOUBLE_EQ(s[0], 1.0);
  EXPECT_DOUBLE_EQ(s[1], 0.0);
  EXPECT_DOUBLE_EQ(s[2], 0.5);
}

TEST(Novelty, ADuplicatedTrainingImageHasDistanceZero) {
  const int64_t d = 50;
  const std::vector<float> refs = test::random_inputs(300 * d, 7);
  std::vector<float> q(refs.begin() + 123 * d, refs.begin() + 124 * d);  // a copy of image 123
  std::vector<float> shifted = q;
  for (float& v : shifted) v += 0.1f;  // 0.1 away per pixel
  q.insert(q.end(), shifted.begin(), shifted.end());
  const std::vector<double> nn = nearest_neighbour_distances(q.data(), 2, refs.data(), 300, d);
  EXPECT_NEAR(nn[0], 0.0, 1e-3);
  EXPECT_LE(nn[1], 0.1 + 1e-6);  // at most the distance to image 123
  EXPECT_GT(nn[1], 0.05);
}

TEST(Novelty, SkippingSelfFindsTheNearestOtherImage) {
  // Three 1-pixel images at 0, 0.25 and 1: nearest others are 0.25, 0.25, 0.75.
  const std::vector<float> x = {0.0f, 0.25f, 1.0f};
  const std::vector<double> nn = nearest_neighbour_distances(x.data(), 3, x.data(), 3, 1, true);
  EXPECT_NEAR(nn[0], 0.25, 1e-6);
  EXPECT_NEAR(nn[1], 0.25, 1e-6);
  EXPECT_NEAR(nn[2], 0.75, 1e-6);
}

TEST(Quantile, InterpolatesBetweenOrderStatistics) {
  EXPECT_DOUBLE_EQ(quantile({4, 1, 3, 2}, 0.0), 1.0);
  EXPECT_DOUBLE_EQ(quantile({4, 1, 3, 2}, 1.0), 4.0);
  EXPECT_DOUBLE_EQ(quantile({4, 1, 3, 2}, 0.5), 2.5);
  EXPECT_THROW(quantile({}, 0.5), Error);
}

TEST(FamilyMix, GroupsSubtypesIntoFamiliesAndSpotsMixtures) {
  const std::vector<std::string> labels = {"arch_deck", "arch_through", "beam_girder", "cable_fan"};
  // Probabilities 0.3, 0.25, 0.05, 0.4 (logits are their logs plus a constant).
  const std::vector<float> logits = {std::log(0.3f) + 2, std::log(0.25f) + 2, std::log(0.05f) + 2,
                                     std::log(0.4f) + 2};
  const FamilyMix m = family_mix(logits.data(), labels);
  ASSERT_EQ(m.families, (std::vector<std::string>{"arch", "beam", "cable"}));
  EXPECT_NEAR(m.family_probs[0], 0.55, 1e-6);
  EXPECT_NEAR(m.family_probs[2], 0.40, 1e-6);
  EXPECT_EQ(m.first, 0);
  EXPECT_EQ(m.second, 2);
  EXPECT_EQ(m.top_subtype, 3);
  EXPECT_TRUE(m.mixes(0.25));
  EXPECT_FALSE(m.mixes(0.45));
  EXPECT_EQ(m.describe(), "arch 55% / cable 40%");
  // Two subtypes of one family are not a mixture of families.
  const std::vector<float> same = {0.0f, 0.0f, -20.0f, -20.0f};
  EXPECT_FALSE(family_mix(same.data(), labels).mixes(0.25));
}

TEST(Metrics, IsolatedDarkPixelsCountDotsNotStrokes) {
  // 5x6, one channel: a horizontal stroke of 4 dark pixels, a lone dot, and a pair of diagonal
  // neighbours (each has exactly one dark neighbour, so both count as isolated).
  std::vector<float> x(30, 1.0f);
  for (int j = 1; j <= 4; ++j) x[size_t(1 * 6 + j)] = -1.0f;  // stroke
  x[size_t(3 * 6 + 0)] = -0.5f;                             // lone dot
  x[size_t(3 * 6 + 4)] = -1.0f;                             // diagonal pair
  x[size_t(4 * 6 + 5)] = -1.0f;
  const DarkPixels r = isolated_dark_pixels(x.data(), 1, 5, 6);
  EXPECT_EQ(r.dark, 7);
  // The stroke's ends have one dark neighbour each: isolated by the definition; the middle two not.
  EXPECT_EQ(r.isolated, 5);
  EXPECT_DOUBLE_EQ(r.isolated_share(), 5.0 / 7.0);
  // Two images: counts add up.
  std::vector<float> two(x);
  two.insert(two.end(), x.begin(), x.end());
  EXPECT_EQ(isolated_dark_pixels(two.data(), 2, 5, 6).dark, 14);
  EXPECT_EQ(DarkPixels{}.isolated_share(), 0.0);
}

}  // namespace
}  // namespace ebm
