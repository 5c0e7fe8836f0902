// The MNIST IDX loader: round trips on small files the tests write, padding and resizing, and a
// refusal naming the file for each kind of broken input.
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <filesystem>
#include <string>
#include <vector>

#include "../expect_error.h"
#include "data/dataset.h"
#include "ebm/error.h"
#include "ebm/fileio.h"
#include "ebm/image_io.h"

namespace fs = std::filesystem;

namespace {

using ebm::test::expect_error;

std::string temp_path(const std::string& name) {
  return (fs::path(testing::TempDir()) / ("ebm_idx_" + std::to_string(getpid()) + "_" + name))
      .string();
}

void put_u32(std::vector<uint8_t>& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(uint8_t(v >> shift));
}

// An IDX file: magic (0, 0, type, dims.size()), the dimensions, then the data.
std::vector<uint8_t> idx_bytes(const std::vector<uint32_t>& dims, const std::vector<uint8_t>& data,
                               uint8_t type = 0x08) {
  std::vector<uint8_t> out = {0, 0, type, uint8_t(dims.size())};
  for (uint32_t d : dims) put_u32(out, d);
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

std::vector<uint8_t> gzip(const std::vector<uint8_t>& raw) {
  z_stream zs{};
  EXPECT_EQ(deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::vector<uint8_t> out(deflateBound(&zs, uLong(raw.size())) + 64);
  zs.next_in = const_cast<uint8_t*>(raw.data());
  zs.avail_in = uInt(raw.size());
  zs.next_out = out.data();
  zs.avail_out = uInt(out.size());
  EXPECT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

// Three 2x3 (rows x cols) images whose pixel k of image i is 10 * i + k, and labels 2, 0, 1.
std::vector<uint8_t> tiny_images() {
  std::vector<uint8_t> data;
  for (int i = 0; i < 3; ++i)
    for (int k = 0; k < 6; ++k) data.push_back(uint8_t(10 * i + k));
  return idx_bytes({3, 2, 3}, data);
}
std::vector<uint8_t> tiny_labels() {
  return idx_bytes({3}, {2, 0, 1});
}

class IdxFiles : public testing::Test {
 protected:
  std::string write(const std::string& name, const std::vector<uint8_t>& bytes) {
    const std::string path = temp_path(name);
    ebm::write_file_atomic(path, bytes);
    written_.push_back(path);
    return path;
  }
  void TearDown() override {
    for (const std::string& p : written_) fs::remove(p);
  }

 private:
  std::vector<std::string> written_;
};

const ebm::Shape k2x3{1, 2, 3};

}  // namespace

TEST_F(IdxFiles, PlainAndGzippedFilesRoundTripEveryPixelAndLabel) {
  for (bool gz : {false, true}) {
    const std::string images =
        write(gz ? "img.gz" : "img", gz ? gzip(tiny_images()) : tiny_images());
    const std::string labels =
        write(gz ? "lab.gz" : "lab", gz ? gzip(tiny_labels()) : tiny_labels());
    const ebm::Dataset d = ebm::load_idx(images, labels, k2x3);
    ASSERT_EQ(d.size(), 3) << images;
    EXPECT_EQ(d.shape, k2x3);
    EXPECT_EQ(d.labels, (std::vector<int>{2, 0, 1}));
    EXPECT_EQ(d.label_names, (std::vector<std::string>{"0", "1", "2"}));
    EXPECT_EQ(d.files[1], images + "[1]");
    for (int i = 0; i < 3; ++i)
      for (int k = 0; k < 6; ++k)
        EXPECT_EQ(d.image(i)[k], ebm::pixel_to_unit(uint8_t(10 * i + k))) << i << "," << k;
  }
}

TEST_F(IdxFiles, WithoutALabelFileEveryImageIsUnlabeled) {
  const ebm::Dataset d = ebm::load_idx(write("img", tiny_images()), "", k2x3);
  EXPECT_EQ(d.labels, (std::vector<int>{-1, -1, -1}));
  EXPECT_TRUE(d.label_names.empty());
}

TEST_F(IdxFiles, GivenLabelNamesAreUsedAndALabelWithoutANameIsAnError) {
  const std::string images = write("img", tiny_images()), labels = write("lab", tiny_labels());
  const ebm::Dataset d = ebm::load_idx(images, labels, k2x3, {"shirt", "shoe", "bag"});
  EXPECT_EQ(d.label_names[size_t(d.labels[0])], "bag");
  expect_error(
      [&] {
        ebm::load_idx(images, labels, k2x3, {"shirt", "shoe"});
      },
      {labels, "label 2", "no name"});
}

// The book pads MNIST's 28x28 to 32x32; padding takes the data's background (the most common
// border value), black for MNIST-like data and white for data drawn on white.
TEST_F(IdxFiles, ASlightlyLargerTargetIsPaddedCentredWithTheDataBackground) {
  for (uint8_t background : {uint8_t(0), uint8_t(255)}) {
    std::vector<uint8_t> data(2 * 28 * 28, background);
    for (int i = 0; i < 2; ++i) data[size_t(i) * 784 + 14 * 28 + 14] = 128;  // one mark each
    const std::string images = write("pad", idx_bytes({2, 28, 28}, data));
    const ebm::Dataset d = ebm::load_idx(images, "", {1, 32, 32});
    ASSERT_EQ(d.size(), 2);
    const float bg = ebm::pixel_to_unit(background);
    for (int i = 0; i < 2; ++i) {
      EXPECT_EQ(d.image(i)[0], bg);                                            // padding corner
      EXPECT_EQ(d.image(i)[31 * 32 + 31], bg);                                 // opposite corner
      EXPECT_EQ(d.image(i)[(14 + 2) * 32 + 14 + 2], ebm::pixel_to_unit(128));  // moved by 2, 2
    }
  }
}

TEST_F(IdxFiles, AMuchLargerOrSmallerTargetIsResized) {
  const std::string images = write("img", tiny_images());
  const ebm::Dataset up = ebm::load_idx(images, "", {1, 8, 12});
  const ebm::Dataset down = ebm::load_idx(images, "", {1, 1, 1});
  ebm::Image first(3, 2, 1);
  for (int k = 0; k < 6; ++k) first.pixels[size_t(k)] = uint8_t(k);
  EXPECT_EQ(std::vector<float>(up.image(0), up.image(0) + 96),
            ebm::image_to_unit(ebm::resize_gray(first, 12, 8)));
  EXPECT_NEAR(down.image(2)[0], (22.5f - 127.5f) / 127.5f, 0.5f / 127.5f + 1e-6f);  // mean 20..25
}

TEST_F(IdxFiles, AWrongMagicIsAnErrorNamingTheFile) {
  std::vector<uint8_t> bytes = tiny_images();
  bytes[0] = 0x89, bytes[1] = 'P';  // a PNG signature, say
  const std::string path = write("magic", bytes);
  expect_error([&] { ebm::load_idx(path, "", k2x3); }, {path, "not an IDX file", "0x00000803"});
}

TEST_F(IdxFiles, ALabelFileGivenAsImagesIsAnErrorNamingBoth) {
  const std::string labels = write("lab", tiny_labels()), images = write("img", tiny_images());
  expect_error([&] { ebm::load_idx(labels, "", k2x3); }, {labels, "1 dimensions", "images"});
  expect_error([&] { ebm::load_idx(images, images, k2x3); }, {images, "3 dimensions", "labels"});
}

TEST_F(IdxFiles, AnUnsupportedDataTypeIsAnErrorNamingTheFile) {
  const std::string path = write("float", idx_bytes({1, 1, 1}, {0, 0, 0, 0}, 0x0D));
  expect_error([&] { ebm::load_idx(path, "", k2x3); }, {path, "not supported", "0x00000d03"});
}

TEST_F(IdxFiles, ATruncatedHeaderIsAnErrorNamingTheFile) {
  std::vector<uint8_t> bytes = tiny_images();
  bytes.resize(10);
  const std::string path = write("header", bytes);
  expect_error([&] { ebm::load_idx(path, "", k2x3); }, {path, "truncated", "16 bytes"});
  const std::string tiny = write("tiny", {0, 0});
  expect_error([&] { ebm::load_idx(tiny, "", k2x3); }, {tiny, "not an IDX file"});
}

TEST_F(IdxFiles, TruncatedImageDataIsAnErrorNamingTheFile) {
  std::vector<uint8_t> bytes = tiny_images();
  bytes.pop_back();
  const std::string path = write("short", bytes);
  expect_error([&] { ebm::load_idx(path, "", k2x3); },
               {path, "truncated", "3 images of 2x3", "18 bytes", "17"});
}

TEST_F(IdxFiles, TruncatedLabelDataIsAnErrorNamingTheFile) {
  std::vector<uint8_t> bytes = tiny_labels();
  bytes.pop_back();
  const std::string images = write("img", tiny_images()), labels = write("lab", bytes);
  expect_error([&] { ebm::load_idx(images, labels, k2x3); }, {labels, "truncated", "3 labels"});
}

TEST_F(IdxFiles, BytesAfterTheDataAreAnErrorNamingTheFile) {
  std::vector<uint8_t> bytes = tiny_images();
  bytes.push_back(0);
  const std::string path = write("long", bytes);
  expect_error([&] { ebm::load_idx(path, "", k2x3); }, {path, "1 bytes follow"});
}

TEST_F(IdxFiles, AbsurdDimensionsAreRefusedBeforeAnythingIsAllocated) {
  const std::string huge_side = write("side", idx_bytes({1, 100000, 100000}, {}));
  expect_error([&] { ebm::load_idx(huge_side, "", k2x3); }, {huge_side, "100000x100000"});
  const std::string huge_count = write("count", idx_bytes({0xffffffffu, 28, 28}, {}));
  expect_error([&] { ebm::load_idx(huge_count, "", k2x3); }, {huge_count, "4294967295 images"});
  const std::string none = write("none", idx_bytes({0, 28, 28}, {}));
  expect_error([&] { ebm::load_idx(none, "", k2x3); }, {none, "0 images"});
  // Plausible header, but the data would not fit in memory at this target.
  const std::string many =
      write("many", idx_bytes({1u << 20, 1, 1}, std::vector<uint8_t>(1u << 20)));
  expect_error([&] { ebm::load_idx(many, "", {1, 4096, 4096}); }, {many, "GiB"});
}

TEST_F(IdxFiles, MismatchedImageAndLabelCountsAreAnErrorNamingBothFiles) {
  const std::string images = write("img", tiny_images());
  const std::string labels = write("lab", idx_bytes({2}, {0, 1}));
  expect_error([&] { ebm::load_idx(images, labels, k2x3); },
               {labels, "2 labels", images, "3 images"});
}

TEST_F(IdxFiles, TruncatedOrCorruptGzipIsAnErrorNamingTheFile) {
  std::vector<uint8_t> gz = gzip(tiny_images());
  std::vector<uint8_t> cut(gz.begin(), gz.begin() + long(gz.size() / 2));
  const std::string truncated = write("cut.gz", cut);
  expect_error([&] { ebm::load_idx(truncated, "", k2x3); }, {truncated, "truncated"});
  std::vector<uint8_t> bad = gz;
  for (size_t i = 10; i < bad.size() - 8; ++i) bad[i] ^= 0x5a;  // scramble the deflate stream
  const std::string corrupt = write("bad.gz", bad);
  expect_error([&] { ebm::load_idx(corrupt, "", k2x3); }, {corrupt, "corrupt gzip"});
}

TEST_F(IdxFiles, AMissingFileIsAnErrorNamingIt) {
  const std::string missing = temp_path("does_not_exist");
  expect_error([&] { ebm::load_idx(missing, "", k2x3); }, {missing});
  const std::string images = write("img", tiny_images());
  expect_error([&] { ebm::load_idx(images, missing, k2x3); }, {missing});
}

TEST_F(IdxFiles, AnUnreadablePathIsAnErrorNamingIt) {
  const std::string dir = temp_path("a_folder");
  fs::create_directories(dir);
  expect_error([&] { ebm::load_idx(dir, "", k2x3); }, {dir});
  fs::remove(dir);
}

TEST_F(IdxFiles, OnlyOneChannelTargetsAreAccepted) {
  const std::string images = write("img", tiny_images());
  expect_error([&] { ebm::load_idx(images, "", {3, 2, 3}); }, {images, "one-channel"});
}

// The real file the trainer's MNIST preset uses, when the Debian package is installed.
TEST(FashionMnist, TheTestSetLoadsAsTenThousandImagesPaddedTo32x32InTenBalancedClasses) {
  const std::string dir = EBM_FASHION_MNIST_DIR;
  const std::string images = dir + "/t10k-images-idx3-ubyte.gz";
  if (!fs::exists(images)) GTEST_SKIP() << images << " not installed (dataset-fashion-mnist)";
  const ebm::Dataset d = ebm::load_idx(images, dir + "/t10k-labels-idx1-ubyte.gz", {1, 32, 32});
  ASSERT_EQ(d.size(), 10000);
  ASSERT_EQ(d.label_names.size(), 10u);
  std::vector<int> counts(10);
  for (int l : d.labels) ++counts[size_t(l)];
  EXPECT_EQ(counts, std::vector<int>(10, 1000));
  for (int64_t i = 0; i < d.size(); i += 997) {
    EXPECT_EQ(d.image(i)[0], -1.0f) << "padding is black like the MNIST background";
    EXPECT_EQ(d.image(i)[32 * 32 - 1], -1.0f);
  }
}
