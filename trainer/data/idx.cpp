// MNIST IDX files (LeCun et al., yann.lecun.com/exdb/mnist): a 4-byte magic (0, 0, type,
// number of dimensions), each dimension as a big-endian uint32, then the data row-major.
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cstdio>

#include "data/dataset.h"
#include "data/limits.h"
#include "ebm/error.h"
#include "ebm/fileio.h"
#include "ebm/image_io.h"

namespace ebm {

namespace {

constexpr uint64_t kMaxFileBytes = uint64_t(1) << 30;      // on disk, compressed or not
constexpr uint64_t kMaxInflatedBytes = uint64_t(1) << 32;  // after gunzip
constexpr uint32_t kMaxImages = uint32_t(1) << 28;
constexpr uint8_t kTypeUnsignedByte = 0x08;

std::string hex32(uint32_t v) {
  char s[16];
  std::snprintf(s, sizeof s, "0x%08x", v);
  return s;
}

// The file's bytes, gunzipped when they start with the gzip magic (1f 8b).
std::vector<uint8_t> read_maybe_gzip(const std::string& path) {
  std::vector<uint8_t> raw = read_file(path, kMaxFileBytes);
  if (raw.size() < 2 || raw[0] != 0x1f || raw[1] != 0x8b) return raw;
  z_stream zs{};
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK)
    throw Error("'" + path + "': cannot start gzip decompression");
  zs.next_in = raw.data();
  zs.avail_in = uInt(raw.size());  // raw.size() <= 1 GiB
  std::vector<uint8_t> out;
  std::vector<uint8_t> chunk(size_t(1) << 20);
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    zs.next_out = chunk.data();
    zs.avail_out = uInt(chunk.size());
    rc = inflate(&zs, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      const std::string why = rc == Z_BUF_ERROR ? "the file ends early (truncated)"
                              : zs.msg          ? zs.msg
                                                : "error " + std::to_string(rc);
      inflateEnd(&zs);
      throw Error("'" + path + "': corrupt gzip data: " + why);
    }
    out.insert(out.end(), chunk.data(), chunk.data() + (chunk.size() - zs.avail_out));
    if (out.size() > kMaxInflatedBytes) {
      inflateEnd(&zs);
      throw Error("'" + path + "' decompresses to more than " +
                  std::to_string(kMaxInflatedBytes >> 30) + " GiB");
    }
  }
  inflateEnd(&zs);
  return out;
}

struct Idx {
  std::vector<uint8_t> bytes;
  std::vector<uint32_t> dims;
  size_t data_offset = 0;
};

// Reads and checks an IDX file of unsigned bytes with `ndims` dimensions, named `kind` in errors.
Idx read_idx(const std::string& path, uint8_t ndims, const char* kind) {
  Idx f;
  f.bytes = read_maybe_gzip(path);
  const std::vector<uint8_t>& b = f.bytes;
  const uint32_t expected = (uint32_t(kTypeUnsignedByte) << 8) | ndims;
  if (b.size() < 4)
    throw Error("'" + path + "' is not an IDX file: only " + std::to_string(b.size()) + " bytes");
  const uint32_t magic = uint32_t(b[0]) << 24 | uint32_t(b[1]) << 16 | uint32_t(b[2]) << 8 | b[3];
  if (b[0] != 0 || b[1] != 0)
    throw Error("'" + path + "' is not an IDX file: magic " + hex32(magic) + ", expected " +
                hex32(expected) + " (" + kind + ")");
  if (b[2] != kTypeUnsignedByte)
    throw Error("'" + path + "': IDX data type " + hex32(magic) +
                " is not supported (only unsigned bytes, magic " + hex32(expected) + ")");
  if (b[3] != ndims)
    throw Error("'" + path + "' has " + std::to_string(b[3]) + " dimensions (magic " +
                hex32(magic) + "); expected " + kind + " with " + std::to_string(ndims) +
                " (magic " + hex32(expected) + ")");
  f.data_offset = 4 + 4 * size_t(ndims);
  if (b.size() < f.data_offset)
    throw Error("'" + path + "' is truncated: its header needs " + std::to_string(f.data_offset) +
                " bytes, the file has " + std::to_string(b.size()));
  for (size_t d = 0; d < ndims; ++d) {
    const uint8_t* p = b.data() + 4 + 4 * d;
    f.dims.push_back(uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3]);
  }
  return f;
}

