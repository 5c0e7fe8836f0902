#include "ebm/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "ebm/error.h"
#include "ebm/json_util.h"
#include "ebm/metrics.h"

namespace ebm {

bool is_region_name(const std::string& name) {
  return name == "left" || name == "right" || name == "top" || name == "bottom";
}

std::vector<float> region_keep_mask(const std::string& region, const Shape& image) {
  if (!is_region_name(region))
    throw Error("unknown region '" + region + "' (left, right, top or bottom: the half to regenerate)");
  std::vector<float> keep(size_t(image.size()), 1.0f);
  for (int c = 0; c < image.c; ++c)
    for (int y = 0; y < image.h; ++y)
      for (int x = 0; x < image.w; ++x) {
        const bool regenerate = region == "left"    ? x < image.w / 2
                                : region == "right" ? x >= image.w / 2
                                : region == "top"   ? y < image.h / 2
                                                    : y >= image.h / 2;
        if (regenerate) keep[(size_t(c) * image.h + size_t(y)) * image.w + size_t(x)] = 0.0f;
      }
  return keep;
}

std::vector<float> parse_guide_target(const std::string& spec,
                                      const std::vector<std::string>& labels) {
  std::vector<std::string> families;
  for (const std::string& l : labels)
    if (std::find(families.begin(), families.end(), family_of(l)) == families.end())
      families.push_back(family_of(l));
  auto known = [&]() {
    std::string s = "families ";
    for (size_t i = 0; i < families.size(); ++i) s += (i ? ", " : "") + families[i];
    s += "; subtypes ";
    for (size_t i = 0; i < labels.size(); ++i) s += (i ? ", " : "") + labels[i];
    return s;
  };
  std::vector<double> t(labels.size(), 0.0);
  std::vector<std::string> seen;
  double total = 0;
  std::vector<std::string> parts;  // split at commas (cli.h's split is native-only)
  for (size_t at = 0; !spec.empty() && at <= spec.size();) {
    const size_t comma = std::min(spec.find(',', at), spec.size());
    parts.push_back(spec.substr(at, comma - at));
    at = comma + 1;
  }
  if (parts.empty()) throw Error("empty guide target; give e.g. arch:0.5,suspension:0.5 (" + known() + ")");
  for (const std::string& part : parts) {
    const size_t colon = part.find(':');
    const std::string name = part.substr(0, colon);
    double share = 1.0;
    if (colon != std::string::npos) {
      const std::string v = part.substr(colon + 1);
      char* end = nullptr;
      share = std::strtod(v.c_str(), &end);
      if (v.empty() || *end != '\0' || !(share > 0.0) || !std::isfinite(share))
        throw Error("guide target '" + part + "': the share must be a number > 0");
    }
    if (std::find(seen.begin(), seen.end(), name) != seen.end())
      throw Error("guide target '" + spec + "' names '" + name + "' twice");
    seen.push_back(name);
    std::vector<size_t> members;
    for (size_t i = 0; i < labels.size(); ++i)
      if (labels[i] == name || family_of(labels[i]) == name) members.push_back(i);
    if (members.empty()) throw Error("unknown guide target '" + name + "' (" + known() + ")");
    // A family: evenly over its subtypes (a subtype named alone is its own one member).
    const auto exact = std::find(labels.begin(), labels.end(), name);
    if (exact != labels.end()) members = {size_t(exact - labels.begin())};
    for (size_t i : members) t[i] += share / double(members.size());
    total += share;
  }
  std::vector<float> out(labels.size());
  for (size_t i = 0; i < t.size(); ++i) out[i] = float(t[i] / total);
  return out;
}

LangevinSampler::LangevinSampler(const Network& net, const SamplerParams& params, uint64_t seed,
                                 int threads)
    : net_(net), pool_(threads), workspaces_(size_t(pool_.size())), params_(params), seed_(seed) {
  if (net.kind() != ModelKind::kEnergy)
    throw Error("Langevin sampling needs an energy model; this model is a classifier");
  if (walks_noise_levels(params.form) && !net.noise_conditional())
    throw Error(std::string("the ") + sampler_form_name(params.form) +
                " sampler needs a noise-conditional model; this model's energy has no noise level "
                "(use the paper or textbook form)");
  check_split(params);
  if (params.autoguide != 1.0f) {
    if (!walks_noise_levels(params.form))
      throw Error(std::string("autoguidance needs a noise-level sampler form (annealed or ddim); "
                              "this one is ") + sampler_form_name(params.form));
    if (!net.autoguide())
      throw Error("this model carries no weaker network to guide by (autoguide " +
                  nlohmann::json(json_float(params.autoguide)).dump() +
                  "): set autoguide to 1, or use a format-3 file written by ebm-export --autoguide");
  }
}

const Network* LangevinSampler::weak_network() const {
  return params_.autoguide != 1.0f ? net_.autoguide() : nullptr;
}

bool LangevinSampler::autoguided(float sigma) const {
  return weak_network() &&
         (params_.autoguide_sigma_max == 0 || sigma <= params_.autoguide_sigma_max);
}

int LangevinSampler::level_count() const { return ebm::level_count(params_); }

int LangevinSampler::level_of(int k) const {
  if (params_.form == SamplerForm::kDdim) return std::min(k, level_count() - 1);
  const int walk = std::max(params_.steps - 1, 1);  // steps before the denoising one
  return std::min(int(int64_t(k) * params_.levels / walk), params_.levels - 1);
}

namespace {
// The noise level a share t in [0, 1] of the way from hi down to lo: evenly in log sigma (rho 0)
// or in sigma^(1/rho), the ends exact.
float spaced_sigma(double hi, double lo, double rho, double t) {
  if (rho == 0) return float(hi * std::pow(lo / hi, t));
  if (t <= 0) return float(hi);
  if (t >= 1) return float(lo);
  const double a = std::pow(hi, 1.0 / rho), b = std::pow(lo, 1.0 / rho);
  return float(std::pow(a + t * (b - a), rho));
}
}  // namespace

float LangevinSampler::sigma_of_level(int level) const {
  const int levels = level_count();
  const SamplerParams& p = params_;
  if (levels <= 1) return p.sigma_min;
  if (p.split_sigma > 0) {  // check_split: 1 <= split_levels <= levels - 2
    if (level < p.split_levels)
      return spaced_sigma(p.sigma_max, p.split_sigma, p.rho, double(level) / p.split_levels);
    return spaced_sigma(p.split_sigma, p.sigma_min, p.rho,
                        double(level - p.split_levels) / double(levels - p.split_levels - 1));
  }
  return spaced_sigma(p.sigma_max, p.sigma_min, p.rho, double(level) / double(levels - 1));
}

float LangevinSampler::current_sigma() const {
  if (!walks_noise_levels(params_.form)) return params_.sigma_min;
  if (done_ == start_step_) return start_sigma_;
  if (done_ >= params_.steps) return params_.sigma_min;
  return sigma_of_level(level_of(done_ - 1));
}

void LangevinSampler::set_max_batch(int chains) {
  if (chains < 0) throw Error("the slice size must be >= 0 chains (0 = automatic), got " + std::to_string(chains));
  max_batch_ = chains;
}

int LangevinSampler::slice_size() const {
  if (max_batch_ > 0) return max_batch_;
  const Network* weak = weak_network();
  auto fits = [&](int n) {
    return net_.workspace_bytes(n) + (guide_ ? guide_->workspace_bytes(n) : 0) +
               (weak ? weak->workspace_bytes(n) : 0) <=
           kSliceBudgetBytes;
  };
  // The most chains whose workspaces fit the budget together (they grow with the chains, by
  // steps where a layer's scratch holds a chunk of images), at least one and at most
  // kSliceMostChains.
  return most_images_that_fit(kSliceMostChains, fits);
}

size_t LangevinSampler::workspace_bytes() const {
  size_t bytes = 0;
  for (const Workspaces& ws : workspaces_) {
    if (ws.energy.capacity_images() > 0) bytes += net_.workspace_bytes(ws.energy.capacity_images());
    if (guide_ && ws.guide.capacity_images() > 0)
      bytes += guide_->workspace_bytes(ws.guide.capacity_images());
    if (net_.autoguide() && ws.autoguide.capacity_images() > 0)
      bytes += net_.autoguide()->workspace_bytes(ws.autoguide.capacity_images());
  }
  return bytes;
}

// Each thread's chains, in slices (slice_size()) so that its workspaces stay small: a chain's
// arithmetic does not depend on which others share its batch.
void LangevinSampler::for_each_group(const std::function<void(Workspaces&, int, int)>& fn) {
  const int groups = std::min(pool_.size(), count_);
  const int slice = slice_size();
  pool_.run(groups, [&](int g) {
    const int b0 = int(int64_t(count_) * g / groups), b1 = int(int64_t(count_) * (g + 1) / groups);
    for (int s0 = b0; s0 < b1; s0 += slice) fn(workspaces_[size_t(g)], s0, std::min(slice, b1 - s0));
  });
}

void LangevinSampler::compute_energies(float* e) {
  const size_t d = size_t(net_.input_size());
  const float sigma = current_sigma();
  for_each_group([&](Workspaces& ws, int b0, int nb) {
    net_.energy(ws.energy, x_.data() + size_t(b0) * d, nb, e + b0, sigma);
  });
}

// A noise-level walk's first step evaluates E at the starting images and level anyway (its
// progress reports them), and at a level of pure noise they say nothing: the start leaves them
// unknown (NaN) instead of spending a forward pass on them, a twentieth of a short walk. The
// other forms report the starting images' energies.
void LangevinSampler::start_energies() {
  if (walks_noise_levels(params_.form))
    std::fill(e_.begin(), e_.end(), std::numeric_limits<float>::quiet_NaN());
  else
    compute_energies(e_.data());
}

void LangevinSampler::begin(int count, uint64_t first_chain) {
  if (count < 1) throw Error("sample count must be at least 1, got " + std::to_string(count));
  const size_t d = size_t(net_.input_size());
  if (size_t(count) > (size_t(1) << 30) / d)
    throw Error("sample count " + std::to_string(count) + " is too large for one batch");
  count_ = count;
  done_ = 0;
  start_step_ = 0;
  start_level_ = 0;
  start_sigma_ = params_.sigma_max;
  if (!keep_.empty() && keep_.size() != d && keep_.size() != size_t(count) * d)
    throw Error("the kept image(s) are " + std::to_string(keep_.size() / d) + " images for " +
                std::to_string(count) + " chains; give one image, or one per chain");
  stop_.store(false);
  rngs_.clear();
  for (int i = 0; i < count; ++i) rngs_.emplace_back(seed_, first_chain + uint64_t(i));
  x_.assign(size_t(count) * d, 0.0f);
  denoised_.assign(walks_noise_levels(params_.form) ? x_.size() : 0, 0.0f);
  grad_.assign(x_.size(), 0.0f);
  noise_.assign(x_.size(), 0.0f);
  e_.assign(size_t(count), 0.0f);
  weak_grad_.assign(weak_network() ? x_.size() : 0, 0.0f);
  weak_e_.assign(weak_network() ? size_t(count) : 0, 0.0f);
  if (guide_) {
    guide_grad_.assign(x_.size(), 0.0f);
    guide_ce_.assign(size_t(count), 0.0f);
    guide_input_.assign(guide_denoised_ ? x_.size() : 0, 0.0f);
  }
}

void LangevinSampler::start_uniform(int count, uint64_t first_chain) {
  begin(count, first_chain);
  const Shape s = net_.input_shape();
  if (walks_noise_levels(params_.form)) {
    const size_t d = size_t(s.size());
    const std::vector<float>& mean = net_.mean_image();
    for (int i = 0; i < count; ++i) {
      float* x = x_.data() + size_t(i) * d;
      rngs_[size_t(i)].fill_normal(x, d);
      for (size_t k = 0; k < d; ++k) x[k] = mean[k] + params_.sigma_max * x[k];
    }
    apply_keep_all(start_sigma_);
    start_energies();
    return;
  }
  const size_t plane = size_t(s.h) * size_t(s.w);
  std::vector<float> corners;
  for (int i = 0; i < count; ++i)
    for (int c = 0; c < s.c; ++c)
      rngs_[size_t(i)].fill_smooth_uniform_pm1(x_.data() + (size_t(i) * s.c + c) * plane, s.h, s.w,
                                               params_.start_cell, corners);
  apply_keep_all(0.0f);
  start_energies();
}

void LangevinSampler::start_from(const float* images, int count, uint64_t first_chain) {
  begin(count, first_chain);
  for (size_t k = 0; k < x_.size(); ++k) {
    if (!std::isfinite(images[k])) throw Error("starting image holds a non-finite value");
    x_[k] = std::clamp(images[k], -1.0f, 1.0f);
  }
  apply_keep_all(walks_noise_levels(params_.form) ? start_sigma_ : 0.0f);
  start_energies();
}

void LangevinSampler::start_blend(const float* a, const float* b, const std::vector<float>& t,
                                  uint64_t first_chain, float strength) {
  if (!(strength >= 0.0f && strength <= 1.0f))
    throw Error("blend strength " + std::to_string(strength) + " is outside [0, 1]");
  const size_t d = size_t(net_.input_size());
  std::vector<float> blends(t.size() * d);
  for (size_t i = 0; i < t.size(); ++i) {
    if (!(t[i] >= 0.0f && t[i] <= 1.0f))
      throw Error("blend weight " + std::to_string(t[i]) + " is outside [0, 1]");
    for (size_t k = 0; k < d; ++k)
      blends[i * d + k] = std::clamp((1.0f - t[i]) * a[k] + t[i] * b[k], -1.0f, 1.0f);
  }
  if (walks_noise_levels(params_.form))
    return start_variation(blends.data(), int(t.size()), strength, first_chain);
  begin(int(t.size()), first_chain);
  std::copy(blends.begin(), blends.end(), x_.begin());
  apply_keep_all(0.0f);
  start_energies();
}

void LangevinSampler::start_variation(const float* images, int count, float strength,
                                      uint64_t first_chain) {
  if (!(strength >= 0.0f && strength <= 1.0f))
    throw Error("variation strength " + std::to_string(strength) + " is outside [0, 1]");
  begin(count, first_chain);
  const Shape s = net_.input_shape();
  const size_t d = size_t(s.size());
  for (size_t k = 0; k < x_.size(); ++k)
    if (!std::isfinite(images[k])) throw Error("starting image holds a non-finite value");
  if (walks_noise_levels(params_.form)) {
    // The level (1 - strength) of the way down, and the first step that walks it.
    start_level_ = int(std::lround(double(1.0f - strength) * (level_count() - 1)));
    while (start_step_ < params_.steps - 1 && level_of(start_step_) < start_level_) ++start_step_;
    start_sigma_ = sigma_of_level(start_level_);
    for (int i = 0; i < count; ++i) {
      float* x = x_.data() + size_t(i) * d;
      rngs_[size_t(i)].fill_normal(x, d);
      for (size_t k = 0; k < d; ++k)
        x[k] = std::clamp(images[size_t(i) * d + k], -1.0f, 1.0f) + start_sigma_ * x[k];
    }
  } else {
    const size_t plane = size_t(s.h) * size_t(s.w);
    std::vector<float> corners;
    for (int i = 0; i < count; ++i)
      for (int c = 0; c < s.c; ++c)
        rngs_[size_t(i)].fill_smooth_uniform_pm1(x_.data() + (size_t(i) * s.c + c) * plane, s.h,
                                                 s.w, params_.start_cell, corners);
    for (size_t k = 0; k < x_.size(); ++k)
      x_[k] = std::clamp((1.0f - strength) * std::clamp(images[k], -1.0f, 1.0f) + strength * x_[k],
                         -1.0f, 1.0f);
    start_step_ = int(std::lround(double(1.0f - strength) * params_.steps));
  }
  done_ = start_step_;
  apply_keep_all(walks_noise_levels(params_.form) ? start_sigma_ : 0.0f);
  start_energies();
}

void LangevinSampler::set_keep(std::vector<float> images, const std::vector<float>& mask) {
  const size_t d = size_t(net_.input_size());
  if (mask.size() != d)
    throw Error("the keep mask has " + std::to_string(mask.size()) + " pixels; the model's images have " +
                std::to_string(d));
  if (images.empty() || images.size() % d != 0)
    throw Error("the kept image has " + std::to_string(images.size()) +
                " values, not a whole number of " + std::to_string(d) + "-pixel images");
  std::vector<uint32_t> kept;
  for (size_t k = 0; k < d; ++k) {
    if (!std::isfinite(mask[k])) throw Error("the keep mask holds a non-finite value");
    if (mask[k] > 0.5f) kept.push_back(uint32_t(k));
  }
  for (float& v : images) {
    if (!std::isfinite(v)) throw Error("the kept image holds a non-finite value");
    v = std::clamp(v, -1.0f, 1.0f);
  }
  keep_ = kept.empty() ? std::vector<float>{} : std::move(images);
  kept_ = std::move(kept);
}

void LangevinSampler::clear_keep() {
  keep_.clear();
  kept_.clear();
}

void LangevinSampler::apply_keep(int b0, int nb, float sigma) {
  if (kept_.empty()) return;
  const size_t d = size_t(net_.input_size()), n = kept_.size();
  const bool shared = keep_.size() == d;
  for (int i = b0; i < b0 + nb; ++i) {
    float* x = x_.data() + size_t(i) * d;
    const float* keep = keep_.data() + (shared ? 0 : size_t(i) * d);
    if (sigma > 0) {
      float* z = noise_.data() + size_t(i) * d;  // free between steps
      rngs_[size_t(i)].fill_normal(z, n);
      for (size_t j = 0; j < n; ++j) x[kept_[j]] = keep[kept_[j]] + sigma * z[j];
    } else {
      for (size_t j = 0; j < n; ++j) x[kept_[j]] = keep[kept_[j]];
    }
  }
}

void LangevinSampler::apply_keep_all(float sigma) { apply_keep(0, count_, sigma); }

void LangevinSampler::store_denoised(int b0, int nb, float sigma) {
  const size_t d = size_t(net_.input_size()), lo = size_t(b0) * d, hi = size_t(b0 + nb) * d;
  const float s2 = sigma * sigma;
  for (size_t k = lo; k < hi; ++k) denoised_[k] = std::clamp(x_[k] - s2 * grad_[k], -1.0f, 1.0f);
  if (kept_.empty()) return;
  const bool shared = keep_.size() == d;
  for (int i = b0; i < b0 + nb; ++i) {
    const float* keep = keep_.data() + (shared ? 0 : size_t(i) * d);
    float* out = denoised_.data() + size_t(i) * d;
    for (uint32_t j : kept_) out[j] = keep[j];
  }
}

void LangevinSampler::set_guide(const Network& classifier, std::vector<float> target,
                                float scale, float sigma_guide, bool on_denoised) {
  if (classifier.kind() != ModelKind::kClassifier)
    throw Error("the guide must be a classifier; this is an energy model");
  if (classifier.input_shape() != net_.input_shape())
    throw Error("the guide classifier takes " + classifier.input_shape().str() +
                " images but the energy model makes " + net_.input_shape().str());
  classifier.check_target(target);
  if (!(scale >= 0.0f) || !std::isfinite(scale))
    throw Error("the guide scale must be a finite number >= 0, got " + std::to_string(scale));
  if (!(sigma_guide > 0.0f))
    throw Error("the guide's noise level must be > 0, got " + std::to_string(sigma_guide));
  if (on_denoised && !walks_noise_levels(params_.form))
    throw Error(std::string("a guide on the denoised estimate needs a noise-level sampler form "
                            "(annealed or ddim); this one is ") + sampler_form_name(params_.form));
  if (classifier.noise_conditional()) {
    if (!walks_noise_levels(params_.form))
      throw Error(std::string("this guide classifier is noise-conditional (trained on noised "
                              "drawings x + sigma z): it needs a noise-level sampler form (annealed "
                              "or ddim) whose chains are such states; this one is ") +
                  sampler_form_name(params_.form) + " (use a clean classifier as the guide)");
    if (on_denoised)
      throw Error("a guide on the denoised estimate reads clean-looking images and needs a clean "
                  "classifier; this one is noise-conditional: it reads the chains' noisy states "
                  "(drop --guide-denoised)");
  }
  guide_ = &classifier;
  guide_denoised_ = on_denoised;
  guide_target_ = std::move(target);
  guide_scale_ = scale;
  guide_sigma_ = sigma_guide;
  guide_grad_.assign(x_.size(), 0.0f);
  guide_ce_.assign(size_t(count_), 0.0f);
  guide_input_.assign(on_denoised ? x_.size() : 0, 0.0f);
}

void LangevinSampler::clear_guide() {
  guide_ = nullptr;
  guide_denoised_ = false;
  guide_target_.clear();
  guide_input_.clear();
  guide_grad_.clear();
  guide_ce_.clear();
}

float LangevinSampler::guide_weight(float sigma) const {
  if (!guide_) return 0.0f;
  // A noise-conditional guide is trained on the chains' states at every level: full strength.
  if (!walks_noise_levels(params_.form) || sigma <= guide_sigma_ || guide_->noise_conditional())
    return guide_scale_;
  return float(double(guide_scale_) * (double(guide_sigma_) / sigma) * (double(guide_sigma_) / sigma));
}

void LangevinSampler::energy_and_grad(Workspaces& ws, int b0, int nb, float sigma) {
  const size_t d = size_t(net_.input_size()), lo = size_t(b0) * d, hi = size_t(b0 + nb) * d;
  net_.energy_and_input_grad(ws.energy, x_.data() + lo, nb, e_.data() + b0, grad_.data() + lo, sigma);
  if (autoguided(sigma)) {
    net_.autoguide()->energy_and_input_grad(ws.autoguide, x_.data() + lo, nb, weak_e_.data() + b0,
                                            weak_grad_.data() + lo, sigma);
    compose_autoguide(grad_.data() + lo, weak_grad_.data() + lo, hi - lo);
  }
  const float w = guide_weight(sigma);
  if (w == 0.0f) return;
  const float* in = x_.data() + lo;
  if (guide_denoised_) {
    const float s2 = sigma * sigma;
    for (size_t k = lo; k < hi; ++k)
      guide_input_[k] = std::clamp(x_[k] - s2 * grad_[k], -1.0f, 1.0f);
    in = guide_input_.data() + lo;
  }
  guide_->cross_entropy_and_input_grad(ws.guide, in, nb, guide_target_, guide_ce_.data() + b0,
                                       guide_grad_.data() + lo, sigma);
  for (size_t k = lo; k < hi; ++k) grad_[k] += w * guide_grad_[k];
}

void LangevinSampler::gradient(const float* x, int n, float sigma, float* e, float* grad) {
  const size_t d = size_t(net_.input_size());
  Workspaces& ws = workspaces_[0];
  net_.energy_and_input_grad(ws.energy, x, n, e, grad, sigma);
  if (autoguided(sigma)) {
    std::vector<float> g(size_t(n) * d), e0(static_cast<size_t>(n));
    net_.autoguide()->energy_and_input_grad(ws.autoguide, x, n, e0.data(), g.data(), sigma);
    compose_autoguide(grad, g.data(), g.size());
  }
  const float w = guide_weight(sigma);
  if (w == 0.0f) return;
  std::vector<float> g(size_t(n) * d), ce(static_cast<size_t>(n)), in(x, x + size_t(n) * d);
  if (guide_denoised_)
    for (size_t k = 0; k < in.size(); ++k)
      in[k] = std::clamp(x[k] - sigma * sigma * grad[k], -1.0f, 1.0f);
  guide_->cross_entropy_and_input_grad(ws.guide, in.data(), n, guide_target_, ce.data(), g.data(),
                                       sigma);
  for (size_t k = 0; k < g.size(); ++k) grad[k] += w * g[k];
}

// grad = w grad + (1 - w) weak: the gradient of w E + (1 - w) E_weak.
void LangevinSampler::compose_autoguide(float* grad, const float* weak, size_t len) const {
  const float w = params_.autoguide, rest = 1.0f - w;
  for (size_t k = 0; k < len; ++k) grad[k] = w * grad[k] + rest * weak[k];
}

void LangevinSampler::step() {
  if (count_ == 0) throw Error("the sampler has no chains; call a start_* method first");
  const size_t d = size_t(net_.input_size());
  const SamplerParams p = params_;
  if (walks_noise_levels(p.form)) {
    annealed_step();
    return;
  }
  const float sigma = current_sigma();  // for a noise-conditional model under the other forms
  for_each_group([&](Workspaces& ws, int b0, int nb) {
    for (int i = b0; i < b0 + nb; ++i) rngs_[size_t(i)].fill_normal(noise_.data() + size_t(i) * d, d);
    const size_t lo = size_t(b0) * d, hi = size_t(b0 + nb) * d;
    float* x = x_.data();
    const float* z = noise_.data();
    const float* g = grad_.data();
    if (p.form == SamplerForm::kPaper) {
      for (size_t k = lo; k < hi; ++k) x[k] = std::clamp(x[k] + p.noise * z[k], -1.0f, 1.0f);
      energy_and_grad(ws, b0, nb, sigma);
      for (size_t k = lo; k < hi; ++k)
        x[k] = std::clamp(x[k] - p.step_size * std::clamp(g[k], -p.grad_clip, p.grad_clip), -1.0f, 1.0f);
    } else {
      const float half_eps = 0.5f * p.eps, root_eps = std::sqrt(p.eps);
      energy_and_grad(ws, b0, nb, sigma);
      for (size_t k = lo; k < hi; ++k)
        x[k] = std::clamp(x[k] - half_eps * g[k] + root_eps * z[k], -1.0f, 1.0f);
    }
    apply_keep(b0, nb, 0.0f);
  });
  ++done_;
}

// Both noise-level forms are x = x - step dE/dx(x, sigma) + fresh N(0,1), and on the last step
// x = clip(x - step dE/dx) (the jump to the denoised image); they differ in sigma, step and fresh.
void LangevinSampler::annealed_step() {
  const size_t d = size_t(net_.input_size());
  const SamplerParams& p = params_;
  const bool last = done_ + 1 >= p.steps;
  float sigma = 0, step = 0, fresh = 0, after = 0;  // after: the level the chains then stand at
  if (p.form == SamplerForm::kDdim) {
    // x = D + s' (eta z + sqrt(1 - eta^2) (x - D) / s), x - D = s^2 dE/dx: a gradient step of
    // size s (s - s' sqrt(1 - eta^2)) plus s' eta of noise; the last (s' = 0) goes to D itself.
    sigma = sigma_of_level(done_);
    const float next = last ? 0.0f : sigma_of_level(done_ + 1);
    step = sigma * (sigma - next * std::sqrt(1.0f - p.eta * p.eta));
    fresh = next * p.eta;
    after = next;
  } else {
    // Langevin with a_i = eps sigma_i^2 / sigma_min^2: step a_i / 2, noise sqrt(a_i); the last
    // step jumps by sigma_min^2 at sigma_min.
    sigma = last ? p.sigma_min : sigma_of_level(level_of(done_));
    const double a = double(p.eps) * sigma * sigma / (double(p.sigma_min) * p.sigma_min);
    step = last ? p.sigma_min * p.sigma_min : float(0.5 * a);
    fresh = float(std::sqrt(a));
    after = last ? 0.0f : sigma;
  }
  const bool again = p.resample_sigma_max == 0 || sigma <= p.resample_sigma_max;
  const int rounds = p.form == SamplerForm::kDdim && !last && again ? p.resample : 1;
  const float back = std::sqrt(std::max(sigma * sigma - after * after, 0.0f));
  for_each_group([&](Workspaces& ws, int b0, int nb) {
    const size_t lo = size_t(b0) * d, hi = size_t(b0 + nb) * d;
    float* x = x_.data();
    const float* g = grad_.data();
    const float* z = noise_.data();
    for (int round = 0; round < rounds; ++round) {
      if (round > 0) {  // back up to this level's noise (RePaint's jump), then the step again
        for (int i = b0; i < b0 + nb; ++i)
          rngs_[size_t(i)].fill_normal(noise_.data() + size_t(i) * d, d);
        for (size_t k = lo; k < hi; ++k) x[k] += back * z[k];
        apply_keep(b0, nb, sigma);
      }
      energy_and_grad(ws, b0, nb, sigma);
      if (round + 1 == rounds) store_denoised(b0, nb, sigma);
      if (last) {
        for (size_t k = lo; k < hi; ++k) x[k] = std::clamp(x[k] - step * g[k], -1.0f, 1.0f);
      } else {
        for (int i = b0; i < b0 + nb; ++i)
          rngs_[size_t(i)].fill_normal(noise_.data() + size_t(i) * d, d);
        for (size_t k = lo; k < hi; ++k) x[k] = x[k] - step * g[k] + fresh * z[k];
      }
      apply_keep(b0, nb, after);
    }
  });
  ++done_;
}

SamplerProgress LangevinSampler::progress(int total) const {
  SamplerProgress p;
  p.step = done_;
  p.total = total;
  p.count = count_;
  p.images = x_.data();
  p.energies = e_.data();
  if (walks_noise_levels(params_.form)) {
    p.sigma = current_sigma();
    p.levels = level_count();
    p.level = done_ == start_step_ ? start_level_
              : done_ >= params_.steps ? p.levels - 1
                                       : level_of(done_ - 1);
    if (done_ > start_step_) p.denoised = denoised_.data();
  }
  return p;
}

int LangevinSampler::run(int every, const Callback& on_progress, int max_steps) {
  const int total = params_.steps;
  const int start = done_;
  const int stop_at = int(std::min<int64_t>(total, int64_t(done_) + std::max(max_steps, 0)));
  if (on_progress && done_ == start_step_ && !on_progress(progress(total))) return 0;
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
  if (count_ > 0) compute_energies(e.data());
  return e;
}

}  // namespace ebm
