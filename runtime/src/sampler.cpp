#include "ebm/sampler.h"

#include <algorithm>
#include <cmath>

#include "ebm/error.h"

namespace ebm {

LangevinSampler::LangevinSampler(Network& net, const SamplerParams& params, uint64_t seed)
    : net_(net), params_(params), seed_(seed) {
  if (net.kind() != ModelKind::kEnergy)
    throw Error("Langevin sampling needs an energy model; this model is a classifier");
}

void LangevinSampler::begin(int count, uint64_t first_chain) {
  if (count < 1) throw Error("sample count must be at least 1, got " + std::to_string(count));
  const size_t d = size_t(net_.input_size());
  if (size_t(count) > (size_t(1) << 30) / d)
    throw Error("sample count " + std::to_string(count) + " is too large for one batch");
  count_ = count;
  done_ = 0;
  stop_.store(false);
  rngs_.clear();
  for (int i = 0; i < count; ++i) rngs_.emplace_back(seed_, first_chain + uint64_t(i));
  x_.assign(size_t(count) * d, 0.0f);
  grad_.assign(x_.size(), 0.0f);
  noise_.assign(x_.size(), 0.0f);
  e_.assign(size_t(count), 0.0f);
  net_.reserve(count);
}

void LangevinSampler::start_uniform(int count, uint64_t first_chain) {
  begin(count, first_chain);
  const size_t d = size_t(net_.input_size());
  for (int i = 0; i < count; ++i) rngs_[i].fill_uniform_pm1(x_.data() + i * d, d);
  net_.energy(x_.data(), count_, e_.data());
}

void LangevinSampler::start_from(const float* images, int count, uint64_t first_chain) {
  begin(count, first_chain);
  for (size_t k = 0; k < x_.size(); ++k) {
    if (!std::isfinite(images[k])) throw Error("starting image holds a non-finite value");
    x_[k] = std::clamp(images[k], -1.0f, 1.0f);
  }
  net_.energy(x_.data(), count_, e_.data());
}

void LangevinSampler::start_blend(const float* a, const float* b, const std::vector<float>& t,
                                  uint64_t first_chain) {
  begin(int(t.size()), first_chain);
  const size_t d = size_t(net_.input_size());
  for (size_t i = 0; i < t.size(); ++i) {
    if (!(t[i] >= 0.0f && t[i] <= 1.0f))
      throw Error("blend weight " + std::to_string(t[i]) + " is outside [0, 1]");
    for (size_t k = 0; k < d; ++k)
      x_[i * d + k] = std::clamp((1.0f - t[i]) * a[k] + t[i] * b[k], -1.0f, 1.0f);
  }
  net_.energy(x_.data(), count_, e_.data());
}

void LangevinSampler::step() {
  if (count_ == 0) throw Error("the sampler has no chains; call a start_* method first");
  const size_t d = size_t(net_.input_size());
  for (int i = 0; i < count_; ++i) rngs_[i].fill_normal(noise_.data() + i * d, d);
  const size_t len = x_.size();
  float* x = x_.data();
  const float* z = noise_.data();
  const float* g = grad_.data();
  if (params_.form == SamplerForm::kPaper) {
    const float sigma = params_.noise, lr = params_.step_size, gc = params_.grad_clip;
    for (size_t k = 0; k < len; ++k) x[k] = std::clamp(x[k] + sigma * z[k], -1.0f, 1.0f);
    net_.energy_and_input_grad(x, count_, e_.data(), grad_.data());
    for (size_t k = 0; k < len; ++k)
      x[k] = std::clamp(x[k] - lr * std::clamp(g[k], -gc, gc), -1.0f, 1.0f);
  } else {
    const float half_eps = 0.5f * params_.eps, root_eps = std::sqrt(params_.eps);
    net_.energy_and_input_grad(x, count_, e_.data(), grad_.data());
    for (size_t k = 0; k < len; ++k)
      x[k] = std::clamp(x[k] - half_eps * g[k] + root_eps * z[k], -1.0f, 1.0f);
  }
  ++done_;
}

SamplerProgress LangevinSampler::progress(int total) const {
  SamplerProgress p;
  p.step = done_;
  p.total = total;
  p.count = count_;
  p.images = x_.data();
  p.energies = e_.data();
  return p;
}

int LangevinSampler::run(int every, const Callback& on_progress, int max_steps) {
  const int total = params_.steps;
  const int start = done_;
  const int stop_at = int(std::min<int64_t>(total, int64_t(done_) + std::max(max_steps, 0)));
  if (on_progress && done_ == 0 && !on_progress(progress(total))) return 0;
  while (done_ < stop_at) {
    if (stop_.exchange(false)) break;
    step();
    const bool report = every > 0 ? (done_ % every == 0 || done_ == total) : done_ == total;
    if (on_progress && report && !on_progress(progress(total))) break;
  }
  return done_ - start;
}

std::vector<float> LangevinSampler::final_energies() {
  std::vector<float> e(static_cast<size_t>(count_));
  if (count_ > 0) net_.energy(x_.data(), count_, e.data());
  return e;
}

}  // namespace ebm
