#include "ebm/image_io.h"

#include <stb_image.h>
#include <stb_image_write.h>

#include <algorithm>
#include <cmath>

#include "ebm/error.h"
#include "ebm/fileio.h"

namespace ebm {

namespace {

// stb_image trusts a PNG's chunk lengths: it grows its buffer to the sum of the IDAT lengths
// before reading them, so 100 bytes declaring a 2 GB chunk cost 2 GB (found by fuzz_image).
// Every chunk up to IEND must fit in the bytes that are there.
void check_png_chunks(const uint8_t* bytes, size_t size, const std::string& name) {
  static const uint8_t kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (size < 8 || !std::equal(kSignature, kSignature + 8, bytes)) return;
  for (size_t pos = 8; pos + 8 <= size;) {
    const uint64_t length = uint64_t(bytes[pos]) << 24 | uint64_t(bytes[pos + 1]) << 16 |
                            uint64_t(bytes[pos + 2]) << 8 | uint64_t(bytes[pos + 3]);
    const std::string type(reinterpret_cast<const char*>(bytes + pos + 4), 4);
    if (length + 12 > size - pos)
      throw Error("image '" + name + "' is a truncated or corrupt PNG: its " + type +
                  " chunk at byte " + std::to_string(pos) + " declares " + std::to_string(length) +
                  " bytes, but only " + std::to_string(size - pos) + " remain");
    if (type == "IEND") return;
    pos += 12 + length;
  }
}

}  // namespace

Image decode_gray_image(const uint8_t* bytes, size_t size, const std::string& name) {
  if (size == 0) throw Error("image '" + name + "' is empty");
  if (size > size_t(1) << 30) throw Error("image '" + name + "' is larger than 1 GiB");
  int w = 0, h = 0, c = 0;
  if (!stbi_info_from_memory(bytes, int(size), &w, &h, &c))
    throw Error("image '" + name + "' cannot be decoded: " + stbi_failure_reason() +
                " (supported: PNG, JPEG, BMP, GIF, TGA, PNM)");
  if (w < 1 || h < 1 || w > kMaxImageSide || h > kMaxImageSide ||
      int64_t(w) * h > kMaxImagePixels)
    throw Error("image '" + name + "' is " + std::to_string(w) + "x" + std::to_string(h) +
                " pixels: over the supported size (at most " + std::to_string(kMaxImageSide) +
                " a side and " + std::to_string(kMaxImagePixels) +
                " in all); scale it down first");
  check_png_chunks(bytes, size, name);
  unsigned char* data = stbi_load_from_memory(bytes, int(size), &w, &h, &c, 0);
  if (!data) throw Error("image '" + name + "' cannot be decoded: " + stbi_failure_reason());
  Image out(w, h, 1);
  for (size_t i = 0; i < size_t(w) * size_t(h); ++i) {
    const unsigned char* p = data + i * size_t(c);
    float v;
    float alpha = 1.0f;
    if (c <= 2) {
      v = p[0];
      if (c == 2) alpha = p[1] / 255.0f;
    } else {
      v = 0.299f * p[0] + 0.587f * p[1] + 0.114f * p[2];
      if (c == 4) alpha = p[3] / 255.0f;
    }
    v = v * alpha + 255.0f * (1.0f - alpha);
    out.pixels[i] = uint8_t(std::clamp(std::lround(v), 0l, 255l));
  }
  stbi_image_free(data);
  return out;
}

Image read_gray_image(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file(path, uint64_t(1) << 30);
  return decode_gray_image(bytes.data(), bytes.size(), path);
}

std::vector<uint8_t> encode_png(const Image& img) {
  if (img.width < 1 || img.height < 1 || img.channels < 1 || img.channels > 4 ||
      img.pixels.size() != size_t(img.width) * img.height * img.channels)
    throw Error("cannot encode a " + std::to_string(img.width) + "x" + std::to_string(img.height) +
                "x" + std::to_string(img.channels) + " image holding " +
                std::to_string(img.pixels.size()) + " bytes as PNG");
  std::vector<uint8_t> out;
  stbi_write_png_to_func(
      [](void* ctx, void* data, int size) {
        auto* v = static_cast<std::vector<uint8_t>*>(ctx);
        v->insert(v->end(), static_cast<uint8_t*>(data), static_cast<uint8_t*>(data) + size);
      },
      &out, img.width, img.height, img.channels, img.pixels.data(), img.width * img.channels);
  if (out.empty()) throw Error("PNG encoding failed");
  return out;
}

void write_png(const std::string& path, const Image& img) { write_file_atomic(path, encode_png(img)); }

namespace {

// Weights of source pixels for each destination pixel along one axis.
struct Tap {
  int index;
  float weight;
};

std::vector<std::vector<Tap>> axis_taps(int src, int dst) {
  std::vector<std::vector<Tap>> taps(static_cast<size_t>(dst));
  const double scale = double(src) / dst;
  for (int d = 0; d < dst; ++d) {
    if (dst <= src) {  // area: average the source span [d*scale, (d+1)*scale)
      const double lo = d * scale, hi = (d + 1) * scale;
      for (int s = int(std::floor(lo)); s < int(std::ceil(hi)) && s < src; ++s) {
        const double w = std::min(hi, double(s + 1)) - std::max(lo, double(s));
        if (w > 1e-9) taps[size_t(d)].push_back({s, float(w / scale)});
      }
    } else {  // bilinear at pixel centres
      const double x = std::clamp((d + 0.5) * scale - 0.5, 0.0, double(src - 1));
      const int s0 = int(std::floor(x));
      const int s1 = std::min(s0 + 1, src - 1);
      const float f = float(x - s0);
      taps[size_t(d)].push_back({s0, 1.0f - f});
      if (s1 != s0) taps[size_t(d)].push_back({s1, f});
    }
  }
  return taps;
}

}  // namespace

Image resize_gray(const Image& img, int width, int height) {
  if (img.channels != 1) throw Error("resize_gray needs a one-channel image");
  if (width < 1 || height < 1) throw Error("resize target must be at least 1x1");
  if (width == img.width && height == img.height) return img;
  const auto tx = axis_taps(img.width, width), ty = axis_taps(img.height, height);
  std::vector<float> rows(size_t(img.height) * width);  // horizontal pass
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < width; ++x) {
      float acc = 0;
      for (const Tap& t : tx[size_t(x)]) acc += t.weight * img.pixels[size_t(y) * img.width + t.index];
      rows[size_t(y) * width + x] = acc;
    }
  Image out(width, height, 1);
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x) {
      float acc = 0;
      for (const Tap& t : ty[size_t(y)]) acc += t.weight * rows[size_t(t.index) * width + x];
      out.pixels[size_t(y) * width + x] = uint8_t(std::clamp(std::lround(acc), 0l, 255l));
    }
  return out;
}

