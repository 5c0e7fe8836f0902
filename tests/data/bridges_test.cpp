// The bridge generator's promises (SPEC section 2): determinism, distinct images, mirror
// symmetry, subtypes a simple classifier can tell apart, any image size.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>
#include <string>
#include <vector>

#include "bridges/bridges.h"
#include "ebm/error.h"
#include "ebm/image_io.h"

namespace br = ebm::bridges;

namespace {

constexpr int kW = 192, kH = 48;

uint64_t fnv1a(const std::vector<uint8_t>& bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (uint8_t b : bytes) h = (h ^ b) * 0x100000001b3ull;
  return h;
}

// Largest |I(x, y) - I(W - 1 - x, y)| over the image, in gray levels.
int mirror_difference(const ebm::Image& img) {
  int worst = 0;
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < img.width / 2; ++x)
      worst = std::max(worst, std::abs(int(*img.at(x, y)) - int(*img.at(img.width - 1 - x, y))));
  return worst;
}

}  // namespace

TEST(Bridges, SameSeedGivesIdenticalBytesAndAnotherSeedDifferentOnes) {
  for (int s = 0; s < br::kSubtypeCount; ++s)
    for (uint64_t index : {0ull, 1ull, 1199ull}) {
      const br::Subtype st = br::subtype_at(s);
      const br::Drawing a = br::draw_bridge(st, 42, index, kW, kH);
      const br::Drawing b = br::draw_bridge(st, 42, index, kW, kH);
      const br::Drawing c = br::draw_bridge(st, 43, index, kW, kH);
      EXPECT_EQ(ebm::encode_png(a.image), ebm::encode_png(b.image))
          << br::subtype_name(st) << " #" << index;
      EXPECT_NE(a.image.pixels, c.image.pixels) << br::subtype_name(st) << " #" << index;
      for (int p = 0; p < br::kParamCount; ++p)
        EXPECT_TRUE(a.params[size_t(p)] == b.params[size_t(p)] ||
                    (std::isnan(a.params[size_t(p)]) && std::isnan(b.params[size_t(p)])))
            << br::param_name(p);
    }
}

TEST(Bridges, AllNineThousandSixHundredDefaultImagesArePairwiseDistinct) {
  std::set<uint64_t> hashes;
  for (int s = 0; s < br::kSubtypeCount; ++s)
    for (uint64_t i = 0; i < 1200; ++i)
      hashes.insert(fnv1a(br::draw_bridge(br::subtype_at(s), 1, i, kW, kH).image.pixels));
  EXPECT_EQ(hashes.size(), 9600u) << 9600 - hashes.size() << " duplicates";
}

// The geometry is symmetric about mid-span and mid-span is the image centre, so an image and its
// mirror differ only by rounding in the anti-aliasing ramps: at most 2 of 255 gray levels.
TEST(Bridges, EveryImageEqualsItsMirrorWithinTwoGrayLevels) {
  constexpr int kTolerance = 2;
  for (const auto& [w, h] : std::vector<std::pair<int, int>>{{192, 48}, {512, 128}, {191, 47}})
    for (int s = 0; s < br::kSubtypeCount; ++s)
      for (uint64_t i = 0; i < (w == 192 ? 150u : 20u); ++i) {
        const ebm::Image img = br::draw_bridge(br::subtype_at(s), 5, i, w, h).image;
        ASSERT_LE(mirror_difference(img), kTolerance)
            << br::subtype_name(br::subtype_at(s)) << " #" << i << " at " << w << "x" << h;
      }
}

// Nearest centroid on 48x12 area-averaged pixels: fit on even indices, scored on odd ones.
TEST(Bridges, EightSubtypesAreSeparableByANearestCentroidClassifier) {
  constexpr int kPer = 1200, kDw = 48, kDh = 12, kD = kDw * kDh;
  std::vector<std::vector<float>> features(size_t(br::kSubtypeCount) * kPer);
  for (int s = 0; s < br::kSubtypeCount; ++s)
    for (int i = 0; i < kPer; ++i) {
      const ebm::Image img = br::draw_bridge(br::subtype_at(s), 1, uint64_t(i), kW, kH).image;
      features[size_t(s) * kPer + size_t(i)] = ebm::image_to_unit(ebm::resize_gray(img, kDw, kDh));
    }
  std::vector<std::vector<double>> centroid(br::kSubtypeCount, std::vector<double>(kD, 0.0));
  for (int s = 0; s < br::kSubtypeCount; ++s)
    for (int i = 0; i < kPer; i += 2)
      for (int k = 0; k < kD; ++k)
        centroid[size_t(s)][size_t(k)] +=
            features[size_t(s) * kPer + size_t(i)][size_t(k)] / (kPer / 2);
  int correct = 0, total = 0;
  std::vector<std::vector<int>> confusion(br::kSubtypeCount, std::vector<int>(br::kSubtypeCount));
  for (int s = 0; s < br::kSubtypeCount; ++s)
    for (int i = 1; i < kPer; i += 2) {
      const std::vector<float>& f = features[size_t(s) * kPer + size_t(i)];
      int best = -1;
      double best_d = 1e300;
      for (int c = 0; c < br::kSubtypeCount; ++c) {
        double d = 0;
        for (int k = 0; k < kD; ++k) {
          const double e = f[size_t(k)] - centroid[size_t(c)][size_t(k)];
          d += e * e;
        }
        if (d < best_d) best_d = d, best = c;
      }
      ++confusion[size_t(s)][size_t(best)];
      correct += best == s;
      ++total;
    }
  const double accuracy = double(correct) / total;
  std::printf("nearest-centroid accuracy on held-out images: %.4f (%d of %d)\n", accuracy, correct,
              total);
  for (int s = 0; s < br::kSubtypeCount; ++s) {
    std::printf("  %-20s", br::subtype_name(br::subtype_at(s)));
    for (int c = 0; c < br::kSubtypeCount; ++c)
      std::printf(" %4d", confusion[size_t(s)][size_t(c)]);
    std::printf("\n");
  }
  EXPECT_GE(accuracy, 0.95);
}

