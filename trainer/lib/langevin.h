// Langevin sampling inside the training loop (SPEC section 1), with the weights frozen and the
// gradient taken with respect to the input. This is the one place the trainer samples, so a
// faster backend can replace it without touching the training step.
#pragma once

#include <torch/torch.h>

#include <atomic>
#include <functional>
#include <string>

#include "ebm/sampler_params.h"
#include "net.h"

namespace ebm::train {

// Called after each step with the step number (1-based) and the current images.
using LangevinCallback = std::function<void(int step, const torch::Tensor& x)>;

// Who computes dE/dx in the loop. Both run the same steps on the same weights (the parity tests
// hold them to 1e-4); the runtime (the network the exported file becomes) is about twice as fast
// on the CPU as LibTorch's autograd (bench/README.md).
enum class LangevinBackend { kRuntime, kTorch };
const char* langevin_backend_name(LangevinBackend b);  // "runtime" / "torch"
LangevinBackend parse_langevin_backend(const std::string& name);

// Runs `steps` steps of params.form on x ([n, C, H, W] in [-1, 1]) and returns the final images
// (x itself is not modified):
//   paper:    x = clip(x + noise * N(0,1)); x = clip(x - step_size * clip(dE/dx, +-grad_clip))
//   textbook: x = clip(x - eps/2 * dE/dx + sqrt(eps) * N(0,1))
// The torch backend draws the noise from `gen`; the runtime backend draws one seed from `gen`
// and the noise from the runtime's generator (chain i: Pcg32(seed, i)). `threads` is the
// runtime's thread count (LibTorch uses its own setting). Returns an undefined tensor if `stop`
// becomes true (checked before every step).
torch::Tensor langevin(const EnergyNetImpl& net, torch::Tensor x, const SamplerParams& params,
                       int steps, at::Generator& gen,
                       LangevinBackend backend = LangevinBackend::kTorch, int threads = 1,
                       const std::atomic<bool>* stop = nullptr,
                       const LangevinCallback& on_step = {});

// One step of the paper or textbook form (above) from x with the step's noise z; grad(x') gives
// dE/dx at the point the form reads (after the paper form's noise). The torch backend's loop and
// the KL term's differentiable last step (objective.h) both take their steps here.
torch::Tensor langevin_step(const torch::Tensor& x, const torch::Tensor& z,
                            const SamplerParams& params,
                            const std::function<torch::Tensor(const torch::Tensor&)>& grad);

// dE/dx for each image of x and the energies (one forward and one backward pass), weights frozen.
// sigma [n]: the images' noise levels, for a denoiser's E(x, sigma) (EnergyNetImpl::denoiser_energy).
torch::Tensor energy_input_grad(const EnergyNetImpl& net, const NetWeights& w,
                                const torch::Tensor& x, torch::Tensor* energies = nullptr,
                                const torch::Tensor& sigma = {});

}  // namespace ebm::train
