#include "langevin.h"

#include <cmath>

#include "ebm/error.h"
#include "ebm/network.h"
#include "ebm/sampler.h"

namespace ebm::train {

const char* langevin_backend_name(LangevinBackend b) {
  return b == LangevinBackend::kRuntime ? "runtime" : "torch";
}

LangevinBackend parse_langevin_backend(const std::string& name) {
  if (name == "runtime") return LangevinBackend::kRuntime;
  if (name == "torch") return LangevinBackend::kTorch;
  throw Error("unknown Langevin backend '" + name + "' (expected runtime or torch)");
}

torch::Tensor energy_input_grad(const EnergyNetImpl& net, const NetWeights& w,
                                const torch::Tensor& x, torch::Tensor* energies,
                                const torch::Tensor& sigma) {
  torch::AutoGradMode grad_on(true);
  torch::Tensor xin = x.detach().requires_grad_(true);
  // An image's energy depends on that image alone, so the gradient of the sum is every image's own.
  const torch::Tensor e =
      sigma.defined() ? net.denoiser_energy(w, xin, sigma) : net.run(w, xin).select(1, 0);
  torch::Tensor g = torch::autograd::grad({e.sum()}, {xin})[0];
  if (energies) *energies = e.detach();
  return g;
}

torch::Tensor langevin_step(const torch::Tensor& x, const torch::Tensor& z, const SamplerParams& p,
                            const std::function<torch::Tensor(const torch::Tensor&)>& grad) {
  if (p.form == SamplerForm::kPaper) {
    const torch::Tensor xn = (x + double(p.noise) * z).clamp(-1.0, 1.0);
    const torch::Tensor g = grad(xn).clamp(-double(p.grad_clip), double(p.grad_clip));
    return (xn - double(p.step_size) * g).clamp(-1.0, 1.0);
  }
  return (x - 0.5 * double(p.eps) * grad(x) + std::sqrt(double(p.eps)) * z).clamp(-1.0, 1.0);
}

namespace {

// The runtime's Network on the current effective weights (batch norm folded) and its sampler.
torch::Tensor langevin_runtime(const EnergyNetImpl& net, const torch::Tensor& x0,
                               const SamplerParams& p, int steps, at::Generator& gen, int threads,
                               const std::atomic<bool>* stop, const LangevinCallback& on_step) {
  const uint64_t seed =
      uint64_t(torch::randint(0, int64_t(1) << 62, {1}, gen, torch::kLong).item<int64_t>());
  const Network rt(net.to_model(ModelKind::kEnergy));
  SamplerParams params = p;
  params.steps = steps;
  LangevinSampler sampler(rt, params, seed, threads);
  const torch::Tensor x = x0.detach().to(torch::kFloat32).contiguous();
  sampler.start_from(x.data_ptr<float>(), int(x.size(0)));
  auto images = [&] {
    return torch::from_blob(const_cast<float*>(sampler.images().data()), x.sizes());
  };
  for (int k = 1; k <= steps; ++k) {
    if (stop && stop->load()) return {};
    sampler.step();
    if (on_step) on_step(k, images());
  }
  return images().clone();
}

}  // namespace

torch::Tensor langevin(const EnergyNetImpl& net, torch::Tensor x, const SamplerParams& p, int steps,
                       at::Generator& gen, LangevinBackend backend, int threads,
                       const std::atomic<bool>* stop, const LangevinCallback& on_step) {
  if (backend == LangevinBackend::kRuntime)
    return langevin_runtime(net, x, p, steps, gen, threads, stop, on_step);
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
  const auto grad = [&](const torch::Tensor& at) { return energy_input_grad(net, w, at); };
  for (int k = 1; k <= steps; ++k) {
    if (stop && stop->load()) return {};
    const torch::Tensor z = torch::randn(x.sizes(), gen, torch::kFloat32);
    x = langevin_step(x, z, p, grad);
    if (on_step) on_step(k, x);
  }
  return x;
}

}  // namespace ebm::train
