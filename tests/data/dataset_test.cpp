// The image folder loader and the train/validation split.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "../expect_error.h"
#include "bridges/bridges.h"
#include "data/dataset.h"
#include "ebm/error.h"
#include "ebm/fileio.h"
#include "ebm/image_io.h"

namespace fs = std::filesystem;

namespace {

using ebm::test::expect_error;

// A fresh folder per test, removed afterwards.
class Folder {
 public:
  explicit Folder(const std::string& name)
      : path_(fs::path(testing::TempDir()) /
              ("ebm_dataset_" + name + "_" + std::to_string(getpid()))) {
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~Folder() { fs::remove_all(path_); }
  std::string str() const { return path_.string(); }
  std::string operator/(const std::string& rel) const {
    fs::create_directories((path_ / rel).parent_path());
    return (path_ / rel).string();
  }

 private:
  fs::path path_;
};

ebm::Image gray(int w, int h, uint8_t v) {
  return ebm::Image(w, h, 1, v);
}

const ebm::Shape k4x2{1, 2, 4};  // C, H, W

}  // namespace

TEST(ImageFolder, LabelsImagesByFirstLevelFolderAndLoadsThemInSortedPathOrder) {
  Folder root("nested");
  ebm::write_png(root / "b/deep/er/x.png", gray(4, 2, 0));
  ebm::write_png(root / "a/2.png", gray(4, 2, 255));
  ebm::write_png(root / "a/1.png", gray(4, 2, 0));
  ebm::write_png(root / "preview.png", gray(4, 2, 0));    // root-level: not part of the set
  ebm::write_file_atomic(root / "labels.csv", "file\n");  // not an image
  ebm::write_file_atomic(root / "a/notes.txt", "x");
  ebm::write_png(root / ".hidden/z.png", gray(4, 2, 0));
  fs::create_directories(root / "empty/");

  const ebm::Dataset d = ebm::load_image_folder(root.str(), k4x2);
  ASSERT_EQ(d.size(), 3);
  EXPECT_EQ(d.label_names, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(d.labels, (std::vector<int>{0, 0, 1}));
  EXPECT_EQ(fs::path(d.files[0]).filename(), "1.png");
  EXPECT_EQ(fs::path(d.files[1]).filename(), "2.png");
  EXPECT_EQ(fs::path(d.files[2]).filename(), "x.png");
  EXPECT_EQ(d.shape, k4x2);
  ASSERT_EQ(d.images.size(), 3u * 8);
  EXPECT_EQ(d.image(0)[0], -1.0f);  // black
  EXPECT_EQ(d.image(1)[7], 1.0f);   // white
}

TEST(ImageFolder, LoadsImagesInTheRootUnlabeledWhenThereAreNoSubfolders) {
  Folder root("flat");
  ebm::write_png(root / "b.png", gray(4, 2, 0));
  ebm::write_png(root / "a.PNG", gray(4, 2, 255));
  const ebm::Dataset d = ebm::load_image_folder(root.str(), k4x2);
  ASSERT_EQ(d.size(), 2);
  EXPECT_EQ(d.labels, (std::vector<int>{-1, -1}));
  EXPECT_TRUE(d.label_names.empty());
  EXPECT_EQ(fs::path(d.files[0]).filename(), "a.PNG");
  EXPECT_EQ(d.image(0)[0], 1.0f);
}

// Luma 0.299 R + 0.587 G + 0.114 B; alpha composited over white.
TEST(ImageFolder, ConvertsRgbAndRgbaPngsToGray) {
  Folder root("color");
  ebm::Image rgb(4, 2, 3);
  for (int y = 0; y < 2; ++y)
    for (int x = 0; x < 4; ++x) {
      uint8_t* p = rgb.at(x, y);
      p[0] = 255, p[1] = 0, p[2] = 0;  // red
    }
  ebm::Image rgba(4, 2, 4);
  for (int y = 0; y < 2; ++y)
    for (int x = 0; x < 4; ++x) {
      uint8_t* p = rgba.at(x, y);
      p[0] = p[1] = p[2] = 0;  // black ...
      p[3] = x < 2 ? 0 : 255;  // ... invisible on the left, opaque on the right
    }
  ebm::write_png(root / "rgb.png", rgb);
  ebm::write_png(root / "rgba.png", rgba);
  const ebm::Dataset d = ebm::load_image_folder(root.str(), k4x2);
  ASSERT_EQ(d.size(), 2);
  EXPECT_FLOAT_EQ(d.image(0)[0], ebm::pixel_to_unit(76));  // round(0.299 * 255)
  EXPECT_FLOAT_EQ(d.image(1)[0], 1.0f);                    // transparent -> white
  EXPECT_FLOAT_EQ(d.image(1)[3], -1.0f);                   // opaque black
}

TEST(ImageFolder, ResizesEveryImageToTheTargetByAreaOrBilinear) {
  Folder root("resize");
  ebm::Image halves(8, 4, 1);  // left half black, right half white
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 8; ++x) *halves.at(x, y) = x < 4 ? 0 : 255;
  ebm::write_png(root / "big.png", halves);
  ebm::Image small(2, 1, 1);
  *small.at(0, 0) = 0, *small.at(1, 0) = 255;
  ebm::write_png(root / "small.png", small);

  const ebm::Dataset d = ebm::load_image_folder(root.str(), k4x2);
  ASSERT_EQ(d.size(), 2);
  // big.png shrinks by area averaging: each output pixel averages one colour.
  EXPECT_EQ(std::vector<float>(d.image(0), d.image(0) + 8),
            (std::vector<float>{-1, -1, 1, 1, -1, -1, 1, 1}));
  // small.png grows bilinearly: black at the left edge, white at the right, a ramp between.
  const float* s = d.image(1);
  EXPECT_EQ(s[0], -1.0f);
  EXPECT_EQ(s[3], 1.0f);
  EXPECT_LT(s[1], s[2]);
  EXPECT_GT(s[1], -1.0f);
  EXPECT_LT(s[2], 1.0f);
}

TEST(ImageFolder, ReadsTheGeneratedBridgeDatasetWithSubtypeLabels) {
  Folder root("bridges");
  std::vector<std::vector<float>> expected;
  for (int s = 0; s < ebm::bridges::kSubtypeCount; ++s)
    for (uint64_t i = 0; i < 2; ++i) {
      const auto st = ebm::bridges::subtype_at(s);
      const ebm::bridges::Drawing d = ebm::bridges::draw_bridge(st, 1, i, 192, 48);
      ebm::write_png(root / (std::string(ebm::bridges::subtype_name(st)) + "/0000" +
                             std::to_string(i) + ".png"),
                     d.image);
      expected.push_back(ebm::image_to_unit(d.image));
    }
  ebm::write_png(root / "preview.png", gray(192, 48, 0));
  ebm::write_file_atomic(root / "labels.csv", "file,subtype\n");

  const ebm::Dataset d = ebm::load_image_folder(root.str(), {1, 48, 192});
  ASSERT_EQ(d.size(), 16);
  ASSERT_EQ(d.label_names.size(), 8u);
  EXPECT_TRUE(std::is_sorted(d.label_names.begin(), d.label_names.end()));
  for (int64_t i = 0; i < d.size(); ++i) {
    const std::string& name = d.label_names[size_t(d.labels[size_t(i)])];
    const int s = ebm::bridges::subtype_index(ebm::bridges::parse_subtype(name));
    const size_t k = size_t(s) * 2 + (d.files[size_t(i)].find("00001") != std::string::npos);
    EXPECT_EQ(std::vector<float>(d.image(i), d.image(i) + 192 * 48), expected[k])
        << d.files[size_t(i)];
  }
}

TEST(ImageFolder, AMissingFolderIsAnErrorNamingIt) {
  const std::string missing = testing::TempDir() + "/ebm_no_such_folder_xyz";
  expect_error([&] { ebm::load_image_folder(missing, k4x2); }, {missing, "does not exist"});
}

TEST(ImageFolder, AFileInsteadOfAFolderIsAnErrorNamingIt) {
  Folder root("notdir");
  const std::string file = root / "a.png";
  ebm::write_png(file, gray(4, 2, 0));
  expect_error([&] { ebm::load_image_folder(file, k4x2); }, {file, "not a folder"});
}

TEST(ImageFolder, AFolderWithoutImagesIsAnErrorNamingIt) {
  Folder root("empty");
  ebm::write_file_atomic(root / "labels.csv", "file\n");
  fs::create_directories(root / "sub/");
  expect_error([&] { ebm::load_image_folder(root.str(), k4x2); }, {root.str(), "no images"});
}

TEST(ImageFolder, ACorruptImageIsAnErrorNamingTheFile) {
  Folder root("corrupt");
  ebm::write_png(root / "a/good.png", gray(4, 2, 0));
  const std::string bad = root / "a/bad.png";
  ebm::write_file_atomic(bad, "this is not a PNG file at all");
  expect_error([&] { ebm::load_image_folder(root.str(), k4x2); }, {bad, "cannot be decoded"});
}

TEST(ImageFolder, ATruncatedImageIsAnErrorNamingTheFile) {
  Folder root("truncated");
  std::vector<uint8_t> png = ebm::encode_png(gray(64, 64, 7));
  png.resize(png.size() / 2);
  const std::string bad = root / "half.png";
  ebm::write_file_atomic(bad, png);
  expect_error([&] { ebm::load_image_folder(root.str(), k4x2); }, {bad});
}

TEST(ImageFolder, AnUnreadableImageIsAnErrorNamingTheFile) {
  if (geteuid() == 0) GTEST_SKIP() << "root reads files whatever their permissions";
  Folder root("unreadable");
  const std::string bad = root / "locked.png";
  ebm::write_png(bad, gray(4, 2, 0));
  fs::permissions(bad, fs::perms::none);
  expect_error([&] { ebm::load_image_folder(root.str(), k4x2); }, {bad});
}

TEST(ImageFolder, OnlyOneChannelTargetsAreAccepted) {
  Folder root("channels");
  ebm::write_png(root / "a.png", gray(4, 2, 0));
  expect_error(
      [&] {
        ebm::load_image_folder(root.str(), {3, 2, 4});
      },
      {root.str(), "one-channel", "3 channels"});
}

namespace {

// 100 + 50 + 10 labelled images and 20 unlabeled ones; image i is filled with i / 1000.
ebm::Dataset numbered_dataset() {
  ebm::Dataset d;
  d.shape = {1, 1, 2};
  d.label_names = {"a", "b", "c"};
  const std::vector<std::pair<int, int>> groups = {{0, 100}, {1, 50}, {2, 10}, {-1, 20}};
  for (const auto& [label, count] : groups)
    for (int k = 0; k < count; ++k) {
      const float v = float(d.labels.size()) / 1000.0f;
      d.images.insert(d.images.end(), {v, v});
      d.files.push_back("img" + std::to_string(d.labels.size()));
      d.labels.push_back(label);
    }
  return d;
}

std::map<int, int> label_counts(const ebm::Dataset& d) {
  std::map<int, int> counts;
  for (int l : d.labels) ++counts[l];
  return counts;
}

}  // namespace

TEST(Split, IsStratifiedDisjointCompleteAndKeepsImagesWithTheirLabels) {
  const ebm::Dataset d = numbered_dataset();
  const ebm::DatasetSplit s = ebm::split_dataset(d, 0.2, 7);
  EXPECT_EQ(label_counts(s.val), (std::map<int, int>{{-1, 4}, {0, 20}, {1, 10}, {2, 2}}));
  EXPECT_EQ(label_counts(s.train), (std::map<int, int>{{-1, 16}, {0, 80}, {1, 40}, {2, 8}}));
  std::set<std::string> seen;
  for (const ebm::Dataset* part : {&s.train, &s.val})
    for (int64_t i = 0; i < part->size(); ++i) {
      const std::string& f = part->files[size_t(i)];
      EXPECT_TRUE(seen.insert(f).second) << f << " is in both parts";
      const int original = std::stoi(f.substr(3));
      EXPECT_EQ(part->labels[size_t(i)], d.labels[size_t(original)]) << f;
      EXPECT_EQ(part->image(i)[1], d.image(original)[1]) << f;
    }
  EXPECT_EQ(seen.size(), size_t(d.size()));
  EXPECT_EQ(s.val.label_names, d.label_names);
  EXPECT_EQ(s.train.shape, d.shape);
}

TEST(Split, TheSameSeedGivesTheSameSplitAndAnotherSeedADifferentOne) {
  const ebm::Dataset d = numbered_dataset();
  const ebm::DatasetSplit a = ebm::split_dataset(d, 0.25, 3), b = ebm::split_dataset(d, 0.25, 3),
                          c = ebm::split_dataset(d, 0.25, 4);
  EXPECT_EQ(a.train.files, b.train.files);
  EXPECT_EQ(a.val.files, b.val.files);
  EXPECT_EQ(a.train.images, b.train.images);
  EXPECT_NE(a.val.files, c.val.files);
  // Shuffled, not left in input order.
  EXPECT_FALSE(std::is_sorted(a.train.files.begin(), a.train.files.end(),
                              [](const std::string& x, const std::string& y) {
                                return std::stoi(x.substr(3)) < std::stoi(y.substr(3));
                              }));
}

TEST(Split, AZeroFractionKeepsEverythingForTrainingAndBadFractionsAreRefused) {
  const ebm::Dataset d = numbered_dataset();
  const ebm::DatasetSplit s = ebm::split_dataset(d, 0.0, 1);
  EXPECT_EQ(s.train.size(), d.size());
  EXPECT_EQ(s.val.size(), 0);
  expect_error([&] { ebm::split_dataset(d, 1.0, 1); }, {"[0, 1)", "1.0"});
  expect_error([&] { ebm::split_dataset(d, -0.1, 1); }, {"[0, 1)"});
}
