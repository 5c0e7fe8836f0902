// The training images of a run: an image folder (the bridge set: labels from the first-level
// sub-folders) or an IDX images file (Fashion-MNIST from Debian's dataset-fashion-mnist), loaded at
// the architecture's input size and split into train and held-out parts.
#pragma once

#include <string>

#include "config.h"
#include "data/dataset.h"

namespace ebm::train {

// Loads cfg.data at `input`: a folder with load_image_folder, a file with load_idx (labels from
// cfg.labels, or the file beside it named with "labels-idx1" in place of "images-idx3").
// cfg.limit keeps a stratified subset. Throws ebm::Error naming the path.
Dataset load_training_data(const TrainConfig& cfg, const Shape& input);

// The stratified train / held-out split of cfg.val_fraction, seeded by cfg.seed.
DatasetSplit split_training_data(const Dataset& data, const TrainConfig& cfg);

}  // namespace ebm::train
