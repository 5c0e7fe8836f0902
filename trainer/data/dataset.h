// Training data in memory: images from a folder tree or from MNIST-style IDX files, converted
// to the model's input shape and range, and a deterministic train/validation split. No LibTorch:
// the trainer wraps these vectors in tensors itself.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ebm/architecture.h"

namespace ebm {

struct Dataset {
  Shape shape;                           // per image; only C = 1 is loaded today
  std::vector<float> images;             // [N, C, H, W], values in [-1, 1]
  std::vector<int> labels;               // [N], index into label_names, -1 when unlabeled
  std::vector<std::string> label_names;  // sorted folder names, or IDX class names
  std::vector<std::string> files;        // [N], where each image came from ("f.idx[12]" for IDX)

  int64_t size() const { return int64_t(labels.size()); }
  const float* image(int64_t i) const { return images.data() + i * shape.size(); }
};

// File name extensions the folder loader reads (lowercase, without the dot); anything else, such
// as labels.csv or a temporary file, is skipped.
const std::vector<std::string>& image_extensions();

// Every image under `dir`, recursively, in sorted path order, converted to gray (alpha over
// white) and resized to the target (area averaging when shrinking, bilinear when enlarging).
// When first-level sub-folders hold images, each image is labelled with its first-level folder
// (label_names sorted) and image files lying directly in `dir` (a preview grid, say) are ignored;
// otherwise the images in `dir` are loaded unlabeled. Names starting with '.' are skipped.
// Throws ebm::Error naming the folder (missing, not a folder, no images) or the file (unreadable,
// corrupt), or when target.c != 1.
Dataset load_image_folder(const std::string& dir, Shape target);

// MNIST IDX files (magic 0x00000803 images [N, rows, cols] and 0x00000801 labels [N], unsigned
// bytes), gzip-compressed or not. labels_path may be empty (all labels -1). Images are padded,
// centred, when the target is at most 25% larger in each dimension (28x28 -> 32x32 as in the
// book), with the most common border value of the data (0, black, for MNIST); otherwise resized.
// label_names defaults to "0", "1", ... up to the largest label. Throws ebm::Error naming the
// file for a wrong magic, an unsupported type, absurd or mismatched sizes, truncated or corrupt
// data, and when target.c != 1.
Dataset load_idx(const std::string& images_path, const std::string& labels_path, Shape target,
                 std::vector<std::string> label_names = {});

struct DatasetSplit {
  Dataset train, val;
};

// Stratified split: within each label (unlabeled images form one group) a seeded shuffle puts
// round(val_fraction * group size) images in val and the rest in train; each part is then
// shuffled as a whole. The same (dataset, fraction, seed) always gives the same split.
// val_fraction must be in [0, 1).
DatasetSplit split_dataset(const Dataset& data, double val_fraction, uint64_t seed);

// The images at `indices`, in that order, with their labels and files.
Dataset subset(const Dataset& data, const std::vector<int64_t>& indices);

}  // namespace ebm
