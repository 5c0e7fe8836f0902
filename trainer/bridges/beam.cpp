// Beam bridges, spans 80 + 140 + 80 m: a continuous girder on two piers, and a rigid frame whose
// piers split into a V under the deck.
#include "bridges/sketch.h"

namespace ebm::bridges {

namespace {
constexpr double kPierX = 80.0;  // pier axes at 80 and 220 m
}

void draw_beam_girder(Pcg32& rng, Elevation& e, Params& p) {
  // Constant-section girder: depth about span / 30 .. span / 19 of the 140 m main span.
  const double deck_top = p[kDeckHeight] = uniform(rng, 18, 27);
  const double depth = p[kDeckDepth] = uniform(rng, 4.5, 7.5);
  const double pier = p[kPierWidth] = uniform(rng, 4.5, 8.0);
  e.deck(deck_top, depth);
  e.pier_pair(kPierX, 0, deck_top - depth, pier);
  e.abutments(deck_top);
}

void draw_beam_vpier(Pcg32& rng, Elevation& e, Params& p) {
  // The V legs shorten the main span's free length; the stem below the V is optional (0..25%
  // of the clear height). Deck proportions as for the girder.
  const double deck_top = p[kDeckHeight] = uniform(rng, 18, 27);
  const double depth = p[kDeckDepth] = uniform(rng, 4.5, 7.5);
  const double leg = p[kPierWidth] = uniform(rng, 3.2, 5.0);
  const double spread = p[kVSpread] = uniform(rng, 16, 24);
  const double soffit = deck_top - depth;
  const double stem = p[kVStem] = uniform(rng, 0, 0.25) * soffit;
  e.deck(deck_top, depth);
  if (stem > 0.5) e.pier_pair(kPierX, 0, stem + 0.5 * leg, 1.3 * leg);
  const Vec2 foot{kPierX, stem};
  e.stroke_pair({foot, {kPierX - spread, soffit}}, leg);
  e.stroke_pair({foot, {kPierX + spread, soffit}}, leg);
  e.abutments(deck_top);
}

}  // namespace ebm::bridges
