// Langevin sampling inside the training loop (SPEC section 1), with the weights frozen and the
// gradient taken with respect to the input. This is the one place the trainer samples, so a
// faster backend can replace it without touching the training step.
#pragma once

#include <torch/torch.h>

#include <atomic>
#include <functional>

#include "ebm/sampler_params.h"
#include "net.h"

namespace ebm::train {

// Called after each step with the step number (1-based) and the current images.
using LangevinCallback = std::function<void(int step, const torch::Tensor& x)>;

// Runs `steps` steps of params.form on x ([n, C, H, W] in [-1, 1]) and returns the final images
// (x itself is not modified). Noise is drawn from `gen`:
//   paper:    x = clip(x + noise * N(0,1)); x = clip(x - step_size * clip(dE/dx, +-grad_clip))
//   textbook: x = clip(x - eps/2 * dE/dx + sqrt(eps) * N(0,1))
// Returns an undefined tensor if `stop` becomes true (checked before every step).
torch::Tensor langevin(const EnergyNetImpl& net, torch::Tensor x, const SamplerParams& params,
                       int steps, at::Generator& gen, const std::atomic<bool>* stop = nullptr,
                       const LangevinCallback& on_step = {});

// dE/dx for each image of x and the energies (one forward and one backward pass), weights frozen.
torch::Tensor energy_input_grad(const EnergyNetImpl& net, const NetWeights& w,
                                const torch::Tensor& x, torch::Tensor* energies = nullptr);

}  // namespace ebm::train
