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
    int capacity_images() const { return capacity; }  // the batch it is sized for (reserve)

   private:
    friend class Network;
    int capacity = 0;
    // acts: the layers' outputs, each at act_offset (those the backward pass does not read share
    // memory once read: Network::plan_activations); grads: dL/d(output) per layer, at
    // grad_offset (two alternating slots for a plain chain, one per layer for a graph); tmp: a
    // contribution to a gradient that already holds another; input/input_grad: a denoiser's
    // network input and its gradient.
    std::vector<float> acts, grads, tmp, scratch, input, input_grad;
    std::vector<size_t> act_offset, grad_offset;
    std::vector<char> written;  // backward: which gradients hold a contribution yet
    std::vector<char> needed;   // forward: which layers' outputs the last layer needs
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
  const Shape& input_shape() const { return image_; }       // the images E reads
  int64_t input_size() const { return image_.size(); }      // floats per image
  // A denoiser energy E(x, sigma) (model.h), or a noise-conditional classifier (a guide trained
  // on noised drawings, architecture.h EnergyForm): every energy or classifier call must give the
  // noise level sigma > 0 of the images.
  bool noise_conditional() const { return ebm::noise_conditional(energy_); }
  const EnergyForm& energy_form() const { return energy_; }
  const std::vector<float>& mean_image() const { return mean_; }  // a denoiser's; else empty
  int outputs() const { return arch_.output().c; }            // 1 for energy models
  int feature_size() const;                                   // input size of the last layer
  const Architecture& architecture() const { return arch_; }  // after folding
  const SamplerParams& sampler() const { return sampler_; }
  const nlohmann::json& card() const { return card_; }
  // The weaker denoiser a format-3 model carries for autoguidance (model.h), or null.
  const Network* autoguide() const { return autoguide_.get(); }

  // Sizes `ws` for calls of up to n images, of which it runs at most slice_images() at once
  // (done on demand otherwise).
  void reserve(Workspace& ws, int n) const;
  // What a workspace for a pass over n images at once holds, in bytes: every layer's output is
  // kept for the backward pass, so this grows with n (hence the slices below).
  size_t workspace_bytes(int n) const;

  // Every call below runs its images in slices of at most this many, one after another, so that
  // a workspace stays small: by default the most images whose workspace fits kSliceBudgetBytes
  // (at least one, at most kSliceMostImages). An image's results are the same bits whatever the
  // slice; only memory and speed change.
  int slice_images() const { return slice_; }
  // At most n images a slice (n >= 1), or 0 for the default (tests and benchmarks).
  void set_slice_images(int n);
  // 64 MiB and at most 8 images: larger slices of small networks leave the caches for no GEMM
  // width that matters (natively 32 images of the paper network at once ran 1.07x slower than
  // slices of 8, of bridges-cd 1.2x; in WebAssembly the paper network as fast, in half the heap),
  // and the shipped bridge model runs 4 images a slice (bench/README.md, "Chains in slices").
  static constexpr size_t kSliceBudgetBytes = size_t(64) << 20;
  static constexpr int kSliceMostImages = 8;

  // x: [n, C, H, W] in [-1, 1]. Energy models only; sigma is the noise level of a
  // noise-conditional model (ignored by the others).
  void energy(Workspace& ws, const float* x, int n, float* e, float sigma = 0) const;
  // Energies and dE_i/dx_i for each image. An image's results are bit-identical whatever other
  // images share the batch.
  void energy_and_input_grad(Workspace& ws, const float* x, int n, float* e, float* grad,
                             float sigma = 0) const;
  // Raw outputs of the last layer: [n, outputs()] (logits for classifiers). sigma: the noise
  // level of the images for a noise-conditional classifier (ignored by the others).
  void logits(Workspace& ws, const float* x, int n, float* out, float sigma = 0) const;
  // The input of the last layer (after its activation): [n, feature_size()].
  void features(Workspace& ws, const float* x, int n, float* out, float sigma = 0) const;
  // Classifiers: each image's cross-entropy ce_i = -sum_k t_k log softmax(logits(x_i))_k against
  // the distribution `target` (outputs() values, each >= 0, summing to 1 within 1e-4), and
  // dce_i/dx_i by the backward pass (dce/dlogits = softmax - t). The input gradient of a guide
  // (LangevinSampler::set_guide); like energies, bit-identical whatever shares the batch.
  void cross_entropy_and_input_grad(Workspace& ws, const float* x, int n,
                                    const std::vector<float>& target, float* ce, float* grad,
                                    float sigma = 0) const;
  // Throws ebm::Error unless `target` is such a distribution over this classifier's labels.
  void check_target(const std::vector<float>& target) const;

  // The same, with a workspace owned by the network (so not for concurrent use).
  void reserve(int n) { reserve(own_, n); }
  void energy(const float* x, int n, float* e, float sigma = 0) { energy(own_, x, n, e, sigma); }
  void energy_and_input_grad(const float* x, int n, float* e, float* grad, float sigma = 0) {
    energy_and_input_grad(own_, x, n, e, grad, sigma);
  }
  void logits(const float* x, int n, float* out, float sigma = 0) { logits(own_, x, n, out, sigma); }
  void features(const float* x, int n, float* out, float sigma = 0) {
    features(own_, x, n, out, sigma);
  }
  void cross_entropy_and_input_grad(const float* x, int n, const std::vector<float>& target,
                                    float* ce, float* grad, float sigma = 0) {
    cross_entropy_and_input_grad(own_, x, n, target, ce, grad, sigma);
  }

 private:
  // sigma: a denoiser's noise level, which closes the gated adds above theirs
  // (LayerSpec::sigma_max); 0 for every other network (no gates).
  void forward(Workspace& ws, const float* x, int n, size_t layers, float sigma = 0) const;
  // f(first, count) for the images [0, n) in slices of at most slice_images(), in order.
  template <class F>
  void in_slices(int n, F f) const;
  // Given dL/d(last output) in the last layer's gradient slot, writes dL/dx for the layers' input.
  void backward(Workspace& ws, const float* x, int n, float* grad, float sigma = 0) const;
  const float* output_of(const Workspace& ws, const float* x, int k) const;
  // Denoiser energies: builds the layers' input in ws.input, runs them, returns E and, when
  // grad is given, dE/dx.
  void denoiser_energy(Workspace& ws, const float* x, int n, float sigma, float* e,
                       float* grad) const;
  // cross_entropy_and_input_grad for one slice of images.
  void cross_entropy_slice(Workspace& ws, const float* x, int n, const std::vector<float>& target,
                           float* ce, float* grad, float sigma) const;
  // What the layers of a classifier read: x itself, or for a noise-conditional one
  // [c_in x, log(sigma) / 4] built in ws.input (then *c_in is set, else 1).
  const float* classifier_input(Workspace& ws, const float* x, int n, float sigma,
                                float* c_in) const;

  ModelKind kind_;
  Shape image_;
  EnergyForm energy_;
  std::vector<float> mean_;  // a denoiser's mean image
  std::vector<std::string> labels_;
  Architecture arch_;
  SamplerParams sampler_;
  nlohmann::json card_;
  std::vector<std::unique_ptr<Layer>> layers_;
  // Where each layer's output lies in a workspace, in floats per image (times the batch), and the
  // floats per image they span.
  void plan_activations();
  std::vector<size_t> act_plan_;
  size_t act_floats_ = 0;
  struct WorkspaceSizes;
  WorkspaceSizes workspace_sizes(int n) const;
  Workspace own_;
  std::shared_ptr<const Network> autoguide_;
  int slice_ = 1;
};

static_assert(Network::kSliceMostImages >= 4 &&
                  (Network::kSliceMostImages & (Network::kSliceMostImages - 1)) == 0,
              "most_images_that_fit doubles from 2 to kSliceMostImages");

// The most images n in [1, most] for which fits(n) holds (fits must hold for every smaller n
// where it holds for n; `most` a power of two, at least 4): 1 when fits(2) fails. A doubling
// search, then halving the gap. Network's slices, and the sampler's, which run several networks.
template <class Fits>
int most_images_that_fit(int most, Fits fits) {
  if (!fits(2)) return 1;
  int lo = 2, hi = 4;  // fits(lo); hi unknown
  while (hi < most && fits(hi)) lo = hi, hi *= 2;
  if (hi >= most && fits(most)) return most;
  while (hi - lo > 1) {  // fits(lo), !fits(hi)
    const int mid = lo + (hi - lo) / 2;
    (fits(mid) ? lo : hi) = mid;
  }
  return lo;
}

}  // namespace ebm
