#include "ebm/json_util.h"

#include <cstdio>
#include <cstdlib>

#include "ebm/error.h"

namespace ebm {

using nlohmann::json;

double json_float(float f) {
  char buf[32];
  for (int precision = 1; precision <= 9; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, double(f));
    if (std::strtof(buf, nullptr) == f) return std::strtod(buf, nullptr);
  }
  return double(f);
}

json parse_json_text(const std::string& text, const std::string& what, int max_depth) {
  json::parser_callback_t limit = [&](int depth, json::parse_event_t, json&) {
    if (depth > max_depth)
      throw Error(what + " nests JSON deeper than " + std::to_string(max_depth) + " levels");
    return true;
  };
  try {
    return json::parse(text, limit);
  } catch (const json::exception& e) {
    throw Error(what + " is not valid JSON: " + e.what());
  }
}

}  // namespace ebm
