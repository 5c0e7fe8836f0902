// The one safetensors reader and writer (https://github.com/huggingface/safetensors format):
//   [u64 little-endian N][N bytes of JSON header][raw little-endian tensor data]
// The header maps tensor names to {"dtype","shape","data_offsets":[begin,end]} (offsets relative
// to the data section) plus an optional "__metadata__" map of strings to strings.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace ebm {

enum class DType { kF32, kF16 };
const char* dtype_name(DType d);

// A tensor held as floats whatever its stored dtype (F16 is widened exactly on load).
struct Tensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> data;
  DType stored = DType::kF32;  // dtype in the file it came from, or to write it as

  int64_t numel() const;
};

struct TensorFile {
  std::map<std::string, std::string> metadata;
  std::vector<Tensor> tensors;  // in data-offset order

  const Tensor* find(const std::string& name) const;
};

// Limits that keep a hostile file from exhausting memory; each is far above any real model.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;   // 100 MB
constexpr int64_t kMaxTensorElements = 1ll << 28;    // 1 GiB of F32
constexpr int kMaxRank = 8;

// Parses and validates a whole file held in memory. Throws ebm::Error whose message names the
// problem (and the tensor, where there is one): bad length prefix, oversized header, invalid
// JSON, bad entry, unsupported dtype, size not matching dtype x shape, gaps, overlaps, offsets
// past the end, absurd shapes, non-finite values. Never reads out of bounds.
TensorFile parse_safetensors(const uint8_t* bytes, size_t size);

// Serialises tensors in the order given, each in its `stored` dtype, header padded with spaces to
// a multiple of 8 bytes as the reference implementation does.
std::vector<uint8_t> serialize_safetensors(const TensorFile& file);

}  // namespace ebm
