#include "plot.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "ebm/error.h"

// stb_easy_font.h defines everything static; it is included in this one file.
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wconversion"
#pragma GCC diagnostic ignored "-Wsign-conversion"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wshadow"
#endif
#include <stb/stb_easy_font.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

namespace ebm::train {

Canvas::Canvas(int width, int height, Rgb bg) : img_(width, height, 3) {
  if (width < 1 || height < 1) throw Error("canvas size must be positive");
  for (size_t i = 0; i < img_.pixels.size(); i += 3) {
    img_.pixels[i] = bg.r;
    img_.pixels[i + 1] = bg.g;
    img_.pixels[i + 2] = bg.b;
  }
  clip();
}

void Canvas::clip(int x0, int y0, int x1, int y1) {
  cx0_ = std::max(x0, 0);
  cy0_ = std::max(y0, 0);
  cx1_ = std::min(x1, img_.width);
  cy1_ = std::min(y1, img_.height);
}

void Canvas::blend(int x, int y, Rgb c, double a) {
  if (x < cx0_ || y < cy0_ || x >= cx1_ || y >= cy1_ || a <= 0) return;
  a = std::min(a, 1.0);
  uint8_t* p = img_.at(x, y);
  const uint8_t src[3] = {c.r, c.g, c.b};
  for (int k = 0; k < 3; ++k) p[k] = uint8_t(std::lround(p[k] + (src[k] - p[k]) * a));
}

void Canvas::fill_rect(int x0, int y0, int x1, int y1, Rgb c) {
  x0 = std::max(x0, cx0_);
  y0 = std::max(y0, cy0_);
  x1 = std::min(x1, cx1_);
  y1 = std::min(y1, cy1_);
  for (int y = y0; y < y1; ++y)
    for (int x = x0; x < x1; ++x) {
      uint8_t* p = img_.at(x, y);
      p[0] = c.r;
      p[1] = c.g;
      p[2] = c.b;
    }
}

void Canvas::line(double x0, double y0, double x1, double y1, Rgb c, double width) {
  if (!std::isfinite(x0) || !std::isfinite(y0) || !std::isfinite(x1) || !std::isfinite(y1)) return;
  const double r = 0.5 * width;
  const int bx0 = int(std::floor(std::min(x0, x1) - r - 1)),
            bx1 = int(std::ceil(std::max(x0, x1) + r + 1));
  const int by0 = int(std::floor(std::min(y0, y1) - r - 1)),
            by1 = int(std::ceil(std::max(y0, y1) + r + 1));
  const double dx = x1 - x0, dy = y1 - y0, len2 = dx * dx + dy * dy;
  for (int y = std::max(by0, 0); y <= std::min(by1, img_.height - 1); ++y)
    for (int x = std::max(bx0, 0); x <= std::min(bx1, img_.width - 1); ++x) {
      // Distance from the pixel centre to the segment; coverage falls off over one pixel.
      const double px = x + 0.5 - x0, py = y + 0.5 - y0;
      const double t = len2 > 0 ? std::clamp((px * dx + py * dy) / len2, 0.0, 1.0) : 0.0;
      const double d = std::hypot(px - t * dx, py - t * dy);
      blend(x, y, c, std::clamp(r + 0.5 - d, 0.0, 1.0));
    }
}

int Canvas::text(int x, int y, const std::string& s, Rgb c, int scale) {
  // A glyph takes up to ~16 quads of 64 bytes; the font truncates silently when short of room.
  std::vector<char> buf(s.size() * 1024 + 64);
  std::string copy = s;
  const int quads = stb_easy_font_print(0, 0, copy.data(), nullptr, buf.data(), int(buf.size()));
  struct Vertex {
    float x, y, z;
    unsigned char color[4];
  };
  const Vertex* v = reinterpret_cast<const Vertex*>(buf.data());
  for (int q = 0; q < quads; ++q) {
    const Vertex* a = v + 4 * q;
    const float qx0 = std::min({a[0].x, a[1].x, a[2].x, a[3].x});
    const float qx1 = std::max({a[0].x, a[1].x, a[2].x, a[3].x});
    const float qy0 = std::min({a[0].y, a[1].y, a[2].y, a[3].y});
    const float qy1 = std::max({a[0].y, a[1].y, a[2].y, a[3].y});
    fill_rect(x + int(std::lround(qx0 * float(scale))), y + int(std::lround(qy0 * float(scale))),
              x + int(std::lround(qx1 * float(scale))), y + int(std::lround(qy1 * float(scale))),
              c);
  }
  return x + text_width(s, scale);
}

int Canvas::text_width(const std::string& s, int scale) {
  std::string copy = s;
  return stb_easy_font_width(copy.data()) * scale;
}

void Canvas::paste_gray(const Image& gray, int x, int y, int scale) {
  if (gray.channels != 1) throw Error("paste_gray needs a one-channel image");
  for (int gy = 0; gy < gray.height; ++gy)
    for (int gx = 0; gx < gray.width; ++gx) {
      const uint8_t v = *gray.at(gx, gy);
      fill_rect(x + gx * scale, y + gy * scale, x + (gx + 1) * scale, y + (gy + 1) * scale,
                {v, v, v});
    }
}

}  // namespace ebm::train
