// A loaded network: energies, input gradients, classifier logits and features for batches of
// images. Weights are fixed; workspaces grow only when the batch grows, so repeated calls with
// the same batch size (every Langevin step) allocate nothing.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "ebm/layers.h"
#include "ebm/model.h"

namespace ebm {

class Network {
 public:
  // Folds normalisation layers into the convolutions (fold_normalization) and builds the layers.
  explicit Network(const Model& model);
  static Network from_bytes(const uint8_t* bytes, size_t size);
  static Network from_file(const std::string& path);

  Network(Network&&) noexcept;
  Network& operator=(Network&&) noexcept;
  ~Network();

  ModelKind kind() const { return kind_; }
  const std::vector<std::string>& labels() const { return labels_; }
  const Shape& input_shape() const { return arch_.input; }
  int64_t input_size() const { return arch_.input.size(); }  // floats per image
  int outputs() const { return arch_.output().c; }            // 1 for energy models
  int feature_size() const;                                   // input size of the last layer
  const Architecture& architecture() const { return arch_; }  // after folding
  const SamplerParams& sampler() const { return sampler_; }
  const nlohmann::json& card() const { return card_; }

  // Allocates workspaces for batches of up to n images (done on demand otherwise).
  void reserve(int n);

  // x: [n, C, H, W] in [-1, 1]. Energy models only.
  void energy(const float* x, int n, float* e);
  // Energies and dE_i/dx_i for each image (the energy of one image does not depend on the others).
  void energy_and_input_grad(const float* x, int n, float* e, float* grad);
  // Raw outputs of the last layer: [n, outputs()] (logits for classifiers).
  void logits(const float* x, int n, float* out);
  // The input of the last layer (after its activation): [n, feature_size()].
  void features(const float* x, int n, float* out);

 private:
  void forward(const float* x, int n, size_t layers);

  ModelKind kind_;
  std::vector<std::string> labels_;
  Architecture arch_;
  SamplerParams sampler_;
  nlohmann::json card_;
  std::vector<std::unique_ptr<Layer>> layers_;

  int capacity_ = 0;
  std::vector<float> acts_;          // every layer's output for capacity_ images
  std::vector<size_t> act_offset_;   // per layer, into acts_
  std::vector<float> grad_a_, grad_b_, scratch_;
};

}  // namespace ebm
