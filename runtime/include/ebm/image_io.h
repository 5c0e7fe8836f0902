// The one image reader/writer (stb_image, stb_image_write) and the conversions between pixels
// and model inputs, shared by every native program. Native only: the page draws on canvases.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ebm {

// 8-bit image, row-major, channels interleaved (1 = gray, 3 = RGB, 4 = RGBA).
struct Image {
  int width = 0, height = 0, channels = 1;
  std::vector<uint8_t> pixels;

  Image() = default;
  Image(int w, int h, int c, uint8_t fill = 0)
      : width(w), height(h), channels(c), pixels(size_t(w) * size_t(h) * size_t(c), fill) {}
  uint8_t* at(int x, int y) { return pixels.data() + (size_t(y) * width + x) * channels; }
  const uint8_t* at(int x, int y) const { return pixels.data() + (size_t(y) * width + x) * channels; }
};

// Decodes PNG, JPEG, BMP, GIF (first frame), TGA or PNM and converts to one gray channel: luma
// 0.299 R + 0.587 G + 0.114 B, alpha composited over white. Errors name the file and the reason.
// Images are at most kMaxImageSide pixels a side and kMaxImagePixels in all, checked from the
// header before decoding: a 26-byte GIF can claim 1284x12292 pixels, and decoding it costs
// 80 MB and most of a second (found by tests/fuzz/fuzz_image).
constexpr int kMaxImageSide = 8192;
constexpr int64_t kMaxImagePixels = int64_t(1) << 24;  // 16.8 megapixels
Image read_gray_image(const std::string& path);
Image decode_gray_image(const uint8_t* bytes, size_t size, const std::string& name);

// PNG bytes for an image; the same image always gives the same bytes.
std::vector<uint8_t> encode_png(const Image& img);
void write_png(const std::string& path, const Image& img);  // atomic (temp file, then rename)

// Resizes a gray image: area averaging when shrinking an axis, bilinear when enlarging it.
Image resize_gray(const Image& img, int width, int height);

// Model inputs live in [-1, 1]: v -> (v - 127.5) / 127.5, and back (rounded, clamped).
inline float pixel_to_unit(uint8_t v) { return (float(v) - 127.5f) / 127.5f; }
uint8_t unit_to_pixel(float x);
std::vector<float> image_to_unit(const Image& gray);                 // [h * w]
Image unit_to_image(const float* x, int width, int height);          // gray

// Tiles n gray images [n, h, w] (values in [-1, 1]) into `cols` columns with `pad` pixels
// between them and around the edge, on a background of `background`.
Image make_grid(const float* images, int n, int height, int width, int cols, int pad = 2,
                uint8_t background = 96);

}  // namespace ebm
