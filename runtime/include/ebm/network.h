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
  // Buffers for one batch: every layer's output, two gradient buffers and the layers' scratch.
  // A const Network may be shared between threads, each with its own Workspace.
  class Workspace {
   public:
    Workspace() = default;

   private:
    friend class Network;
    int capacity = 0;
    std::vector<float> acts, grad_a, grad_b, scratch;
    std::vector<size_t> act_offset;
  };

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

  // Sizes `ws` for batches of up to n images (done on demand otherwise).
  void reserve(Workspace& ws, int n) const;

  // x: [n, C, H, W] in [-1, 1]. Energy models only.
  void energy(Workspace& ws, const float* x, int n, float* e) const;
  // Energies and dE_i/dx_i for each image. An image's results are bit-identical whatever other
  // images share the batch.
  void energy_and_input_grad(Workspace& ws, const float* x, int n, float* e, float* grad) const;
  // Raw outputs of the last layer: [n, outputs()] (logits for classifiers).
  void logits(Workspace& ws, const float* x, int n, float* out) const;
  // The input of the last layer (after its activation): [n, feature_size()].
  void features(Workspace& ws, const float* x, int n, float* out) const;

  // The same, with a workspace owned by the network (so not for concurrent use).
  void reserve(int n) { reserve(own_, n); }
  void energy(const float* x, int n, float* e) { energy(own_, x, n, e); }
  void energy_and_input_grad(const float* x, int n, float* e, float* grad) {
    energy_and_input_grad(own_, x, n, e, grad);
  }
  void logits(const float* x, int n, float* out) { logits(own_, x, n, out); }
  void features(const float* x, int n, float* out) { features(own_, x, n, out); }

 private:
  void forward(Workspace& ws, const float* x, int n, size_t layers) const;

  ModelKind kind_;
  std::vector<std::string> labels_;
  Architecture arch_;
  SamplerParams sampler_;
  nlohmann::json card_;
  std::vector<std::unique_ptr<Layer>> layers_;
  Workspace own_;
};

}  // namespace ebm
