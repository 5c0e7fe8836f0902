#include "ebm/catalog.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "ebm/error.h"
#include "ebm/fileio.h"
#include "ebm/model.h"
#include "ebm/model_name.h"
#include "ebm/sha256.h"

namespace ebm {

using nlohmann::json;

namespace {

constexpr const char* kIndexFile = "index.json";

std::string real_path(const std::string& path) {
  char buf[PATH_MAX];
  if (!::realpath(path.c_str(), buf)) return "";
  return buf;
}

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() > tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

}  // namespace

json CatalogEntry::to_json() const {
  json j = {{"name", name}, {"file", file},     {"url", "models/" + file},
            {"size", size}, {"sha256", sha256}, {"valid", valid}};
  if (!valid) {
    j["error"] = error;
    return j;
  }
  for (const auto& [key, value] : description.items()) j[key] = value;
  return j;
}

ModelCatalog::ModelCatalog(const std::string& dir) : dir_(dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    throw Error("models folder '" + dir + "' does not exist or is not a folder");
  real_dir_ = real_path(dir);
  if (real_dir_.empty()) throw Error("cannot resolve models folder '" + dir + "'");
  removed_temporaries_ = remove_stale_temporaries(dir_);
}

CatalogEntry ModelCatalog::make_entry(const std::string& file, const FileSnapshot& snap) {
  CatalogEntry e;
  e.file = file;
  e.name = model_name_from_path(file);
  e.size = snap.id.size;
  e.sha256 = sha256_hex(snap.bytes);
  try {
    const Model m =
        parse_model(reinterpret_cast<const uint8_t*>(snap.bytes.data()), snap.bytes.size());
    e.description = m.describe();
    e.valid = true;
  } catch (const std::exception& ex) {
    e.error = ex.what();
  }
  return e;
}

CatalogEntry ModelCatalog::entry_for(const std::string& file, const std::string& path) {
  FileIdentity id;
  if (file_identity(path, &id)) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    auto it = cache_.find(file);
    if (it != cache_.end() && it->second.id == id) return it->second.entry;
  }
  CatalogEntry e;
  FileIdentity read_id;
  try {
    const FileSnapshot snap = read_snapshot(path, kMaxModelBytes);
    e = make_entry(file, snap);
    read_id = snap.id;
  } catch (const Error& ex) {
    e.file = file;
    e.name = model_name_from_path(file);
    e.error = ex.what();
    return e;  // unreadable now; not cached, so it is retried next time
  }
  std::lock_guard<std::mutex> lock(cache_mu_);
  cache_[file] = Cached{read_id, e};
  return e;
}

std::vector<CatalogEntry> ModelCatalog::scan() {
  std::vector<std::string> files;
  if (DIR* d = ::opendir(dir_.c_str())) {
    while (const dirent* ent = ::readdir(d)) {
      const std::string name = ent->d_name;
      if (name[0] == '.' || !ends_with(name, kModelExtension)) continue;
      files.push_back(name);
    }
    ::closedir(d);
  } else {
    throw Error("cannot list models folder '" + dir_ + "': " + std::strerror(errno));
  }
  std::sort(files.begin(), files.end());

  std::vector<CatalogEntry> out;
  for (const std::string& file : files)
    if (std::optional<CatalogEntry> e = lookup(file)) out.push_back(std::move(*e));
  {
    // Forget files that are gone, so the cache does not grow with every name ever seen.
    std::lock_guard<std::mutex> lock(cache_mu_);
    for (auto it = cache_.begin(); it != cache_.end();)
      it = std::binary_search(files.begin(), files.end(), it->first) ? std::next(it)
                                                                     : cache_.erase(it);
  }
  return out;
}

std::optional<CatalogEntry> ModelCatalog::lookup(const std::string& file) {
  if (file.empty() || file[0] == '.' || file.find('/') != std::string::npos ||
      !ends_with(file, kModelExtension))
    return std::nullopt;
  const std::string path = path_of(file);
  struct stat lst {};
  if (::lstat(path.c_str(), &lst) != 0) return std::nullopt;
  if (S_ISLNK(lst.st_mode)) {
    const std::string target = real_path(path);
    if (target.empty() || target.compare(0, real_dir_.size() + 1, real_dir_ + "/") != 0)
      return std::nullopt;  // dangling, or pointing out of the folder: never listed or served
  } else if (!S_ISREG(lst.st_mode)) {
    return std::nullopt;
  }
  return entry_for(file, path);
}

json ModelCatalog::list_json() {
  json models = json::array();
  for (const CatalogEntry& e : scan()) models.push_back(e.to_json());
  return {{"models", models}};
}

bool ModelCatalog::write_index() {
  std::lock_guard<std::mutex> lock(publish_mu_);
  return write_index_locked();
}

bool ModelCatalog::write_index_locked() {
  const std::string text = list_json().dump(2) + "\n";
  const std::string path = path_of(kIndexFile);
  try {
    if (read_snapshot(path, kMaxModelBytes).bytes == text) return false;
  } catch (const Error&) {
    // absent or unreadable: write it
  }
  write_file_atomic(path, text);
  return true;
}

ModelCatalog::Published ModelCatalog::publish(const std::string& name, const std::string& bytes) {
  if (const std::string problem = model_name_problem(name); !problem.empty()) throw Error(problem);
  // Validate with the runtime before anything touches the folder.
  parse_model(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());

  std::lock_guard<std::mutex> lock(publish_mu_);
  const std::string file = name + kModelExtension;
  const std::string path = path_of(file);
  struct stat lst {};
  Published result;
  if (::lstat(path.c_str(), &lst) == 0) {
    if (!S_ISREG(lst.st_mode))
      throw Error("'" + file +
                  "' exists in the models folder and is not a regular file; "
                  "remove it by hand to publish under that name");
    result.replaced = true;
  }
  write_file_atomic(path, bytes.data(), bytes.size());
  result.entry = entry_for(file, path);
  write_index_locked();
  return result;
}

}  // namespace ebm
