#include "activation_plan.h"

#include <algorithm>
#include <utility>

namespace ebm {

size_t plan_outputs(const std::vector<OutputLife>& lives, std::vector<size_t>* offsets) {
  constexpr size_t kAlign = 16;
  auto rounded = [](size_t floats) { return (floats + kAlign - 1) / kAlign * kAlign; };
  offsets->assign(lives.size(), 0);
  size_t span = 0;
  std::vector<std::pair<size_t, size_t>> busy;  // [begin, end) of the overlapping lives' outputs
  for (size_t k = 0; k < lives.size(); ++k) {
    busy.clear();
    for (size_t j = 0; j < k; ++j)
      if (lives[j].first <= lives[k].last && lives[k].first <= lives[j].last)
        busy.emplace_back((*offsets)[j], (*offsets)[j] + rounded(lives[j].floats));
    std::sort(busy.begin(), busy.end());
    const size_t len = rounded(lives[k].floats);
    size_t at = 0;
    for (const auto& [begin, end] : busy) {
      if (at + len <= begin) break;
      at = std::max(at, end);
    }
    (*offsets)[k] = at;
    span = std::max(span, at + len);
  }
  return span;
}

}  // namespace ebm
