// Suspension bridges, spans 67 + 166 + 67 m: the main cable hangs in a parabola between the
// tower tops, runs over them and down the side spans to anchorages at the bridge ends; hangers
// carry the deck. Vertical: one hanger per cable node. Inclined: hangers alternate in direction
// so that neighbours meet on the deck (a zigzag, as on the Severn Bridge).
#include "bridges/sketch.h"

namespace ebm::bridges {

namespace {

constexpr double kTowerX = 67.0;
constexpr double kHalfSpan = kMid - kTowerX;
constexpr double kAnchorX = -2.5;  // where the cable enters the anchorage

struct Cable {
  double deck_top, saddle, sag, anchor_y, side_sag, spacing;
  int hangers;
  // Height of the cable at x (any x in [kAnchorX, 300 - kAnchorX]).
  double y(double x) const {
    if (x > kMid) x = kLength - x;
    if (x >= kTowerX) {
      const double u = (x - kMid) / kHalfSpan;
      return saddle - sag * (1 - u * u);
    }
    const double t = (x - kAnchorX) / (kTowerX - kAnchorX);
    return anchor_y + (saddle - anchor_y) * t - 4 * side_sag * t * (1 - t);
  }
};

Cable common(Pcg32& rng, Elevation& e, Params& p, int min_hangers, int max_hangers) {
  Cable c{};
  c.deck_top = p[kDeckHeight] = uniform(rng, 13, 22);
  const double depth = p[kDeckDepth] = uniform(rng, 2.5, 4.0);
  c.sag = p[kCableSag] = uniform(rng, 166.0 / 11, 166.0 / 8);  // sag ratio 1/11 .. 1/8
  const double clearance = p[kCableClearance] = uniform(rng, 1.0, 3.0);
  const double tower_w = p[kTowerWidth] = uniform(rng, 4.5, 6.5);
  c.hangers = uniform_int(rng, min_hangers, max_hangers);
  p[kHangerCount] = c.hangers;
  c.spacing = 2 * kHalfSpan / (c.hangers + 1);
  c.saddle = c.deck_top + clearance + c.sag;
  p[kTowerHeight] = c.saddle + 1.5 - c.deck_top;
  c.anchor_y = c.deck_top + 1.0;
  // Same horizontal pull and load per metre as the main span: sag grows with the span squared.
  const double side_span = kTowerX - kAnchorX;
  c.side_sag = c.sag * (side_span * side_span) / (4 * kHalfSpan * kHalfSpan);

  e.deck(c.deck_top, depth);
  e.tower_pair(kTowerX, c.saddle + 1.5, tower_w);
  // Anchorage: a block under the bridge end, its face sloping towards the span.
  e.solid_pair({{-12, 0}, {4, 0}, {1, c.anchor_y + 2.0}, {-12, c.anchor_y + 2.0}});
  const double w = kMainCable * e.stroke();
  e.stroke_pair(curve(kTowerX, kMid, 2.0, [&](double x) { return c.y(x); }), w);
  e.stroke_pair(curve(kAnchorX, kTowerX, 2.0, [&](double x) { return c.y(x); }), w);
  return c;
}

// Hanger nodes every `spacing` metres from the tower, both ways, while the cable is well above
// the deck: main-span nodes at 67 + k * spacing, side-span nodes at 67 - k * spacing.
std::vector<double> left_nodes(const Cable& c) {
  std::vector<double> xs;
  for (int k = 1; 2 * k <= c.hangers + 1; ++k)
    xs.push_back(2 * k == c.hangers + 1 ? kMid : kTowerX + k * c.spacing);
  for (double x = kTowerX - c.spacing; x > 4; x -= c.spacing)
    if (c.y(x) - c.deck_top > 1.5) xs.push_back(x);
  return xs;
}

}  // namespace

void draw_suspension_vertical(Pcg32& rng, Elevation& e, Params& p) {
  const Cable c = common(rng, e, p, 8, 12);
  for (double x : left_nodes(c)) {
    const std::vector<Vec2> hanger{{x, c.deck_top}, {x, c.y(x)}};
    if (x == kMid)
      e.stroke_line(hanger, e.thin());
    else
      e.stroke_pair(hanger, e.thin());
  }
}

void draw_suspension_inclined(Pcg32& rng, Elevation& e, Params& p) {
  const Cable c = common(rng, e, p, 12, 17);
  // Each cable node sends one hanger to the deck half a spacing to either side.
  const double h = 0.5 * c.spacing;
  for (double x : left_nodes(c)) {
    const Vec2 node{x, c.y(x)};
    const std::vector<Vec2> zig{{x - h, c.deck_top}, node, {x + h, c.deck_top}};
    if (x == kMid)
      e.stroke_line(zig, e.thin());
    else
      e.stroke_pair(zig, e.thin());
  }
}

}  // namespace ebm::bridges
