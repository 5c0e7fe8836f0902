// A small RGB rasteriser for the run folder's pictures: anti-aliased lines, filled rectangles,
// text (stb_easy_font's segment font, scaled by whole pixels) and gray images pasted in.
#pragma once

#include <cstdint>
#include <string>

#include "ebm/image_io.h"

namespace ebm::train {

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
};

class Canvas {
 public:
  Canvas(int width, int height, Rgb background);

  int width() const { return img_.width; }
  int height() const { return img_.height; }
  const Image& image() const { return img_; }

  void fill_rect(int x0, int y0, int x1, int y1, Rgb c);  // [x0, x1) x [y0, y1), clipped
  // A segment `width` pixels wide with anti-aliased edges (pixel centres at +0.5).
  void line(double x0, double y0, double x1, double y1, Rgb c, double width = 1.5);
  // Text with its top-left corner at (x, y); `scale` pixels per font unit (glyphs are 7 units
  // tall with descenders to 9). Returns the x just past the text.
  int text(int x, int y, const std::string& s, Rgb c, int scale = 2);
  static int text_width(const std::string& s, int scale = 2);
  static int text_height(int scale = 2) { return 9 * scale; }
  // A gray image (1 channel) at (x, y), each pixel drawn as a scale x scale block.
  void paste_gray(const Image& gray, int x, int y, int scale = 1);
  // Lines and rectangles draw only inside [x0, x1) x [y0, y1) until clip() is called again;
  // clip() with no arguments draws everywhere.
  void clip(int x0, int y0, int x1, int y1);
  void clip() { clip(0, 0, img_.width, img_.height); }

 private:
  void blend(int x, int y, Rgb c, double alpha);
  Image img_;
  int cx0_ = 0, cy0_ = 0, cx1_ = 0, cy1_ = 0;
};

}  // namespace ebm::train
