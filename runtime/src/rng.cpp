// Built with -ffp-contract=off (see runtime/CMakeLists.txt): a fused multiply-add natively but
// not in wasm would change the last bit of the noise and break cross-platform reproducibility.
#include "ebm/rng.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace ebm {

Pcg32::Pcg32(uint64_t seed, uint64_t stream) {
  // pcg32_srandom_r
  inc_ = (stream << 1u) | 1u;
  state_ = 0;
  next_u32();
  state_ += seed;
  next_u32();
}

uint32_t Pcg32::next_u32() {
  const uint64_t old = state_;
  state_ = old * 6364136223846793005ull + inc_;
  const uint32_t xorshifted = uint32_t(((old >> 18u) ^ old) >> 27u);
  const uint32_t rot = uint32_t(old >> 59u);
  return (xorshifted >> rot) | (xorshifted << ((32u - rot) & 31u));
}

float Pcg32::uniform() { return float(next_u32() >> 8) * (1.0f / 16777216.0f); }

float Pcg32::uniform_pm1() { return float(next_u32() >> 8) * (2.0f / 16777216.0f) - 1.0f; }

uint32_t Pcg32::below(uint32_t bound) {
  // Lemire-free classic rejection: threshold = 2^32 mod bound.
  const uint32_t threshold = (0u - bound) % bound;
  for (;;) {
    const uint32_t r = next_u32();
    if (r >= threshold) return r % bound;
  }
}

void Pcg32::fill_uniform_pm1(float* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = uniform_pm1();
}

void Pcg32::fill_smooth_uniform_pm1(float* out, int h, int w, int cell,
                                    std::vector<float>& corners) {
  if (cell <= 1) {
    fill_uniform_pm1(out, size_t(h) * size_t(w));
    return;
  }
  const int gw = (w - 1) / cell + 2;
  corners.resize(size_t((h - 1) / cell + 2) * size_t(gw));
  fill_uniform_pm1(corners.data(), corners.size());
  const float k = float(cell);
  for (int y = 0; y < h; ++y) {
    const float ty = float(y % cell) / k;
    const float* r0 = corners.data() + size_t(y / cell) * size_t(gw);
    const float* r1 = r0 + gw;
    for (int x = 0; x < w; ++x) {
      const float tx = float(x % cell) / k;
      const int j = x / cell;
      const float top = (1.0f - tx) * r0[j] + tx * r0[j + 1];
      const float bottom = (1.0f - tx) * r1[j] + tx * r1[j + 1];
      out[size_t(y) * size_t(w) + size_t(x)] = (1.0f - ty) * top + ty * bottom;
    }
  }
}

namespace {

// ln x for x in (0, 1] (portable_log's arithmetic, without branches, so that a loop over it
// vectorises): x = m * 2^e with m in [sqrt(1/2), sqrt(2)); ln m = 2 atanh(s), s = (m - 1) /
// (m + 1), |s| < 0.172, series to s^9 (next term < 4e-10).
inline float log_of(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  int e = int((u >> 23) & 0xffu) - 127;
  u = (u & 0x7fffffu) | 0x3f800000u;  // m in [1, 2)
  float m;
  std::memcpy(&m, &u, 4);
  const bool high = m > 1.41421356f;
  m = high ? m * 0.5f : m;
  e += high ? 1 : 0;
  const float s = (m - 1.0f) / (m + 1.0f);
  const float s2 = s * s;
  const float poly = 1.0f + s2 * (1.0f / 3 + s2 * (1.0f / 5 + s2 * (1.0f / 7 + s2 * (1.0f / 9))));
  return float(e) * 0.693147180559945f + 2.0f * s * poly;
}

// cos and sin of 2 pi u for u in [0, 1): quadrant q and angle phi = (4u - q) * pi/2 in
// [0, pi/2); Taylor series to phi^11 / phi^12 (truncation below 6e-9); the quadrant's swap and
// signs as selects (negation is exact, so the bits are those of a switch on q).
inline void sincos_2pi_of(float u, float* c, float* s) {
  const float t = u * 4.0f;
  const int q = int(t) & 3;
  const float phi = (t - float(int(t))) * 1.57079632679490f;
  const float p2 = phi * phi;
  const float sn =
      phi * (1.0f - p2 / 6 * (1.0f - p2 / 20 * (1.0f - p2 / 42 * (1.0f - p2 / 72 * (1.0f - p2 / 110)))));
  const float cs =
      1.0f - p2 / 2 * (1.0f - p2 / 12 * (1.0f - p2 / 30 * (1.0f - p2 / 56 * (1.0f - p2 / 90 * (1.0f - p2 / 132)))));
  const bool swap = (q & 1) != 0, neg_c = q == 1 || q == 2, neg_s = q >= 2;
  const float c0 = swap ? sn : cs, s0 = swap ? cs : sn;
  *c = neg_c ? -c0 : c0;
  *s = neg_s ? -s0 : s0;
}

}  // namespace

float portable_log(float x) { return log_of(x); }

void portable_sincos_2pi(float u, float* c, float* s) { sincos_2pi_of(u, c, s); }

void Pcg32::fill_normal(float* out, size_t n) {
  // Box-Muller on pairs: u1 in (0, 1], u2 in [0, 1). The generator is serial, so it fills a block
  // of uniforms first (u1 then u2 for each pair, as one pair at a time would draw them); the
  // transform then runs over the whole block, which the compiler vectorises. An odd n draws its
  // last pair whole and keeps the first value.
  constexpr size_t kPairs = 64;
  float u1[kPairs], u2[kPairs], r[kPairs], c[kPairs], s[kPairs];
  for (size_t i = 0; i < n; i += 2 * kPairs) {
    const size_t pairs = std::min(kPairs, (n - i + 1) / 2);
    for (size_t j = 0; j < pairs; ++j) {
      u1[j] = float((next_u32() >> 8) + 1) * (1.0f / 16777216.0f);
      u2[j] = float(next_u32() >> 8) * (1.0f / 16777216.0f);
    }
    for (size_t j = 0; j < pairs; ++j) {
      r[j] = std::sqrt(-2.0f * log_of(u1[j]));  // sqrt is correctly rounded everywhere
      sincos_2pi_of(u2[j], &c[j], &s[j]);
    }
    float* o = out + i;
    const size_t whole = std::min(pairs, (n - i) / 2);
    for (size_t j = 0; j < whole; ++j) {
      o[2 * j] = r[j] * c[j];
      o[2 * j + 1] = r[j] * s[j];
    }
    if (whole < pairs) o[2 * whole] = r[whole] * c[whole];
  }
}

}  // namespace ebm
