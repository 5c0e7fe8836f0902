#include "data_source.h"

#include <sys/stat.h>

#include "ebm/error.h"

namespace ebm::train {

namespace {

bool is_dir(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool is_file(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string guess_labels(const std::string& images) {
  const std::string from = "images-idx3", to = "labels-idx1";
  const size_t k = images.rfind(from);
  if (k == std::string::npos) return {};
  std::string labels = images;
  labels.replace(k, from.size(), to);
  return is_file(labels) ? labels : std::string();
}

std::vector<std::string> idx_label_names(const std::string& path) {
  if (path.find("fashion") != std::string::npos)
    return {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
            "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  return {};
}

}  // namespace

Dataset load_training_data(const TrainConfig& cfg, const Shape& input) {
  if (cfg.data.empty()) throw Error("no training data given (--data FOLDER or IDX file)");
  Dataset data;
  if (is_dir(cfg.data)) {
    data = load_image_folder(cfg.data, input);
  } else if (is_file(cfg.data)) {
    const std::string labels = cfg.labels.empty() ? guess_labels(cfg.data) : cfg.labels;
    data = load_idx(cfg.data, labels, input, idx_label_names(cfg.data));
  } else {
    throw Error("training data '" + cfg.data + "' is neither a folder nor a file");
  }
  if (cfg.limit > 0 && cfg.limit < data.size())
    data = split_dataset(data, double(cfg.limit) / double(data.size()), cfg.seed + 17).val;
  return data;
}

DatasetSplit split_training_data(const Dataset& data, const TrainConfig& cfg) {
  return split_dataset(data, cfg.val_fraction, cfg.seed);
}

}  // namespace ebm::train
