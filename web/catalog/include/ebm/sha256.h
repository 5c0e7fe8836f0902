// SHA-256 (FIPS 180-4) through OpenSSL's libcrypto, which cpp-httplib already links: the ETag of
// every file the server sends and the hash listed for each model.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace ebm {

// Lower-case hex digest (64 characters).
std::string sha256_hex(const void* data, size_t size);
inline std::string sha256_hex(const std::string& bytes) {
  return sha256_hex(bytes.data(), bytes.size());
}

}  // namespace ebm
