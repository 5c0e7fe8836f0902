// libFuzzer target: the sampler settings a model file or the page carries ("ebm.sampler", JSON).
// Any text either parses into settings that pass the checks again after a round trip through
// JSON, or is refused with ebm::Error.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "ebm/error.h"
#include "ebm/json_util.h"
#include "ebm/sampler_params.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  ebm::SamplerParams p;
  try {
    p = ebm::parse_sampler_params(ebm::parse_json_text(text, "fuzz input"));
  } catch (const ebm::Error&) {
    return 0;
  }
  // What was accepted must be written and read back to the same settings.
  const nlohmann::json again = ebm::sampler_params_json(p);
  const ebm::SamplerParams q = ebm::parse_sampler_params(again);  // must not throw
  if (ebm::sampler_params_json(q) != again) std::abort();
  return 0;
}
