// TorchScript models saved from Python (torch.jit.script or torch.jit.trace of an nn.Sequential)
// to the runtime's model file. Supported children, in order: Conv2d (groups 1, dilation 1, zero
// padding), ZeroPad2d (merged into the next Conv2d or AvgPool2d), BatchNorm2d (inference form:
// its running statistics), SiLU, LeakyReLU, ReLU (leaky_relu with slope 0), AvgPool2d
// (count_include_pad, no ceil mode), Flatten, Linear, and Identity/Dropout (skipped). The
// conversion runs both on random images and refuses to return a model that disagrees.
#pragma once

#include <string>
#include <vector>

#include "ebm/model.h"

namespace ebm::train {

struct ImportOptions {
  Shape input;  // the input the model expects (not stored in TorchScript)
  ModelKind kind = ModelKind::kEnergy;
  std::vector<std::string> labels;  // classifiers: one per output
  bool score = false;               // the model outputs a score (high = real): negate it
  double tolerance = 1e-4;          // max relative error allowed between the two
};

struct ImportResult {
  Model model;                      // batch norm not yet folded (save_model's caller folds)
  std::vector<std::string> layers;  // what each child became, for the user
  double max_error = 0;             // measured on random images
};

// Throws ebm::Error naming the child (by its index and type) that cannot be converted, or the
// measured disagreement.
ImportResult import_torchscript(const std::string& path, const ImportOptions& opt);

}  // namespace ebm::train
