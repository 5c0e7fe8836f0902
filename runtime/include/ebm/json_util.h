// Small helpers for the JSON the runtime reads and writes.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace ebm {

// The shortest decimal that reads back as exactly `f`, as a JSON number: 0.005f is written as
// 0.005, not 0.004999999888241291.
double json_float(float f);

// Parses JSON text with a nesting limit; errors read "<what> is not valid JSON: ...".
nlohmann::json parse_json_text(const std::string& text, const std::string& what, int max_depth = 16);

}  // namespace ebm
