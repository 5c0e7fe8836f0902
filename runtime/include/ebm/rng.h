// The project's one random number generator: PCG32 (O'Neill, pcg-random.org, XSH-RR 64/32) with
// Box-Muller normals computed by our own float polynomials, so a seed gives bit-identical numbers
// natively and in WebAssembly (no libm calls, no FMA contraction: see rng.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace ebm {

class Pcg32 {
 public:
  // `stream` selects one of 2^63 independent sequences; the sampler uses one per chain.
  explicit Pcg32(uint64_t seed = 0x853c49e6748fea9bull, uint64_t stream = 0xda3e39cb94b95bdbull);

  uint32_t next_u32();
  float uniform();                 // [0, 1), 24 random bits
  float uniform_pm1();             // [-1, 1)
  uint32_t below(uint32_t bound);  // uniform in [0, bound), unbiased

  void fill_uniform_pm1(float* out, size_t n);
  // An h x w image of uniform noise in [-1, 1) smoothed over cell x cell pixels: uniform values at
  // the corners of the cells (pixel (y, x) lies in cell (y / cell, x / cell)), drawn row by row
  // from a ((h - 1) / cell + 2) x ((w - 1) / cell + 2) grid and bilinearly interpolated. cell 1 is
  // fill_uniform_pm1 itself. `corners` is scratch space, resized as needed.
  void fill_smooth_uniform_pm1(float* out, int h, int w, int cell, std::vector<float>& corners);
  // Standard normals; consumes exactly 2 * ceil(n / 2) outputs of the generator.
  void fill_normal(float* out, size_t n);

 private:
  uint64_t state_ = 0, inc_ = 1;
};

// ln(x) for x in (0, 1] and (cos, sin)(2 pi u) for u in [0, 1), accurate to a few float ulps and
// bit-identical across platforms. Exposed for tests.
float portable_log(float x);
void portable_sincos_2pi(float u, float* c, float* s);

}  // namespace ebm
