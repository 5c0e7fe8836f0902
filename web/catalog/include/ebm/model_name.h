// Names of published models. A name becomes a file name (<name>.safetensors) and a URL segment, so
// it is restricted to a pattern that can be neither a path nor a hidden or special file:
// 1 to 64 of [A-Za-z0-9._-], starting with a letter or digit, with no "..".
#pragma once

#include <string>

namespace ebm {

inline constexpr const char* kModelExtension = ".safetensors";

bool is_valid_model_name(const std::string& name);
// Why a name is refused, for error messages ("" if it is fine).
std::string model_name_problem(const std::string& name);
// "dir/bridges.safetensors" -> "bridges"; other extensions are kept ("a.bin" -> "a.bin").
std::string model_name_from_path(const std::string& path);

}  // namespace ebm
