// A models folder as the server and the publish tool see it: every <name>.safetensors directly in
// the folder, validated with the runtime's parse_model and hashed (SHA-256), listed as JSON, and
// mirrored to <folder>/index.json so a static host can offer the same list. Subfolders (such as
// presets/) and other files are not models.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "ebm/file_snapshot.h"

namespace ebm {

struct CatalogEntry {
  std::string name;  // "bridges"
  std::string file;  // "bridges.safetensors"
  uint64_t size = 0;
  std::string sha256;
  bool valid = false;
  std::string error;           // why the file is not a usable model (when !valid)
  nlohmann::json description;  // Model::describe() (when valid)

  // {"name","file","url":"models/<file>","size","sha256","valid", then "error" or the
  // description's fields: kind, input, parameters, layers, sampler, card}. The URL is relative to
  // the site root, where the models folder is served as models/.
  nlohmann::json to_json() const;
};

class ModelCatalog {
 public:
  static constexpr uint64_t kMaxModelBytes = uint64_t(1) << 31;

  // Throws ebm::Error if `dir` is not an existing folder. Removes the temporaries that a publish
  // or index write killed midway left there (see remove_stale_temporaries in ebm/fileio.h).
  explicit ModelCatalog(const std::string& dir);

  // The stale temporaries the constructor removed, by file name.
  const std::vector<std::string>& removed_temporaries() const { return removed_temporaries_; }

  const std::string& dir() const { return dir_; }
  const std::string& real_dir() const { return real_dir_; }  // symlinks resolved

  // The folder's models sorted by name. A file is read, validated and hashed once per version
  // (inode, size, mtime); symlinks count only when they resolve inside the folder.
  std::vector<CatalogEntry> scan();
  // {"models": [entry...]}: the body of GET /api/models and of index.json.
  nlohmann::json list_json();
  // Writes index.json (atomically) if its content would change; returns whether it wrote.
  bool write_index();

  // Validates `bytes` as a model (throws ebm::Error with the runtime's reason otherwise), writes
  // <name>.safetensors by temporary file and rename, then rewrites index.json. Publishes are
  // serialised; readers see the old file or the new one, never part of one.
  struct Published {
    CatalogEntry entry;
    bool replaced = false;
  };
  Published publish(const std::string& name, const std::string& bytes);

  // The entry for one file name directly in the folder ("bridges.safetensors"), if it is a model
  // file that scan() would list; nullopt otherwise (absent, another extension, a subfolder's
  // path, a symlink leading out of the folder).
  std::optional<CatalogEntry> lookup(const std::string& file);

  std::string path_of(const std::string& file) const { return dir_ + "/" + file; }

 private:
  struct Cached {
    FileIdentity id;
    CatalogEntry entry;
  };
  bool write_index_locked();  // with publish_mu_ held, so an index never lags a publish
  CatalogEntry entry_for(const std::string& file, const std::string& path);
  static CatalogEntry make_entry(const std::string& file, const FileSnapshot& snap);

  std::string dir_, real_dir_;
  std::vector<std::string> removed_temporaries_;
  std::mutex cache_mu_, publish_mu_;
  std::map<std::string, Cached> cache_;  // by file name
};

}  // namespace ebm
