#include "ebm/model_name.h"

#include <cstring>

namespace ebm {

std::string model_name_problem(const std::string& name) {
  const std::string shown = "'" + name + "'";
  if (name.empty()) return "the model name is empty";
  if (name.size() > 64) return "the model name " + shown + " is longer than 64 characters";
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return "the model name " + shown + " has a character outside [A-Za-z0-9._-]";
  }
  const char first = name[0];
  if (first == '.' || first == '_' || first == '-')
    return "the model name " + shown + " must start with a letter or a digit";
  if (name.find("..") != std::string::npos) return "the model name " + shown + " contains \"..\"";
  return "";
}

bool is_valid_model_name(const std::string& name) {
  return model_name_problem(name).empty();
}

std::string model_name_from_path(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  const size_t ext = std::strlen(kModelExtension);
  if (base.size() > ext && base.compare(base.size() - ext, ext, kModelExtension) == 0)
    base.resize(base.size() - ext);
  return base;
}

}  // namespace ebm
