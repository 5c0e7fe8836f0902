#include "bridges/sketch.h"

#include <algorithm>

namespace ebm::bridges {

void Elevation::stroke_line(std::vector<Vec2> points, double width) {
  for (const Vec2& p : points) top_ = std::max(top_, p.y + 0.5 * width);
  strokes_.push_back({std::move(points), width});
}

void Elevation::solid(std::vector<Vec2> convex) {
  for (const Vec2& p : convex) top_ = std::max(top_, p.y);
  solids_.push_back(std::move(convex));
}

void Elevation::stroke_pair(const std::vector<Vec2>& points, double width) {
  std::vector<Vec2> m;
  for (const Vec2& p : points) m.push_back(mirror(p));
  stroke_line(points, width);
  stroke_line(std::move(m), width);
}

void Elevation::solid_pair(const std::vector<Vec2>& convex) {
  std::vector<Vec2> m;
  for (const Vec2& p : convex) m.push_back(mirror(p));
  solid(convex);
  solid(std::move(m));
}

void Elevation::deck(double top, double depth) {
  solid({{0, top - depth}, {kLength, top - depth}, {kLength, top}, {0, top}});
}

void Elevation::pier_pair(double x, double bottom, double top, double width) {
  const double batter = (top - bottom) / 40;  // each face leans out 1 in 40 going down
  const double h = 0.5 * width;
  solid_pair({{x - h - batter, bottom}, {x + h + batter, bottom}, {x + h, top}, {x - h, top}});
}

void Elevation::abutments(double top) {
  // A wall under the deck end with its back face stepping out into the bank.
  solid_pair({{-5.0, 0}, {1.5, 0}, {1.5, top}, {-3.0, top}});
}

void Elevation::tower_pair(double x, double top, double base_width) {
  const double b = 0.5 * base_width, t = 0.3 * base_width;  // top is 60% of the base
  solid_pair({{x - b, 0}, {x + b, 0}, {x + t, top}, {x - t, top}});
}

}  // namespace ebm::bridges
