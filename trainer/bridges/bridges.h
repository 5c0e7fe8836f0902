// The bridge dataset (SPEC section 2): elevation drawings of symmetric three-span bridges, eight
// subtypes in four families, drawn with dark lines on a light background at any image size.
//
// Every drawing is laid out in metres (x along the bridge from the left abutment, 0..300; y up
// from the water line) and scaled to fill the image width with a small margin, so 192x48 and
// 512x128 show the same bridge. Each image's proportions are drawn at random within realistic
// ranges from a generator seeded by (seed, subtype, index) alone, so any subset of a dataset, made
// in any order, has the same pixels as the full one.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "ebm/image_io.h"

namespace ebm::bridges {

// The eight subtypes, in dataset order (two per family).
enum class Subtype {
  kBeamGirder,          // constant-section continuous girder on piers
  kBeamVPier,           // rigid frame on V-shaped piers
  kArchDeck,            // deck arch: the arch below the deck, spandrel columns up to it
  kArchThrough,         // through arch: the deck hangs below the arch
  kCableHarp,           // cable-stayed, parallel stays
  kCableFan,            // cable-stayed, stays converging at the tower top
  kSuspensionVertical,  // suspension, vertical hangers
  kSuspensionInclined,  // suspension, inclined (zigzag) hangers
};
constexpr int kSubtypeCount = 8;

const char* subtype_name(Subtype s);  // "beam_girder", ...
const char* family_name(Subtype s);   // "beam", "arch", "cable_stayed", "suspension"
Subtype subtype_at(int index);        // 0..7 in the order above; throws ebm::Error otherwise
int subtype_index(Subtype s);
// The subtype with that name; throws ebm::Error listing the valid names otherwise.
Subtype parse_subtype(const std::string& name);

// Span lengths in metres: 80 + 140 + 80 for beams, 67 + 166 + 67 for the others.
std::array<double, 3> spans(Subtype s);

// The drawing parameters of one image; each is one column of labels.csv, NaN where it does not
// apply to the subtype. Lengths are in metres unless stated.
enum Param {
  kWidthFraction,       // bridge length / image width (the scale)
  kDeckLine,            // deck top's row from the top of the image, as a fraction of its height
  kStroke,              // width factor of cables, stays, hangers and the water line
  kDeckHeight,          // top of deck above water
  kDeckDepth,           // deck (girder) depth
  kPierWidth,           // pier or V-leg width
  kVSpread,             // beam_vpier: half the distance between the V legs at the deck
  kVStem,               // beam_vpier: height of the vertical stem under the V (0 = none)
  kArchRise,            // arch rise, springing to crown (rib axis)
  kArchRib,             // arch rib depth
  kSpringHeight,        // arch springing height above water
  kColumnCount,         // arch_deck: spandrel columns over the main span
  kHangerCount,         // arch_through, suspension: hangers (inclined: hanger pairs) over the
                        // main span
  kTowerHeight,         // tower top above the deck
  kTowerWidth,          // tower width at its base
  kStayCount,           // cable-stayed: stays on each side of each tower
  kStayReachMain,       // cable-stayed: farthest deck anchor from the tower, main-span side
  kStayReachSide,       // cable-stayed: farthest deck anchor from the tower, side-span side
  kTowerAnchorSpacing,  // cable-stayed: vertical spacing of the stay anchors on the tower
  kCableSag,            // suspension: main cable sag at mid-span
  kCableClearance,      // suspension: main cable above the deck top at mid-span
  kParamCount
};
const char* param_name(int p);  // column name, e.g. "deck_height"

struct Drawing {
  Image image;                               // gray, width x height
  std::array<double, kParamCount> params{};  // NaN where not applicable
};

// Draws image `index` of subtype `s` for a dataset seed. Deterministic: the same arguments give
// the same pixels; the drawing uses only correctly rounded IEEE operations (+ - * / sqrt, built
// without fused multiply-add), so other x86-64 or ARM machines should agree too (checked on this
// one only). width and height: 16..4096.
Drawing draw_bridge(Subtype s, uint64_t seed, uint64_t index, int width, int height);

}  // namespace ebm::bridges