uint8_t unit_to_pixel(float x) {
  if (!(x == x)) return 0;  // NaN
  return uint8_t(std::clamp(std::lround(x * 127.5f + 127.5f), 0l, 255l));
}

std::vector<float> image_to_unit(const Image& gray) {
  if (gray.channels != 1) throw Error("image_to_unit needs a one-channel image");
  std::vector<float> out(gray.pixels.size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = pixel_to_unit(gray.pixels[i]);
  return out;
}

Image unit_to_image(const float* x, int width, int height) {
  Image out(width, height, 1);
  for (size_t i = 0; i < out.pixels.size(); ++i) out.pixels[i] = unit_to_pixel(x[i]);
  return out;
}

Image make_grid(const float* images, int n, int height, int width, int cols, int pad,
                uint8_t background) {
  if (n < 1 || cols < 1) throw Error("make_grid needs at least one image and one column");
  cols = std::min(cols, n);
  const int rows = (n + cols - 1) / cols;
  Image out(pad + cols * (width + pad), pad + rows * (height + pad), 1, background);
  for (int i = 0; i < n; ++i) {
    const int ox = pad + (i % cols) * (width + pad), oy = pad + (i / cols) * (height + pad);
    const float* src = images + size_t(i) * height * width;
    for (int y = 0; y < height; ++y)
      for (int x = 0; x < width; ++x)
        *out.at(ox + x, oy + y) = unit_to_pixel(src[size_t(y) * width + x]);
  }
  return out;
}

}  // namespace ebm
