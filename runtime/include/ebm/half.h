// IEEE 754 binary16 <-> binary32 conversion, bit-exact and portable (no F16C, no _Float16), so
// native and wasm builds decode a model file to the same floats.
#pragma once

#include <cstdint>

namespace ebm {

// Exact: every half value is representable as a float (subnormals, infinities and NaN included).
float half_to_float(uint16_t h);

// Round to nearest, ties to even; values beyond the half range become +-infinity.
uint16_t float_to_half(float f);

}  // namespace ebm
