// The LibTorch network built from the runtime's layer list: the same Architecture, the same
// tensor names (layers.<i>.<role>) and layouts (conv OIHW, dense [out, in]), so the trainer and
// the runtime can never disagree about what a model is.
//
// What is trained: conv2d and dense weights and biases, batch-norm weight (gamma) and bias
// (beta), affine scale and shift. Batch-norm running_mean and running_var are fixed buffers
// (0 and 1 from initialisation, or whatever a loaded model holds) and never updated: batch norm
// always runs in inference form, as the Keras notebook effectively ran it (SPEC section 1), so an
// image's energy never depends on the rest of its batch.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "ebm/architecture.h"
#include "ebm/model.h"

namespace ebm::train {

// swish(x) = x sigmoid(x) (PyTorch's silu), differentiable to any order. On the CPU its first
// and second derivatives each take one pass over the memory: LibTorch's silu builds its second
// derivative, which denoising score matching backpropagates through at every activation, from
// about a dozen elementwise operations, each a pass over the activations (bench/README.md,
// "Trainer"). Other devices: torch::silu.
torch::Tensor swish(const torch::Tensor& x);

// conv2d(x, w, b) with stride 1 and the symmetric padding that keeps the size ((kh - 1) / 2,
// (kw - 1) / 2; odd kernels), differentiable to any order, on the CPU in channels-last memory
// with every derivative a forward convolution or a weight gradient (net.cpp says why). b may be
// undefined. What run_layers() uses for such layers on the CPU.
torch::Tensor same_conv(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b);

// The tensors one forward pass reads, layer by layer (undefined where a layer has no such
// tensor). Conv and dense weights are the effective ones: W / sigma(W) under spectral norm.
struct LayerWeights {
  torch::Tensor weight, bias, mean, var;
};
using NetWeights = std::vector<LayerWeights>;

class EnergyNetImpl : public torch::nn::Module {
 public:
  // Parameters initialised as Keras does by default (the book's and the paper's code): Glorot
  // uniform weights, zero biases, batch norm gamma 1, beta 0, mean 0, var 1. `spectral_norm`
  // divides every conv2d and dense weight by its largest singular value (of the weight as an
  // [out, in * kh * kw] matrix), estimated by one power iteration per training step.
  // A denoiser `energy` (model.h) adds the fixed mean image, tensor "energy.mean", zero until
  // set_mean().
  EnergyNetImpl(const Architecture& arch, uint64_t seed, bool spectral_norm = false,
                const EnergyForm& energy = {});

  const Architecture& architecture() const { return arch_; }
  const EnergyForm& energy_form() const { return energy_; }
  Shape image_shape() const;  // arch.input less a denoiser's noise plane
  torch::Device device() const;  // where its weights are (Module::to moves them)
  void set_mean(const torch::Tensor& mean);  // [C, H, W]
  // A denoiser's E(x, sigma) for x [n, C, H, W] and sigma [n] (the runtime's formula, model.h),
  // differentiable in x and in the weights, twice.
  torch::Tensor denoiser_energy(const NetWeights& w, const torch::Tensor& x,
                                const torch::Tensor& sigma) const;
  bool spectral_norm() const { return spectral_norm_; }

  // [n, C, H, W] -> [n, outputs] (energies for energy models, logits for classifiers).
  torch::Tensor forward(const torch::Tensor& x) const { return run(weights(), x); }
  // A classifier's logits for images x [n, C, H, W] at noise levels sigma [n]: a
  // noise-conditional one (EnergyForm::scalar_noise) reads [c_in x, log(sigma) / 4] (the
  // runtime's formula, architecture.h), any other x alone (sigma unused, may be undefined).
  torch::Tensor classify(const NetWeights& w, const torch::Tensor& x,
                         const torch::Tensor& sigma) const;
  // The same with given weights: Langevin sampling takes weights() once, detached, and reuses
  // them for every step.
  torch::Tensor run(const NetWeights& w, const torch::Tensor& x) const;
  // The last layer's output in its own shape ([n, C, H, W] for a denoiser). sigma [n]: the images'
  // noise levels, which a gated add (LayerSpec::sigma_max) needs; undefined for other networks.
  torch::Tensor run_layers(const NetWeights& w, const torch::Tensor& x,
                           const torch::Tensor& sigma = {}) const;
  // Effective weights; differentiable with respect to the parameters unless grad mode is off.
  NetWeights weights() const;

  // Keeps the parameters of layers 0..n-1 out of training (requires_grad off); the optimiser
  // takes trainable_parameters().
  void freeze_layers(int n);
  std::vector<torch::Tensor> trainable_parameters() const;

  // One power iteration for every spectral-normalised weight (no-op without spectral norm).
  void power_iteration();

  // Every tensor of the model under its runtime name, with its raw (not normalised) value:
  // trainable parameters, batch-norm statistics and the spectral-norm vectors ("...sn_u").
  // This is what a checkpoint stores.
  std::vector<std::pair<std::string, torch::Tensor>> state() const;
  // Copies tensors in by runtime name; every name of state() must be present.
  void load_state(const std::vector<std::pair<std::string, torch::Tensor>>& tensors);

  // Copies the weights of a runtime model with the same architecture (no spectral norm).
  void load_model(const Model& m);
  // Starts from a trained model whose architecture is this one's with at most as many channels
  // in each layer (same layers, kernels, strides, input and output): every tensor goes into the
  // leading corner of its own, and the weights from extra input channels into the model's
  // channels are zeroed, so the network computes exactly what the model did; the extra
  // channels keep their initialisation and learn from the first step. The network may also be
  // deeper: the model's layers first, then new layers whose results a closing chain of adds sums
  // onto the model's output; the new layers summed in start at zero (a refinement that learns
  // from the first step, e.g. a full-resolution stage after a U-Net). Throws ebm::Error naming
  // the first layer that does not fit.
  void embed_model(const Model& m);
  // The model the runtime would run: effective weights, batch norm kept (folding is export's job).
  Model to_model(ModelKind kind, const std::vector<std::string>& labels = {}) const;

 private:
  struct Layer {
    torch::Tensor weight, bias, mean, var;  // by role; scale/shift of affine live in weight/bias
    torch::Tensor sn_u, sn_v;               // spectral-norm vectors (conv2d and dense)
  };
  Architecture arch_;
  bool spectral_norm_;
  EnergyForm energy_;
  torch::Tensor mean_;  // a denoiser's mean image
  std::vector<Layer> layers_;
};
TORCH_MODULE(EnergyNet);

// Runtime name of a role's tensor in layer i, e.g. "layers.3.weight"; role "sn_u" for the
// spectral-norm vector.
std::string tensor_name(size_t layer, const std::string& role);

// The classifier form of an architecture: the same layers with the last dense layer widened to
// `classes` outputs. Throws ebm::Error if the last layer is not dense.
Architecture classifier_architecture(const Architecture& arch, int classes);

}  // namespace ebm::train
