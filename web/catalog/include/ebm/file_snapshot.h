// One consistent read of a file: its bytes and the identity of the inode they came from, taken
// from the same open descriptor. A file replaced by rename while it is read is seen whole, old or
// new, and a cache keyed by the identity never pairs one version's hash with another's bytes.
#pragma once

#include <cstdint>
#include <string>

namespace ebm {

struct FileIdentity {
  uint64_t device = 0, inode = 0, size = 0;
  int64_t mtime_ns = 0;
  bool operator==(const FileIdentity& o) const {
    return device == o.device && inode == o.inode && size == o.size && mtime_ns == o.mtime_ns;
  }
  bool operator!=(const FileIdentity& o) const { return !(*this == o); }
};

struct FileSnapshot {
  FileIdentity id;
  std::string bytes;
};

// Opens `path`, refuses anything but a regular file or one over max_bytes, and reads it whole.
// Throws ebm::Error naming the path and the reason.
FileSnapshot read_snapshot(const std::string& path, uint64_t max_bytes);

// The same identity without reading (lstat-free: follows symlinks). Returns false if absent.
bool file_identity(const std::string& path, FileIdentity* out);

}  // namespace ebm
