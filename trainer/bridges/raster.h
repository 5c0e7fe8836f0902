// A small anti-aliased rasteriser for line drawings: round-capped thick segments and convex
// polygons in continuous pixel coordinates, each pixel's ink being the largest coverage of any
// shape over it. Coverage comes from the distance of the pixel centre to the shape's edge (a
// one-pixel linear ramp), so a shape drawn at any size or offset keeps the same look.
#pragma once

#include <vector>

#include "ebm/image_io.h"

namespace ebm::bridges {

struct Vec2 {
  double x = 0, y = 0;
};

// Pixel (i, j) covers [i, i+1) x [j, j+1) with its centre at (i + 0.5, j + 0.5); y points down.
class Canvas {
 public:
  Canvas(int width, int height);

  int width() const { return width_; }
  int height() const { return height_; }

  // A segment of the given width (pixels) with round caps. Lines thinner than one pixel fade in
  // proportion to their width instead of vanishing.
  void segment(Vec2 a, Vec2 b, double line_width);
  void polyline(const std::vector<Vec2>& points, double line_width);
  // A filled convex polygon, vertices in either winding order.
  void convex_polygon(const std::vector<Vec2>& points);

  // Ink in [0, 1], row-major [height * width].
  const std::vector<float>& ink() const { return ink_; }
  // Dark ink on a light background: ink 0 -> 255 (white), ink 1 -> 0 (black).
  Image to_image() const;

 private:
  void cover(int x, int y, double coverage);
  int width_, height_;
  std::vector<float> ink_;
};

}  // namespace ebm::bridges
