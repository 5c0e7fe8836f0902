// Internal to ebm_data: the guards shared by both loaders.
#pragma once

#include <cstdint>
#include <string>

#include "ebm/architecture.h"

namespace ebm {

// A loaded dataset may hold at most this many floats (16 GiB); more is refused before anything
// is allocated, naming the source.
constexpr int64_t kMaxDatasetFloats = int64_t(1) << 32;

void check_dataset_size(int64_t count, const Shape& target, const std::string& what);
void check_load_target(const Shape& target, const std::string& what);

}  // namespace ebm
