// Cable-stayed bridges, spans 67 + 166 + 67 m: two towers at the main piers carry the deck by
// straight stays, anchored on the deck on both sides of each tower. Harp: the stays on each
// side are parallel, anchored along the upper tower. Fan: they converge at the tower top.
#include "bridges/sketch.h"

namespace ebm::bridges {

namespace {

constexpr double kTowerX = 67.0;

struct Common {
  double deck_top, tower_top;
  int stays;
  double reach_main, reach_side;
};

// Deck, towers and the proportions both kinds share. Tower height above the deck is about
// 1/5 .. 1/4 of the main span.
Common common(Pcg32& rng, Elevation& e, Params& p, int min_stays, int max_stays) {
  Common c{};
  c.deck_top = p[kDeckHeight] = uniform(rng, 12, 22);
  const double depth = p[kDeckDepth] = uniform(rng, 2.4, 3.6);
  const double tower_h = p[kTowerHeight] = uniform(rng, 34, 42);
  const double tower_w = p[kTowerWidth] = uniform(rng, 4.5, 6.5);
  c.stays = uniform_int(rng, min_stays, max_stays);
  p[kStayCount] = c.stays;
  c.reach_main = p[kStayReachMain] = uniform(rng, 66, 79);  // mid-span is 83 m away
  c.reach_side = p[kStayReachSide] = uniform(rng, 52, 62);  // the abutment is 67 m away
  c.tower_top = c.deck_top + tower_h;
  e.deck(c.deck_top, depth);
  e.tower_pair(kTowerX, c.tower_top, tower_w);
  e.abutments(c.deck_top);
  return c;
}

}  // namespace

void draw_cable_harp(Pcg32& rng, Elevation& e, Params& p) {
  const Common c = common(rng, e, p, 5, 8);
  // Anchors at equal spacing from 1.5 m below the tower top down to 35..50% of the tower height
  // above the deck; deck anchors in proportion, so every stay on a side has the same slope. The
  // spacing (4..9 m) is wider than on a real harp (about 2 m) so that each stay stays a separate
  // line at 192x48.
  const double top_anchor = c.tower_top - 1.5;
  const double lowest = c.deck_top + uniform(rng, 0.25, 0.4) * (c.tower_top - c.deck_top);
  const double spacing = p[kTowerAnchorSpacing] = (top_anchor - lowest) / (c.stays - 1);
  for (int i = 0; i < c.stays; ++i) {
    const double y = top_anchor - i * spacing;
    const double frac = (y - c.deck_top) / (top_anchor - c.deck_top);
    e.stroke_pair({{kTowerX, y}, {kTowerX + frac * c.reach_main, c.deck_top}}, e.thin());
    e.stroke_pair({{kTowerX, y}, {kTowerX - frac * c.reach_side, c.deck_top}}, e.thin());
  }
}

void draw_cable_fan(Pcg32& rng, Elevation& e, Params& p) {
  const Common c = common(rng, e, p, 5, 8);
  // All anchors within a couple of metres of the top; deck anchors evenly spaced from near the
  // tower out to the reach.
  const double spacing = p[kTowerAnchorSpacing] = uniform(rng, 0.0, 0.4);
  const double first = 0.16;  // innermost deck anchor as a fraction of the reach
  for (int i = 0; i < c.stays; ++i) {
    const double y = c.tower_top - 1.0 - i * spacing;
    const double frac = first + (1 - first) * (c.stays - 1 - i) / (c.stays - 1);
    e.stroke_pair({{kTowerX, y}, {kTowerX + frac * c.reach_main, c.deck_top}}, e.thin());
    e.stroke_pair({{kTowerX, y}, {kTowerX - frac * c.reach_side, c.deck_top}}, e.thin());
  }
}

}  // namespace ebm::bridges
