// Whole-file reads and crash-safe writes, shared by every program that saves something.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ebm {

// Reads a whole file. Throws ebm::Error naming the path and the OS reason. Files larger than
// max_bytes are refused before they are read.
std::vector<uint8_t> read_file(const std::string& path, uint64_t max_bytes = uint64_t(1) << 32);

// Writes to "<path>.tmp-<pid>-<n>" in the same folder, flushes it to disk, then renames it over
// path, so a reader or a crash never sees half a file. Throws ebm::Error on failure and leaves
// any previous file at path untouched.
void write_file_atomic(const std::string& path, const void* data, size_t size);
inline void write_file_atomic(const std::string& path, const std::vector<uint8_t>& bytes) {
  write_file_atomic(path, bytes.data(), bytes.size());
}
inline void write_file_atomic(const std::string& path, const std::string& text) {
  write_file_atomic(path, text.data(), text.size());
}

// Start-up cleanup after a kill -9 in the middle of write_file_atomic: removes the regular files
// in `dir` named "<name>.tmp-<pid>-<n>" (both numbers decimal, <name> not empty) whose process
// <pid> is not running. Nothing else: other names, folders, symlinks and the temporaries of a
// live process (this one included) are left alone. Returns the names removed; never throws.
std::vector<std::string> remove_stale_temporaries(const std::string& dir);

}  // namespace ebm
