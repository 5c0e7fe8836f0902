#include "bridges/bridges.h"

#include <algorithm>
#include <cmath>

#include "bridges/sketch.h"
#include "ebm/error.h"

namespace ebm::bridges {

namespace {

struct SubtypeInfo {
  const char* name;
  const char* family;
  void (*draw)(Pcg32&, Elevation&, Params&);
  // Where the deck top sits, as a fraction of the image height from the top (before the small
  // random shift). The deck is the datum every image of a subtype is aligned on, as drawings
  // of one bridge type are; the water line then shows the deck height.
  double deck_row;
};

constexpr SubtypeInfo kSubtypes[kSubtypeCount] = {
    {"beam_girder", "beam", draw_beam_girder, 0.55},
    {"beam_vpier", "beam", draw_beam_vpier, 0.55},
    {"arch_deck", "arch", draw_arch_deck, 0.17},
    {"arch_through", "arch", draw_arch_through, 0.60},
    {"cable_harp", "cable_stayed", draw_cable_harp, 0.635},
    {"cable_fan", "cable_stayed", draw_cable_fan, 0.635},
    {"suspension_vertical", "suspension", draw_suspension_vertical, 0.60},
    {"suspension_inclined", "suspension", draw_suspension_inclined, 0.60},
};

constexpr const char* kParamNames[kParamCount] = {"width_fraction",
                                                  "deck_line",
                                                  "stroke",
                                                  "deck_height",
                                                  "deck_depth",
                                                  "pier_width",
                                                  "v_spread",
                                                  "v_stem",
                                                  "arch_rise",
                                                  "arch_rib",
                                                  "spring_height",
                                                  "column_count",
                                                  "hanger_count",
                                                  "tower_height",
                                                  "tower_width",
                                                  "stay_count",
                                                  "stay_reach_main",
                                                  "stay_reach_side",
                                                  "tower_anchor_spacing",
                                                  "cable_sag",
                                                  "cable_clearance"};

const SubtypeInfo& info(Subtype s) {
  return kSubtypes[subtype_index(s)];
}

// SplitMix64 (Steele, Lea and Flood 2014): spreads (seed, subtype, index) over the PCG state.
uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Image layout, as fractions of the image height: room kept above the highest point and below
// the water line, and the largest random shift of the deck either way.
constexpr double kTopMargin = 0.04, kBottomMargin = 0.04, kMaxShift = 0.012;

}  // namespace

const char* subtype_name(Subtype s) {
  return info(s).name;
}
const char* family_name(Subtype s) {
  return info(s).family;
}

int subtype_index(Subtype s) {
  const int i = static_cast<int>(s);
  if (i < 0 || i >= kSubtypeCount) throw Error("unknown bridge subtype " + std::to_string(i));
  return i;
}

Subtype subtype_at(int index) {
  if (index < 0 || index >= kSubtypeCount)
    throw Error("bridge subtype index " + std::to_string(index) + " is outside 0.." +
                std::to_string(kSubtypeCount - 1));
  return static_cast<Subtype>(index);
}

Subtype parse_subtype(const std::string& name) {
  std::string all;
  for (int i = 0; i < kSubtypeCount; ++i) {
    if (name == kSubtypes[i].name) return subtype_at(i);
    all += std::string(i ? ", " : "") + kSubtypes[i].name;
  }
  throw Error("unknown bridge subtype '" + name + "' (expected one of: " + all + ")");
}

std::array<double, 3> spans(Subtype s) {
  if (std::string(family_name(s)) == "beam") return {80, 140, 80};
  return {67, 166, 67};
}

const char* param_name(int p) {
  if (p < 0 || p >= kParamCount) throw Error("parameter index out of range");
  return kParamNames[p];
}

Drawing draw_bridge(Subtype s, uint64_t seed, uint64_t index, int width, int height) {
  if (width < 16 || height < 16 || width > 4096 || height > 4096)
    throw Error("bridge image size " + std::to_string(width) + "x" + std::to_string(height) +
                " is outside 16..4096");
  const uint64_t sub = uint64_t(subtype_index(s));
  const uint64_t stream = (sub << 40) ^ index;
  Pcg32 rng(splitmix64(seed ^ splitmix64(stream)), stream);

  Drawing d;
  d.params.fill(kNotApplicable);
  Params& p = d.params;
  p[kWidthFraction] = uniform(rng, 0.90, 0.96);
  p[kStroke] = uniform(rng, 0.9, 1.2);
  const double shift = kMaxShift * rng.uniform_pm1();

  Elevation e(p[kStroke]);
  info(s).draw(rng, e, p);

  // Scale to fill the width, unless the bridge would then be too tall for the image (aspects
  // much wider than 4:1); then place the deck at its row, moved only as far as needed to fit.
  const double w = width, h = height;
  const double deck = p[kDeckHeight];
  const double above = e.top() - deck, below = deck + 0.5 * e.thin();  // metres
  double scale = w * p[kWidthFraction] / kLength;                      // pixels per metre
  const double room = (1 - kTopMargin - kBottomMargin) * h;
  if ((above + below) * scale > room) {
    scale = room / (above + below);
    p[kWidthFraction] = scale * kLength / w;
  }
  const double deck_y = std::clamp((info(s).deck_row + shift) * h, kTopMargin * h + above * scale,
                                   (1 - kBottomMargin) * h - below * scale);
  p[kDeckLine] = deck_y / h;
  const double water_y = deck_y + deck * scale;

  auto to_px = [&](Vec2 q) { return Vec2{0.5 * w + (q.x - kMid) * scale, water_y - q.y * scale}; };
  Canvas canvas(width, height);
  canvas.segment({-4, water_y}, {w + 4, water_y}, e.thin() * scale);
  for (const std::vector<Vec2>& solid : e.solids()) {
    std::vector<Vec2> px;
    for (const Vec2& q : solid) px.push_back(to_px(q));
    canvas.convex_polygon(px);
  }
  for (const Elevation::Stroke& st : e.strokes()) {
    std::vector<Vec2> px;
    for (const Vec2& q : st.points) px.push_back(to_px(q));
    canvas.polyline(px, st.width * scale);
  }
  d.image = canvas.to_image();
  return d;
}

}  // namespace ebm::bridges
