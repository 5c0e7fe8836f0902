#include "ebm/safetensors.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "ebm/error.h"
#include "ebm/half.h"

namespace ebm {

using nlohmann::json;

const char* dtype_name(DType d) { return d == DType::kF16 ? "F16" : "F32"; }

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

const Tensor* TensorFile::find(const std::string& name) const {
  for (const Tensor& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

namespace {

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

size_t dtype_size(DType d) { return d == DType::kF16 ? 2 : 4; }

struct Entry {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  int64_t numel;
  uint64_t begin, end;
};

// Nesting deeper than this is never a real header; refusing it early bounds the parser's work.
constexpr int kMaxJsonDepth = 8;

json parse_header_json(const uint8_t* begin, size_t size) {
  json::parser_callback_t limit_depth = [](int depth, json::parse_event_t, json&) {
    if (depth > kMaxJsonDepth)
      throw Error("safetensors header nests JSON deeper than " + std::to_string(kMaxJsonDepth) +
                  " levels");
    return true;
  };
  try {
    return json::parse(begin, begin + size, limit_depth);
  } catch (const json::exception& e) {
    throw Error(std::string("safetensors header is not valid JSON: ") + e.what());
  }
}

Entry parse_entry(const std::string& name, const json& v) {
  const std::string where = "tensor '" + name + "'";
  if (!v.is_object()) throw Error(where + ": header entry is not a JSON object");
  for (const char* key : {"dtype", "shape", "data_offsets"})
    if (!v.contains(key)) throw Error(where + ": header entry has no \"" + key + "\"");
  Entry e;
  e.name = name;
  const json& dt = v["dtype"];
  if (!dt.is_string()) throw Error(where + ": \"dtype\" is not a string");
  const std::string dts = dt.get<std::string>();
  if (dts == "F32") {
    e.dtype = DType::kF32;
  } else if (dts == "F16") {
    e.dtype = DType::kF16;
  } else {
    throw Error(where + ": unsupported dtype '" + dts +
                "' (this runtime reads F32 and F16; re-export the model with one of those)");
  }
  const json& sh = v["shape"];
  if (!sh.is_array()) throw Error(where + ": \"shape\" is not an array");
  if (sh.size() > size_t(kMaxRank))
    throw Error(where + ": rank " + std::to_string(sh.size()) + " exceeds the limit of " +
                std::to_string(kMaxRank));
  e.numel = 1;
  for (const json& d : sh) {
    if (!d.is_number_unsigned()) throw Error(where + ": shape entries must be non-negative integers");
    const uint64_t dim = d.get<uint64_t>();
    // Guard the product before forming it: dim <= limit and numel * dim <= limit.
    if (dim > uint64_t(kMaxTensorElements) ||
        (dim != 0 && uint64_t(e.numel) > uint64_t(kMaxTensorElements) / dim))
      throw Error(where + ": shape " + sh.dump() + " has more than " +
                  std::to_string(kMaxTensorElements) + " elements");
    e.shape.push_back(int64_t(dim));
    e.numel *= int64_t(dim);
  }
  const json& off = v["data_offsets"];
  if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
      !off[1].is_number_unsigned())
    throw Error(where + ": \"data_offsets\" must be [begin, end] with non-negative integers");
  e.begin = off[0].get<uint64_t>();
  e.end = off[1].get<uint64_t>();
  if (e.end < e.begin)
    throw Error(where + ": data_offsets end " + std::to_string(e.end) + " is before begin " +
                std::to_string(e.begin));
  const uint64_t expect = uint64_t(e.numel) * dtype_size(e.dtype);
  if (e.end - e.begin != expect)
    throw Error(where + ": holds " + std::to_string(e.end - e.begin) + " bytes but " + dts +
                " x shape " + sh.dump() + " needs " + std::to_string(expect));
  return e;
}

}  // namespace

TensorFile parse_safetensors(const uint8_t* bytes, size_t size) {
  if (size < 8)
    throw Error("file is " + std::to_string(size) +
                " bytes: too short for a safetensors file (8-byte header length, then JSON)");
  const uint64_t n = read_u64_le(bytes);
  if (n > kMaxHeaderBytes)
    throw Error("safetensors header length " + std::to_string(n) + " exceeds the " +
                std::to_string(kMaxHeaderBytes) + "-byte cap (not a safetensors file?)");
  if (n > size - 8)
    throw Error("safetensors header length " + std::to_string(n) + " runs past the end of the " +
                std::to_string(size) + "-byte file (truncated or not a safetensors file)");
  if (n < 2 || bytes[8] != '{')
    throw Error("safetensors header does not start with '{' (not a safetensors file?)");

  const json header = parse_header_json(bytes + 8, size_t(n));
  if (!header.is_object()) throw Error("safetensors header is not a JSON object");

  TensorFile file;
  std::vector<Entry> entries;
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      if (!value.is_object()) throw Error("\"__metadata__\" is not a JSON object");
      for (const auto& [mk, mv] : value.items()) {
        if (!mv.is_string())
          throw Error("metadata value for '" + mk + "' is not a string (safetensors metadata "
                      "maps strings to strings)");
        file.metadata[mk] = mv.get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_entry(key, value));
  }

  // Tensors must tile the data section exactly: no gap, no overlap, nothing past the end.
  const uint64_t data_size = size - 8 - n;
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t cursor = 0;
  for (const Entry& e : entries) {
    if (e.begin > cursor)
      throw Error("tensor '" + e.name + "' starts at byte " + std::to_string(e.begin) +
                  " of the data section, leaving a gap after byte " + std::to_string(cursor));
    if (e.begin < cursor)
      throw Error("tensor '" + e.name + "' at bytes [" + std::to_string(e.begin) + ", " +
                  std::to_string(e.end) + ") overlaps the tensor before it (which ends at " +
                  std::to_string(cursor) + ")");
    if (e.end > data_size)
      throw Error("tensor '" + e.name + "' ends at byte " + std::to_string(e.end) +
                  " but the data section holds " + std::to_string(data_size) +
                  " bytes (truncated file?)");
    cursor = e.end;
  }
  if (cursor != data_size)
    throw Error("data section holds " + std::to_string(data_size) + " bytes but the tensors use " +
                std::to_string(cursor) + " (trailing bytes)");

  const uint8_t* data = bytes + 8 + n;
  for (const Entry& e : entries) {
    Tensor t;
    t.name = e.name;
    t.shape = e.shape;
    t.stored = e.dtype;
    t.data.resize(size_t(e.numel));
    const uint8_t* p = data + e.begin;
    for (int64_t i = 0; i < e.numel; ++i) {
      float f;
      if (e.dtype == DType::kF16) {
        f = half_to_float(uint16_t(p[2 * i] | (p[2 * i + 1] << 8)));
      } else {
        const uint32_t u = uint32_t(p[4 * i]) | uint32_t(p[4 * i + 1]) << 8 |
                           uint32_t(p[4 * i + 2]) << 16 | uint32_t(p[4 * i + 3]) << 24;
        std::memcpy(&f, &u, 4);
      }
      if (!std::isfinite(f))
        throw Error("tensor '" + e.name + "' holds a non-finite value (" + std::to_string(f) +
                    ") at flat index " + std::to_string(i));
      t.data[size_t(i)] = f;
    }
    file.tensors.push_back(std::move(t));
  }
  return file;
}

std::vector<uint8_t> serialize_safetensors(const TensorFile& file) {
  json header = json::object();
  if (!file.metadata.empty()) header["__metadata__"] = file.metadata;
  uint64_t offset = 0;
  for (const Tensor& t : file.tensors) {
    if (t.name == "__metadata__") throw Error("a tensor may not be named '__metadata__'");
    if (header.contains(t.name)) throw Error("two tensors are named '" + t.name + "'");
    if (int64_t(t.data.size()) != t.numel())
      throw Error("tensor '" + t.name + "' has " + std::to_string(t.data.size()) +
                  " values but its shape needs " + std::to_string(t.numel()));
    const uint64_t bytes = uint64_t(t.numel()) * dtype_size(t.stored);
    header[t.name] = {{"dtype", dtype_name(t.stored)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');

  std::vector<uint8_t> out;
  out.reserve(size_t(8 + text.size() + offset));
  for (int i = 0; i < 8; ++i) out.push_back(uint8_t(uint64_t(text.size()) >> (8 * i)));
  out.insert(out.end(), text.begin(), text.end());
  for (const Tensor& t : file.tensors) {
    for (size_t i = 0; i < t.data.size(); ++i) {
      const float f = t.data[i];
      if (!std::isfinite(f))
        throw Error("tensor '" + t.name + "' holds a non-finite value at flat index " +
                    std::to_string(i) + "; refusing to write it");
      if (t.stored == DType::kF16) {
        const uint16_t h = float_to_half(f);
        if ((h & 0x7c00u) == 0x7c00u)
          throw Error("tensor '" + t.name + "' value " + std::to_string(f) +
                      " overflows F16 (max 65504); write this model as F32");
        out.push_back(uint8_t(h));
        out.push_back(uint8_t(h >> 8));
      } else {
        uint32_t u;
        std::memcpy(&u, &f, 4);
        for (int byte = 0; byte < 4; ++byte) out.push_back(uint8_t(u >> (8 * byte)));
      }
    }
  }
  return out;
}

}  // namespace ebm
