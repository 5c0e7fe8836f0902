// Arch bridges, spans 67 + 166 + 67 m: the main span is a parabolic arch springing at the two
// main piers; the side spans are girders from the piers to the abutments.
#include "bridges/sketch.h"

namespace ebm::bridges {

namespace {

constexpr double kPierX = 67.0;
constexpr double kHalfSpan = kMid - kPierX;  // 83 m

// Rib axis height at x for an arch springing at (67, spring) and (233, spring).
double arch_y(double x, double spring, double rise) {
  const double u = (x - kMid) / kHalfSpan;
  return spring + rise * (1 - u * u);
}

std::vector<Vec2> left_half_arch(double spring, double rise) {
  return curve(kPierX, kMid, 2.0, [&](double x) { return arch_y(x, spring, rise); });
}

}  // namespace

void draw_arch_deck(Pcg32& rng, Elevation& e, Params& p) {
  // Rise 1/6 .. 1/4 of the span; the deck rests on spandrel columns standing on the rib.
  const double spring = p[kSpringHeight] = uniform(rng, 2, 10);
  const double rise = p[kArchRise] = uniform(rng, 28, 41);
  const double rib = p[kArchRib] = uniform(rng, 2.6, 4.2);
  const double depth = p[kDeckDepth] = uniform(rng, 2.5, 3.8);
  const double pier = p[kPierWidth] = uniform(rng, 4.5, 7.0);
  const int columns = uniform_int(rng, 5, 11);
  p[kColumnCount] = columns;
  const double crown_gap = 0.8;  // deck soffit above the rib's top at the crown
  const double soffit = spring + rise + 0.5 * rib + crown_gap;
  const double deck_top = p[kDeckHeight] = soffit + depth;

  e.deck(deck_top, depth);
  e.stroke_pair(left_half_arch(spring, rise), rib);
  e.pier_pair(kPierX, 0, soffit, pier);
  const double spacing = 2 * kHalfSpan / (columns + 1);
  const double col_width = std::max(1.4 * e.thin(), 0.5 * rib);
  for (int k = 1; 2 * k <= columns + 1; ++k) {
    const double x = kPierX + k * spacing;
    const double foot = arch_y(x, spring, rise);
    if (soffit - foot < 0.5 * rib + 0.5) continue;  // the rib already touches the deck
    const std::vector<Vec2> col{{x, foot}, {x, soffit}};
    if (2 * k == columns + 1)
      e.stroke_line(col, col_width);  // on the axis: its own mirror image
    else
      e.stroke_pair(col, col_width);
  }
  e.abutments(deck_top);
}

void draw_arch_through(Pcg32& rng, Elevation& e, Params& p) {
  // The rib springs from the main piers at or a little below the deck and rises 1/5.5 .. 1/4
  // of the span above it; vertical hangers carry the deck.
  const double deck_top = p[kDeckHeight] = uniform(rng, 13, 22);
  const double depth = p[kDeckDepth] = uniform(rng, 2.5, 3.8);
  const double soffit = deck_top - depth;
  const double spring = p[kSpringHeight] = soffit - uniform(rng, 0, 6);
  const double rise = p[kArchRise] = uniform(rng, 30, 41);
  const double rib = p[kArchRib] = uniform(rng, 2.6, 4.0);
  const double pier = p[kPierWidth] = uniform(rng, 4.5, 7.0);
  const int hangers = uniform_int(rng, 7, 13);
  p[kHangerCount] = hangers;

  e.deck(deck_top, depth);
  e.stroke_pair(left_half_arch(spring, rise), rib);
  e.pier_pair(kPierX, 0, std::min(spring, soffit), pier);
  const double spacing = 2 * kHalfSpan / (hangers + 1);
  for (int k = 1; 2 * k <= hangers + 1; ++k) {
    const double x = kPierX + k * spacing;
    const double top = arch_y(x, spring, rise) - 0.5 * rib;
    if (top - deck_top < 1.0) continue;  // the rib is below or at the deck here
    const std::vector<Vec2> hanger{{x, deck_top}, {x, top}};
    if (2 * k == hangers + 1)
      e.stroke_line(hanger, e.thin());
    else
      e.stroke_pair(hanger, e.thin());
  }
  e.abutments(deck_top);
}

}  // namespace ebm::bridges