// Drawn in metres and scaled to the image, so a large drawing shrunk to the training size looks
// like the small one: mean absolute difference under 6% of the range, and no large blotches.
TEST(Bridges, A512x128DrawingShrunkTo192x48MatchesThe192x48Drawing) {
  for (int s = 0; s < br::kSubtypeCount; ++s)
    for (uint64_t i = 0; i < 10; ++i) {
      const br::Drawing big = br::draw_bridge(br::subtype_at(s), 9, i, 512, 128);
      const br::Drawing small = br::draw_bridge(br::subtype_at(s), 9, i, kW, kH);
      ASSERT_EQ(big.image.width, 512);
      ASSERT_EQ(big.image.height, 128);
      const ebm::Image shrunk = ebm::resize_gray(big.image, kW, kH);
      double sum = 0;
      for (size_t k = 0; k < shrunk.pixels.size(); ++k)
        sum += std::abs(int(shrunk.pixels[k]) - int(small.image.pixels[k]));
      const double mean = sum / double(shrunk.pixels.size()) / 255.0;
      EXPECT_LT(mean, 0.06) << br::subtype_name(br::subtype_at(s)) << " #" << i;
      for (int p = 0; p < br::kParamCount; ++p)  // same layout; fractions equal up to rounding
        if (!std::isnan(small.params[size_t(p)])) {
          EXPECT_NEAR(big.params[size_t(p)], small.params[size_t(p)], 1e-9) << br::param_name(p);
        }
    }
}

// Dark structure on a light background, filling the width with a small margin: the corners are
// white, some but not most of the image is ink, and the structure down to the deck spans
// 88..100% of the width.
TEST(Bridges, DrawsDarkStructureOnALightBackgroundAcrossTheWidth) {
  for (int s = 0; s < br::kSubtypeCount; ++s)
    for (uint64_t i = 0; i < 50; ++i) {
      const br::Drawing d = br::draw_bridge(br::subtype_at(s), 3, i, kW, kH);
      const ebm::Image& img = d.image;
      const std::string what =
          std::string(br::subtype_name(br::subtype_at(s))) + " #" + std::to_string(i);
      EXPECT_EQ(*img.at(0, 0), 255) << what;
      EXPECT_EQ(*img.at(kW - 1, 0), 255) << what;
      int dark = 0, left = kW, right = -1;
      const int deck = int(d.params[br::kDeckLine] * kH);
      for (int y = 0; y < kH; ++y)
        for (int x = 0; x < kW; ++x)
          if (*img.at(x, y) < 128) {
            ++dark;
            if (y <= deck + 1) left = std::min(left, x), right = std::max(right, x);
          }
      const double ink = double(dark) / (kW * kH);
      EXPECT_GT(ink, 0.03) << what;
      EXPECT_LT(ink, 0.35) << what;
      EXPECT_GE(right - left + 1, int(0.88 * kW)) << what;
    }
}

// labels.csv has one column per parameter; each subtype fills the same ones in every image.
TEST(Bridges, EachSubtypeSetsTheSameParametersInEveryImage) {
  for (int s = 0; s < br::kSubtypeCount; ++s) {
    const br::Subtype st = br::subtype_at(s);
    const br::Drawing first = br::draw_bridge(st, 1, 0, kW, kH);
    for (uint64_t i = 1; i < 40; ++i) {
      const br::Drawing d = br::draw_bridge(st, 1, i, kW, kH);
      for (int p = 0; p < br::kParamCount; ++p)
        EXPECT_EQ(std::isnan(d.params[size_t(p)]), std::isnan(first.params[size_t(p)]))
            << br::subtype_name(st) << " #" << i << " " << br::param_name(p);
    }
    const std::string family = br::family_name(st);
    EXPECT_EQ(!std::isnan(first.params[br::kCableSag]), family == "suspension");
    EXPECT_EQ(!std::isnan(first.params[br::kStayCount]), family == "cable_stayed");
    EXPECT_EQ(!std::isnan(first.params[br::kArchRise]), family == "arch");
    EXPECT_EQ(!std::isnan(first.params[br::kVSpread]), st == br::Subtype::kBeamVPier);
    EXPECT_FALSE(std::isnan(first.params[br::kDeckHeight]));
  }
}

TEST(Bridges, SubtypeNamesRoundTripAndUnknownNamesAreRefusedWithTheList) {
  for (int s = 0; s < br::kSubtypeCount; ++s)
    EXPECT_EQ(br::subtype_index(br::parse_subtype(br::subtype_name(br::subtype_at(s)))), s);
  try {
    br::parse_subtype("cable_stay");
    FAIL() << "no error";
  } catch (const ebm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("'cable_stay'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("cable_harp"), std::string::npos) << e.what();
  }
  EXPECT_EQ(br::spans(br::Subtype::kBeamGirder), (std::array<double, 3>{80, 140, 80}));
  EXPECT_EQ(br::spans(br::Subtype::kCableFan), (std::array<double, 3>{67, 166, 67}));
  EXPECT_THROW(br::draw_bridge(br::Subtype::kArchDeck, 1, 0, 8, 48), ebm::Error);
}
