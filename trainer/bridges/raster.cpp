#include "bridges/raster.h"

#include <algorithm>
#include <cmath>

#include "ebm/error.h"

namespace ebm::bridges {

Canvas::Canvas(int width, int height) : width_(width), height_(height) {
  if (width < 1 || height < 1 || width > 16384 || height > 16384)
    throw Error("canvas size " + std::to_string(width) + "x" + std::to_string(height) +
                " is outside 1..16384");
  ink_.assign(size_t(width) * size_t(height), 0.0f);
}

void Canvas::cover(int x, int y, double coverage) {
  if (coverage <= 0) return;
  float& v = ink_[size_t(y) * size_t(width_) + size_t(x)];
  v = std::max(v, float(std::min(coverage, 1.0)));
}

void Canvas::segment(Vec2 a, Vec2 b, double line_width) {
  const double half = 0.5 * std::max(line_width, 1.0);
  const double fade = std::min(line_width, 1.0);
  const double reach = half + 0.5;  // beyond this distance a pixel gets no ink
  const double dx = b.x - a.x, dy = b.y - a.y;
  const double len2 = dx * dx + dy * dy;
  const int y0 = std::max(0, int(std::floor(std::min(a.y, b.y) - reach)));
  const int y1 = std::min(height_ - 1, int(std::ceil(std::max(a.y, b.y) + reach)));
  const double xmin = std::min(a.x, b.x) - reach, xmax = std::max(a.x, b.x) + reach;
  for (int y = y0; y <= y1; ++y) {
    const double py = y + 0.5;
    // The capsule lies inside the slab of half-width `reach` around the line: on this row that
    // slab spans reach * len / |dy| either side of where the line crosses it.
    double lo = xmin, hi = xmax;
    if (std::abs(dy) > 1e-9) {
      const double xc = a.x + (py - a.y) * dx / dy;
      const double hw = reach * std::sqrt(len2) / std::abs(dy);
      lo = std::max(lo, xc - hw);
      hi = std::min(hi, xc + hw);
    }
    const int x0 = std::max(0, int(std::floor(lo - 0.5)));
    const int x1 = std::min(width_ - 1, int(std::ceil(hi)));
    for (int x = x0; x <= x1; ++x) {
      const double px = x + 0.5;
      double t = len2 > 0 ? ((px - a.x) * dx + (py - a.y) * dy) / len2 : 0.0;
      t = std::clamp(t, 0.0, 1.0);
      const double ex = px - (a.x + t * dx), ey = py - (a.y + t * dy);
      const double dist = std::sqrt(ex * ex + ey * ey);
      cover(x, y, std::clamp(reach - dist, 0.0, 1.0) * fade);
    }
  }
}

void Canvas::polyline(const std::vector<Vec2>& points, double line_width) {
  for (size_t i = 1; i < points.size(); ++i) segment(points[i - 1], points[i], line_width);
  if (points.size() == 1) segment(points[0], points[0], line_width);
}

void Canvas::convex_polygon(const std::vector<Vec2>& points) {
  const size_t n = points.size();
  if (n < 3) return;
  // Signed area decides which side of each edge is inside.
  double area2 = 0;
  for (size_t i = 0; i < n; ++i) {
    const Vec2 &p = points[i], &q = points[(i + 1) % n];
    area2 += p.x * q.y - q.x * p.y;
  }
  if (std::abs(area2) < 1e-12) return;
  const double orient = area2 > 0 ? 1.0 : -1.0;
  struct Edge {
    double nx, ny, c;  // outward unit normal; signed distance = nx * x + ny * y - c
  };
  std::vector<Edge> edges;
  double xmin = points[0].x, xmax = xmin, ymin = points[0].y, ymax = ymin;
  for (size_t i = 0; i < n; ++i) {
    const Vec2 &p = points[i], &q = points[(i + 1) % n];
    xmin = std::min(xmin, p.x), xmax = std::max(xmax, p.x);
    ymin = std::min(ymin, p.y), ymax = std::max(ymax, p.y);
    const double ex = q.x - p.x, ey = q.y - p.y, len = std::sqrt(ex * ex + ey * ey);
    if (len < 1e-12) continue;
    const double nx = orient * ey / len, ny = -orient * ex / len;
    edges.push_back({nx, ny, nx * p.x + ny * p.y});
  }
  const int x0 = std::max(0, int(std::floor(xmin - 1))), x1 = std::min(width_ - 1, int(xmax + 1));
  const int y0 = std::max(0, int(std::floor(ymin - 1))), y1 = std::min(height_ - 1, int(ymax + 1));
  for (int y = y0; y <= y1; ++y)
    for (int x = x0; x <= x1; ++x) {
      // Largest signed distance to the edge lines: the distance to a convex polygon away from
      // its corners, and a slight underestimate of the ramp at them.
      double sd = -1e30;
      for (const Edge& e : edges) sd = std::max(sd, e.nx * (x + 0.5) + e.ny * (y + 0.5) - e.c);
      cover(x, y, std::clamp(0.5 - sd, 0.0, 1.0));
    }
}

Image Canvas::to_image() const {
  Image out(width_, height_, 1);
  for (size_t i = 0; i < ink_.size(); ++i)
    out.pixels[i] = uint8_t(std::lround(255.0f * (1.0f - ink_[i])));
  return out;
}

}  // namespace ebm::bridges
