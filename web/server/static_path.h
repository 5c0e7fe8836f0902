// Maps a request path to a file inside a served folder, refusing every way out of it: ".." and
// "." segments (httplib has already decoded %2e%2e and %2f), absolute paths, backslashes, NUL
// bytes, and symlinks whose target lies outside the folder.
#pragma once

#include <string>

namespace ebm {

enum class PathStatus { kOk, kBadPath, kOutside, kNotFound };

struct ResolvedPath {
  PathStatus status = PathStatus::kNotFound;
  std::string file;  // the real path of a regular file (kOk)
};

// root_real: the served folder with symlinks resolved. rel: the part of the decoded URL path after
// the mount point, e.g. "js/app.js" or "" for the folder itself. Folders resolve to index.html.
ResolvedPath resolve_static_path(const std::string& root_real, const std::string& rel);

}  // namespace ebm
