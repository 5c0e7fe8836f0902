#include "static_path.h"

#include <sys/stat.h>

#include <climits>
#include <cstdlib>

namespace ebm {

namespace {

bool inside(const std::string& root, const std::string& path) {
  return path == root || path.compare(0, root.size() + 1, root + "/") == 0;
}

}  // namespace

ResolvedPath resolve_static_path(const std::string& root_real, const std::string& rel) {
  ResolvedPath r;
  if (!rel.empty() && rel[0] == '/') return {PathStatus::kBadPath, ""};  // "//etc/passwd"
  if (rel.find('\\') != std::string::npos || rel.find('\0') != std::string::npos)
    return {PathStatus::kBadPath, ""};
  size_t start = 0;
  while (start <= rel.size()) {
    size_t end = rel.find('/', start);
    if (end == std::string::npos) end = rel.size();
    const std::string seg = rel.substr(start, end - start);
    if (seg == "." || seg == "..") return {PathStatus::kBadPath, ""};
    if (seg.empty() && end != rel.size()) return {PathStatus::kBadPath, ""};  // "a//b"
    start = end + 1;
  }

  std::string candidate = root_real + "/" + rel;
  char buf[PATH_MAX];
  if (!::realpath(candidate.c_str(), buf)) return {PathStatus::kNotFound, ""};
  std::string real = buf;
  if (!inside(root_real, real)) return {PathStatus::kOutside, ""};
  struct stat st {};
  if (::stat(real.c_str(), &st) != 0) return {PathStatus::kNotFound, ""};
  if (S_ISDIR(st.st_mode)) {
    candidate = real + "/index.html";
    if (!::realpath(candidate.c_str(), buf)) return {PathStatus::kNotFound, ""};
    real = buf;
    if (!inside(root_real, real)) return {PathStatus::kOutside, ""};
    if (::stat(real.c_str(), &st) != 0) return {PathStatus::kNotFound, ""};
  }
  if (!S_ISREG(st.st_mode)) return {PathStatus::kNotFound, ""};
  r.status = PathStatus::kOk;
  r.file = real;
  return r;
}

}  // namespace ebm
