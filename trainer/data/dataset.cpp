#include "data/dataset.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <iterator>
#include <map>
#include <system_error>

#include "data/limits.h"
#include "ebm/error.h"
#include "ebm/image_io.h"
#include "ebm/rng.h"

namespace fs = std::filesystem;

namespace ebm {

namespace {

std::string lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool is_image_file(const fs::path& p) {
  std::string ext = p.extension().string();
  if (ext.empty()) return false;
  ext = lower(ext.substr(1));
  const auto& known = image_extensions();
  return std::find(known.begin(), known.end(), ext) != known.end();
}

struct Found {
  std::string rel;    // path relative to the root, '/'-separated: sorts the same everywhere
  std::string label;  // first-level folder, or "" for files in the root
};

std::vector<Found> find_images(const std::string& dir) {
  std::error_code ec;
  const fs::file_status st = fs::status(dir, ec);
  if (st.type() == fs::file_type::not_found)
    throw Error("dataset folder '" + dir + "' does not exist");
  if (ec) throw Error("cannot access dataset folder '" + dir + "': " + ec.message());
  if (!fs::is_directory(st)) throw Error("dataset path '" + dir + "' is not a folder");
  std::vector<Found> found;
  fs::recursive_directory_iterator it(dir, ec), end;
  if (ec) throw Error("cannot list dataset folder '" + dir + "': " + ec.message());
  for (; it != end; it.increment(ec)) {
    if (ec) throw Error("cannot list dataset folder '" + dir + "': " + ec.message());
    const fs::path& p = it->path();
    if (p.filename().string().rfind('.', 0) == 0) {  // hidden: .git, editor files
      if (it->is_directory(ec)) it.disable_recursion_pending();
      continue;
    }
    if (!it->is_regular_file(ec) || !is_image_file(p)) continue;
    const fs::path rel = p.lexically_relative(dir);
    Found f{rel.generic_string(), ""};
    if (std::distance(rel.begin(), rel.end()) > 1) f.label = rel.begin()->string();
    found.push_back(std::move(f));
  }
  if (ec) throw Error("cannot list dataset folder '" + dir + "': " + ec.message());
  return found;
}

}  // namespace

void check_dataset_size(int64_t count, const Shape& target, const std::string& what) {
  if (count > kMaxDatasetFloats / std::max<int64_t>(1, target.size()))
    throw Error(what + ": " + std::to_string(count) + " images of " + target.str() +
                " would need more than " + std::to_string(kMaxDatasetFloats * 4 >> 30) + " GiB");
}

void check_load_target(const Shape& target, const std::string& what) {
  if (target.c != 1)
    throw Error(what + ": only one-channel (grayscale) targets can be loaded, not " +
                std::to_string(target.c) + " channels");
  if (target.h < 1 || target.w < 1 || target.h > kMaxSpatial || target.w > kMaxSpatial)
    throw Error(what + ": target size " + std::to_string(target.w) + "x" +
                std::to_string(target.h) + " is outside 1.." + std::to_string(kMaxSpatial));
}

const std::vector<std::string>& image_extensions() {
  static const std::vector<std::string> kExt = {"png", "jpg", "jpeg", "bmp", "gif",
                                                "tga", "pgm", "ppm",  "pnm"};
  return kExt;
}

Dataset load_image_folder(const std::string& dir, Shape target) {
  check_load_target(target, "dataset folder '" + dir + "'");
  std::vector<Found> found = find_images(dir);
  const bool labelled =
      std::any_of(found.begin(), found.end(), [](const Found& f) { return !f.label.empty(); });
  if (labelled)  // root-level images (e.g. preview.png) are not part of a labelled dataset
    found.erase(
        std::remove_if(found.begin(), found.end(), [](const Found& f) { return f.label.empty(); }),
        found.end());
  if (found.empty()) {
    std::string exts;
    for (const std::string& e : image_extensions()) exts += (exts.empty() ? "." : ", .") + e;
    throw Error("dataset folder '" + dir + "' holds no images (" + exts + ")");
  }
  std::sort(found.begin(), found.end(),
            [](const Found& a, const Found& b) { return a.rel < b.rel; });
  check_dataset_size(int64_t(found.size()), target, "dataset folder '" + dir + "'");

  Dataset d;
  d.shape = target;
  std::map<std::string, int> label_of;
  if (labelled) {
    for (const Found& f : found) label_of.emplace(f.label, 0);
    for (auto& [name, index] : label_of) {
      index = int(d.label_names.size());
      d.label_names.push_back(name);
    }
  }
  d.images.reserve(found.size() * size_t(target.size()));
  for (const Found& f : found) {
    const std::string path = (fs::path(dir) / f.rel).string();
    const Image img = resize_gray(read_gray_image(path), target.w, target.h);
    const std::vector<float> unit = image_to_unit(img);
    d.images.insert(d.images.end(), unit.begin(), unit.end());
    d.labels.push_back(labelled ? label_of.at(f.label) : -1);
    d.files.push_back(path);
  }
  return d;
}

Dataset subset(const Dataset& data, const std::vector<int64_t>& indices) {
  Dataset out;
  out.shape = data.shape;
  out.label_names = data.label_names;
  const size_t per = size_t(data.shape.size());
  out.images.resize(indices.size() * per);
  for (size_t k = 0; k < indices.size(); ++k) {
    const int64_t i = indices[k];
    if (i < 0 || i >= data.size())
      throw Error("subset: index " + std::to_string(i) + " is outside a dataset of " +
                  std::to_string(data.size()) + " images");
    std::copy_n(data.image(i), per, out.images.begin() + int64_t(k * per));
    out.labels.push_back(data.labels[size_t(i)]);
    out.files.push_back(data.files[size_t(i)]);
  }
  return out;
}

namespace {

void shuffle(std::vector<int64_t>& v, Pcg32& rng) {
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[rng.below(uint32_t(i))]);
}

}  // namespace

DatasetSplit split_dataset(const Dataset& data, double val_fraction, uint64_t seed) {
  if (!(val_fraction >= 0.0 && val_fraction < 1.0))
    throw Error("validation fraction must be in [0, 1), got " + std::to_string(val_fraction));
  if (data.size() > int64_t(UINT32_MAX)) throw Error("split_dataset: too many images");
  std::map<int, std::vector<int64_t>> groups;  // label -> image indices, in label order
  for (int64_t i = 0; i < data.size(); ++i) groups[data.labels[size_t(i)]].push_back(i);
  Pcg32 rng(seed, 0x5b1d5e7a11ull);
  std::vector<int64_t> train, val;
  for (auto& [label, idx] : groups) {
    shuffle(idx, rng);
    const size_t n_val = size_t(std::llround(val_fraction * double(idx.size())));
    val.insert(val.end(), idx.begin(), idx.begin() + int64_t(n_val));
    train.insert(train.end(), idx.begin() + int64_t(n_val), idx.end());
  }
  shuffle(train, rng);
  shuffle(val, rng);
  return {subset(data, train), subset(data, val)};
}

}  // namespace ebm
