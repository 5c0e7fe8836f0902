#include "langevin.h"

#include <cmath>

namespace ebm::train {

torch::Tensor energy_input_grad(const EnergyNetImpl& net, const NetWeights& w,
                                const torch::Tensor& x, torch::Tensor* energies) {
  torch::AutoGradMode grad_on(true);
  torch::Tensor xin = x.detach().requires_grad_(true);
  // An image's energy depends on that image alone, so the gradient of the sum is every image's own.
  const torch::Tensor e = net.run(w, xin).select(1, 0);
  torch::Tensor g = torch::autograd::grad({e.sum()}, {xin})[0];
  if (energies) *energies = e.detach();
  return g;
}

torch::Tensor langevin(const EnergyNetImpl& net, torch::Tensor x, const SamplerParams& p, int steps,
                       at::Generator& gen, const std::atomic<bool>* stop,
                       const LangevinCallback& on_step) {
  NetWeights w;
  {
    // The weights are constants here: detached, so the backward pass computes input gradients only.
    torch::NoGradGuard no_grad;
    w = net.weights();
    for (LayerWeights& l : w)
      for (torch::Tensor* t : {&l.weight, &l.bias, &l.mean, &l.var})
        if (t->defined()) *t = t->detach();
  }
  x = x.detach().clone();
  const double root_eps = std::sqrt(double(p.eps));
  for (int k = 1; k <= steps; ++k) {
    if (stop && stop->load()) return {};
    torch::Tensor z = torch::randn(x.sizes(), gen, torch::kFloat32);
    if (p.form == SamplerForm::kPaper) {
      x = (x + double(p.noise) * z).clamp_(-1.0, 1.0);
      torch::Tensor g = energy_input_grad(net, w, x);
      g.clamp_(-double(p.grad_clip), double(p.grad_clip));
      x = (x - double(p.step_size) * g).clamp_(-1.0, 1.0);
    } else {
      torch::Tensor g = energy_input_grad(net, w, x);
      x = (x - 0.5 * double(p.eps) * g + root_eps * z).clamp_(-1.0, 1.0);
    }
    if (on_step) on_step(k, x);
  }
  return x;
}

}  // namespace ebm::train
