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

}  // namespace ebm
