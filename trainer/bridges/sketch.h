// Internal to the generator: a bridge elevation in metres (x along the bridge from the left
// abutment, y up from the water line), built from strokes and solids by the family files and
// then laid out and rasterised onto an image by bridges.cpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "bridges/bridges.h"
#include "bridges/raster.h"
#include "ebm/rng.h"

namespace ebm::bridges {

constexpr double kLength = 300.0;     // both span sets add up to 300 m
constexpr double kMid = kLength / 2;  // the axis of symmetry
constexpr double kThinLine = 2.0;     // stays, hangers, water line (m, times the stroke)
constexpr double kMainCable = 2.8;    // suspension main cable (m, times the stroke)
constexpr double kNotApplicable = std::numeric_limits<double>::quiet_NaN();

// Uniform in [lo, hi) and in {lo, ..., hi}: the only ways the families draw random numbers.
inline double uniform(Pcg32& rng, double lo, double hi) {
  return lo + (hi - lo) * rng.uniform();
}
inline int uniform_int(Pcg32& rng, int lo, int hi) {
  return lo + int(rng.below(uint32_t(hi - lo + 1)));
}

inline Vec2 mirror(Vec2 p) {
  return {kLength - p.x, p.y};
}

class Elevation {
 public:
  explicit Elevation(double stroke) : stroke_(stroke) {}

  double stroke() const { return stroke_; }
  double thin() const { return kThinLine * stroke_; }

  // Shapes drawn as given: use these for shapes that straddle the axis (the deck).
  void stroke_line(std::vector<Vec2> points, double width);
  void solid(std::vector<Vec2> convex);
  // A shape on the left half and its mirror image about mid-span.
  void stroke_pair(const std::vector<Vec2>& points, double width);
  void solid_pair(const std::vector<Vec2>& convex);

  // Common members.
  void deck(double top, double depth);                                // the full length, 0..300
  void pier_pair(double x, double bottom, double top, double width);  // battered 1:40 below
  void abutments(double top);
  void tower_pair(double x, double top, double base_width);  // from the water up, tapering

  // Highest point reached by any shape, half line widths included (m).
  double top() const { return top_; }

  struct Stroke {
    std::vector<Vec2> points;
    double width;
  };
  const std::vector<Stroke>& strokes() const { return strokes_; }
  const std::vector<std::vector<Vec2>>& solids() const { return solids_; }

 private:
  double stroke_;
  double top_ = 0;
  std::vector<Stroke> strokes_;
  std::vector<std::vector<Vec2>> solids_;
};

using Params = std::array<double, kParamCount>;

// One function per subtype: draws the random proportions, records each in params (which must
// include kDeckHeight: the layout aligns images on the deck) and adds the shapes.
void draw_beam_girder(Pcg32& rng, Elevation& e, Params& p);
void draw_beam_vpier(Pcg32& rng, Elevation& e, Params& p);
void draw_arch_deck(Pcg32& rng, Elevation& e, Params& p);
void draw_arch_through(Pcg32& rng, Elevation& e, Params& p);
void draw_cable_harp(Pcg32& rng, Elevation& e, Params& p);
void draw_cable_fan(Pcg32& rng, Elevation& e, Params& p);
void draw_suspension_vertical(Pcg32& rng, Elevation& e, Params& p);
void draw_suspension_inclined(Pcg32& rng, Elevation& e, Params& p);

// Points along y = f(x) for x from x0 to x1 (either order), about every `step` metres.
template <typename F>
std::vector<Vec2> curve(double x0, double x1, double step, F f) {
  const int n = std::max(2, int(std::ceil(std::abs(x1 - x0) / step)));
  std::vector<Vec2> pts;
  for (int i = 0; i <= n; ++i) {
    const double x = x0 + (x1 - x0) * i / n;
    pts.push_back({x, f(x)});
  }
  return pts;
}

}  // namespace ebm::bridges
