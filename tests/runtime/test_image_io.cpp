#include <gtest/gtest.h>

#include <stb_image_write.h>

#include "ebm/error.h"
#include "ebm/fileio.h"
#include "ebm/image_io.h"
#include "test_util.h"

namespace ebm {
namespace {

using test::expect_error;

TEST(ImageIo, GrayPngRoundTripsExactly) {
  Image img(7, 5, 1);
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = uint8_t(i * 37 % 256);
  const std::vector<uint8_t> png = encode_png(img);
  const Image back = decode_gray_image(png.data(), png.size(), "mem");
  EXPECT_EQ(back.width, 7);
  EXPECT_EQ(back.height, 5);
  EXPECT_EQ(back.pixels, img.pixels);
  EXPECT_EQ(encode_png(img), png) << "the same image must give the same bytes";
}

TEST(ImageIo, ColourBecomesLumaAndAlphaIsCompositedOverWhite) {
  Image rgba(3, 1, 4);
  const uint8_t px[] = {255, 0, 0, 255, /**/ 0, 0, 255, 255, /**/ 0, 0, 0, 0};
  std::copy(std::begin(px), std::end(px), rgba.pixels.begin());
  const std::vector<uint8_t> png = encode_png(rgba);
  const Image g = decode_gray_image(png.data(), png.size(), "mem");
  EXPECT_EQ(g.channels, 1);
  EXPECT_EQ(g.pixels[0], 76);   // 0.299 * 255
  EXPECT_EQ(g.pixels[1], 29);   // 0.114 * 255
  EXPECT_EQ(g.pixels[2], 255);  // fully transparent -> white
}

TEST(ImageIo, ReadsJpeg) {
  Image img(16, 8, 3, 200);
  const std::string path = test::temp_path("img.jpg");
  ASSERT_TRUE(stbi_write_jpg(path.c_str(), 16, 8, 3, img.pixels.data(), 95));
  const Image g = read_gray_image(path);
  EXPECT_EQ(g.width, 16);
  EXPECT_NEAR(g.pixels[40], 200, 3);
}

TEST(ImageIo, ResizeAveragesAreasAndInterpolatesUp) {
  Image img(4, 2, 1);
  img.pixels = {0, 100, 200, 40, 0, 100, 200, 40};
  const Image half = resize_gray(img, 2, 1);
  EXPECT_EQ(half.pixels, (std::vector<uint8_t>{50, 120}));
  Image flat(3, 3, 1, 90);
  const Image up = resize_gray(flat, 10, 7);
  for (uint8_t v : up.pixels) EXPECT_EQ(v, 90);
  const Image odd = resize_gray(img, 3, 2);  // 4 -> 3: spans of 4/3 source pixels
  EXPECT_EQ(odd.pixels[0], 25);              // (0 * 1 + 100 * 1/3) / (4/3)
}

TEST(ImageIo, UnitConversionMapsTheEndsAndMidpoint) {
  EXPECT_EQ(pixel_to_unit(0), -1.0f);
  EXPECT_EQ(pixel_to_unit(255), 1.0f);
  EXPECT_EQ(unit_to_pixel(-1.0f), 0);
  EXPECT_EQ(unit_to_pixel(1.0f), 255);
  EXPECT_EQ(unit_to_pixel(7.0f), 255);
  for (int v = 0; v < 256; ++v) EXPECT_EQ(unit_to_pixel(pixel_to_unit(uint8_t(v))), v);
}

TEST(ImageIo, GridPlacesImagesRowByRow) {
  std::vector<float> imgs(3 * 2 * 2);
  for (int i = 0; i < 3; ++i)
    for (int k = 0; k < 4; ++k) imgs[size_t(i * 4 + k)] = i == 1 ? 1.0f : -1.0f;
  const Image g = make_grid(imgs.data(), 3, 2, 2, 2, 1, 128);
  EXPECT_EQ(g.width, 1 + 2 * 3);
  EXPECT_EQ(g.height, 1 + 2 * 3);
  EXPECT_EQ(*g.at(0, 0), 128);  // border
  EXPECT_EQ(*g.at(1, 1), 0);    // image 0
  EXPECT_EQ(*g.at(4, 1), 255);  // image 1, second column
  EXPECT_EQ(*g.at(1, 4), 0);    // image 2, second row
  EXPECT_EQ(*g.at(4, 4), 128);  // empty cell
}

TEST(ImageIoRejects, MissingCorruptAndEmptyFilesNamingThem) {
  expect_error([] { read_gray_image("/nonexistent/x.png"); }, {"/nonexistent/x.png"});
  const std::string bad = test::temp_path("not_an_image.png");
  write_file_atomic(bad, std::string("this is not a png"));
  expect_error([&] { read_gray_image(bad); }, {bad, "cannot be decoded"});
  const std::string empty = test::temp_path("empty.png");
  write_file_atomic(empty, std::string());
  expect_error([&] { read_gray_image(empty); }, {empty, "empty"});
  // A PNG cut in half.
  Image img(32, 32, 1, 7);
  std::vector<uint8_t> png = encode_png(img);
  png.resize(png.size() / 2);
  expect_error([&] { decode_gray_image(png.data(), png.size(), "half.png"); }, {"half.png"});
}

TEST(ImageIoRejects, ImagesClaimingMorePixelsThanTheLimitBeforeDecodingThem) {
  // Found by fuzz_image: 26 bytes of GIF claiming 1284x12292 pixels took 0.55 s and 80 MB to
  // decode natively (20 s under ASan) before the size limit was checked per side.
  const std::vector<uint8_t> gif = {0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x04, 0x05, 0x04,
                                    0x30, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
                                    0x01, 0x00, 0x01, 0x00, 0xa6, 0x70, 0x3b, 0x2a};
  expect_error([&] { decode_gray_image(gif.data(), gif.size(), "bomb.gif"); },
               {"bomb.gif", "1284x12292", "at most 8192 a side"});
  // Within each side but over the total: a PNM header alone.
  const std::string pnm = "P5\n4097 4097\n255\n";
  expect_error([&] {
    decode_gray_image(reinterpret_cast<const uint8_t*>(pnm.data()), pnm.size(), "big.pgm");
  },
               {"big.pgm", "4097x4097", "16777216 in all"});
}

TEST(ImageIoRejects, APngChunkLongerThanTheFileBeforeDecodingIt) {
  // Found by fuzz_image: a 2x8 PNG whose IDAT chunk declares about 2 GB made stb_image allocate
  // that much before reading it. The chunk walk refuses it by name and position.
  Image img(2, 8, 1);
  std::vector<uint8_t> png = encode_png(img);
  const size_t idat = 8 + 12 + 13;  // signature, then the IHDR chunk (13 bytes of data)
  ASSERT_EQ(std::string(png.begin() + long(idat) + 4, png.begin() + long(idat) + 8), "IDAT");
  png[idat] = 0x7f;
  png[idat + 1] = 0xff;
  expect_error([&] { decode_gray_image(png.data(), png.size(), "huge-chunk.png"); },
               {"huge-chunk.png", "IDAT chunk at byte 33", "declares 2147"});
  // The untouched file still decodes.
  const std::vector<uint8_t> ok = encode_png(img);
  EXPECT_EQ(decode_gray_image(ok.data(), ok.size(), "ok.png").width, 2);
}

TEST(FileIo, AtomicWriteReplacesAndLeavesNoTemporaryFile) {
  const std::string path = test::temp_path("atomic.txt");
  write_file_atomic(path, std::string("first"));
  write_file_atomic(path, std::string("second"));
  const std::vector<uint8_t> got = read_file(path);
  EXPECT_EQ(std::string(got.begin(), got.end()), "second");
  expect_error([] { write_file_atomic("/nonexistent/dir/f.txt", std::string("x")); },
               {"/nonexistent/dir/f.txt"});
}

}  // namespace
}  // namespace ebm