void check_data_length(const Idx& f, const std::string& path, uint64_t need,
                       const std::string& what) {
  const uint64_t have = f.bytes.size() - f.data_offset;
  if (have < need)
    throw Error("'" + path + "' is truncated: its header promises " + what + " (" +
                std::to_string(need) + " bytes of data) but only " + std::to_string(have) +
                " follow");
  if (have > need)
    throw Error("'" + path + "' is corrupt: " + std::to_string(have - need) + " bytes follow the " +
                what + " its header describes");
}

}  // namespace

Dataset load_idx(const std::string& images_path, const std::string& labels_path, Shape target,
                 std::vector<std::string> label_names) {
  check_load_target(target, "IDX file '" + images_path + "'");
  const Idx im = read_idx(images_path, 3, "images");
  const uint32_t n = im.dims[0], rows = im.dims[1], cols = im.dims[2];
  if (n < 1 || n > kMaxImages)
    throw Error("'" + images_path + "' claims " + std::to_string(n) + " images (1.." +
                std::to_string(kMaxImages) + " supported)");
  if (rows < 1 || cols < 1 || rows > uint32_t(kMaxSpatial) || cols > uint32_t(kMaxSpatial))
    throw Error("'" + images_path + "' claims images of " + std::to_string(rows) + "x" +
                std::to_string(cols) + " (1.." + std::to_string(kMaxSpatial) + " supported)");
  const uint64_t pixels = uint64_t(rows) * cols;
  check_data_length(
      im, images_path, uint64_t(n) * pixels,
      std::to_string(n) + " images of " + std::to_string(rows) + "x" + std::to_string(cols));
  check_dataset_size(int64_t(n), target, "'" + images_path + "'");

  Dataset d;
  d.shape = target;
  d.labels.assign(n, -1);
  if (!labels_path.empty()) {
    const Idx lb = read_idx(labels_path, 1, "labels");
    if (lb.dims[0] != n)
      throw Error("'" + labels_path + "' has " + std::to_string(lb.dims[0]) + " labels but '" +
                  images_path + "' has " + std::to_string(n) + " images");
    check_data_length(lb, labels_path, n, std::to_string(n) + " labels");
    int largest = 0;
    for (uint32_t i = 0; i < n; ++i) {
      const int label = lb.bytes[lb.data_offset + i];
      d.labels[i] = label;
      largest = std::max(largest, label);
      if (!label_names.empty() && size_t(label) >= label_names.size())
        throw Error("'" + labels_path + "': label " + std::to_string(label) + " of image " +
                    std::to_string(i) + " has no name (" + std::to_string(label_names.size()) +
                    " names given)");
    }
    if (label_names.empty())
      for (int k = 0; k <= largest; ++k) label_names.push_back(std::to_string(k));
    d.label_names = std::move(label_names);
  }

  // Pad (centred) when the target is only a little larger, as the book pads 28x28 to 32x32;
  // resize otherwise. Padding takes the data's own background: its most common border value.
  const int h = int(rows), w = int(cols);
  const bool pad =
      target.h >= h && target.w >= w && 4 * (target.h - h) <= h && 4 * (target.w - w) <= w;
  const uint8_t* data = im.bytes.data() + im.data_offset;
  uint8_t background = 0;
  if (pad && (target.h != h || target.w != w)) {
    std::array<uint64_t, 256> hist{};
    for (uint32_t i = 0; i < n; ++i) {
      const uint8_t* img = data + i * pixels;
      for (int x = 0; x < w; ++x) ++hist[img[x]], ++hist[img[size_t(h - 1) * w + x]];
      for (int y = 1; y + 1 < h; ++y)
        ++hist[img[size_t(y) * w]], ++hist[img[size_t(y) * w + w - 1]];
    }
    background = uint8_t(std::max_element(hist.begin(), hist.end()) - hist.begin());
  }
  const int top = (target.h - h) / 2, left = (target.w - w) / 2;
  d.images.resize(size_t(n) * size_t(target.size()));
  d.files.reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    Image img(w, h, 1);
    std::copy_n(data + i * pixels, pixels, img.pixels.begin());
    if (pad) {
      Image padded(target.w, target.h, 1, background);
      for (int y = 0; y < h; ++y) std::copy_n(img.at(0, y), w, padded.at(left, top + y));
      img = std::move(padded);
    } else {
      img = resize_gray(img, target.w, target.h);
    }
    std::transform(img.pixels.begin(), img.pixels.end(),
                   d.images.begin() + int64_t(i) * target.size(), pixel_to_unit);
    d.files.push_back(images_path + "[" + std::to_string(i) + "]");
  }
  return d;
}

}  // namespace ebm
