#include "trainer.h"

#include <chrono>
#include <cmath>

#include "ebm/error.h"
#include "langevin.h"

namespace ebm::train {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

torch::optim::AdamOptions& adam_options(torch::optim::Adam& opt) {
  return static_cast<torch::optim::AdamOptions&>(opt.param_groups().at(0).options());
}

}  // namespace

EnergyForm config_energy_form(const TrainConfig& cfg) {
  const nlohmann::json& a = cfg.architecture;
  return a.is_object() && a.contains("energy") ? parse_energy_form(a.at("energy")) : EnergyForm{};
}

Architecture config_architecture(const TrainConfig& cfg) {
  const nlohmann::json& a = cfg.architecture;
  if (!a.is_object() || !a.contains("input") || !a.contains("layers"))
    throw Error("run configuration has no architecture");
  return resolve_architecture(layers_input(parse_input_shape(a.at("input")), config_energy_form(cfg)),
                              a.at("layers"));
}

nlohmann::json architecture_json(const Architecture& arch, const EnergyForm& energy) {
  nlohmann::json j = {{"input", input_shape_json(image_shape(arch, energy))},
                      {"layers", arch.layers_json()}};
  if (energy.denoiser) j["energy"] = energy_form_json(energy);
  return j;
}

Trainer::Trainer(const TrainConfig& cfg, std::vector<std::string> labels)
    : cfg_(cfg),
      labels_(std::move(labels)),
      arch_(config_architecture(cfg)),
      net_(arch_, cfg.seed, cfg.spectral_norm, config_energy_form(cfg)),
      buffer_(cfg.task == Task::kEnergy && cfg.objective == Objective::kContrastiveDivergence
                  ? cfg.buffer_size
                  : 1,
              net_->image_shape()),
      gen_(at::make_generator<at::CPUGeneratorImpl>(cfg.seed ^ 0x9e3779b97f4a7c15ull)) {
  if (cfg_.task == Task::kClassify && int(labels_.size()) != arch_.output().c)
    throw Error("classifier outputs " + std::to_string(arch_.output().c) + " logits but has " +
                std::to_string(labels_.size()) + " labels");
  if (cfg_.task == Task::kEnergy && arch_.output().c != 1)
    throw Error("an energy model must output one number, this architecture outputs " +
                std::to_string(arch_.output().c));
  if (cfg_.batch < 1) throw Error("batch size must be at least 1");
  backend_ = parse_langevin_backend(cfg_.langevin_backend);
  if (cfg_.task == Task::kEnergy && cfg_.objective == Objective::kDenoisingScoreMatching) {
    if (!net_->energy_form().denoiser)
      throw Error("denoising score matching needs a denoiser energy (a preset with "
                  "\"energy\": {\"form\": \"denoiser\"}, such as unet); preset '" + cfg_.preset +
                  "' is a scalar energy for contrastive divergence (--objective cd)");
    if (!(cfg_.sigma_min > 0 && cfg_.sigma_min <= cfg_.sigma_max))
      throw Error("noise levels need 0 < sigma_min <= sigma_max");
    ema_ = EnergyNet(arch_, cfg.seed, cfg.spectral_norm, net_->energy_form());
    ema_->load_state(net_->state());
  } else if (net_->energy_form().denoiser) {
    throw Error("a denoiser energy is trained by denoising score matching (--objective dsm)");
  }
  opt_ = std::make_unique<torch::optim::Adam>(
      net_->parameters(),
      torch::optim::AdamOptions(cfg_.lr).betas({cfg_.beta1, cfg_.beta2}).eps(cfg_.adam_eps));
  // The buffer starts as one batch of uniform noise (the book's Buffer.__init__).
  if (cfg_.task == Task::kEnergy && cfg_.objective == Objective::kContrastiveDivergence)
    buffer_.reset_uniform(std::min<int64_t>(cfg_.batch, cfg_.buffer_size), gen_);
}

ModelKind Trainer::kind() const {
  return cfg_.task == Task::kClassify ? ModelKind::kClassifier : ModelKind::kEnergy;
}

void Trainer::set_data_mean(const torch::Tensor& images) {
  if (!net_->energy_form().denoiser) return;
  const torch::Tensor mean = images.mean(0);
  net_->set_mean(mean);
  if (ema_) ema_->set_mean(mean);
}

double Trainer::lr() const {
  return adam_options(*opt_).lr();
}
void Trainer::set_lr(double lr) {
  adam_options(*opt_).lr(lr);
}
void Trainer::reseed(uint64_t seed) {
  gen_.set_current_seed(seed);
}

bool Trainer::parameters_finite() const {
  for (const torch::Tensor& p : net_->parameters())
    if (!torch::isfinite(p).all().item<bool>()) return false;
  return true;
}

std::optional<StepMetrics> Trainer::step(const torch::Tensor& real, const torch::Tensor& labels,
                                         const std::atomic<bool>* stop) {
  if (!parameters_finite()) {
    // Poisoned weights (the runtime refuses them, LibTorch would spread NaN): a diverged step.
    StepMetrics m;
    m.lr = lr();
    m.healthy = false;
    ++counters_.step;
    ++counters_.step_in_epoch;
    return m;
  }
  if (cfg_.task == Task::kClassify) return classify_step(real, labels);
  if (cfg_.objective == Objective::kDenoisingScoreMatching) return dsm_step(real);
  bool stopped = false;
  StepMetrics m = energy_step(real, stop, &stopped);
  if (stopped) return std::nullopt;
  return m;
}

StepMetrics Trainer::energy_step(const torch::Tensor& real_in, const std::atomic<bool>* stop,
                                 bool* stopped) {
  const auto t0 = std::chrono::steady_clock::now();
  const torch::Tensor gen_state = gen_.get_state();  // to undo the draws if stopped
  const int64_t B = real_in.size(0);

  // Real images get a little noise so the model cannot fit the exact pixels (Example 7-6).
  const torch::Tensor real =
      (real_in + cfg_.real_noise * torch::randn(real_in.sizes(), gen_, torch::kFloat32))
          .clamp(-1.0, 1.0);
  StepMetrics m;
  const torch::Tensor start = buffer_.draw(B, cfg_.fresh, gen_, &m.fresh);
  const torch::Tensor fake = langevin(*net_, start, cfg_.sampler, cfg_.langevin_steps, gen_,
                                      backend_, torch::get_num_threads(), stop);
  if (!fake.defined()) {
    gen_.set_state(gen_state);
    *stopped = true;
    return m;
  }

  net_->power_iteration();
  net_->train();
  const torch::Tensor out = net_->forward(torch::cat({real, fake})).select(1, 0);
  const torch::Tensor e_real = out.narrow(0, 0, B), e_fake = out.narrow(0, B, B);
  const torch::Tensor cdiv = e_real.mean() - e_fake.mean();
  const torch::Tensor reg = cfg_.alpha * (e_real.square() + e_fake.square()).mean();
  const torch::Tensor loss = cdiv + reg;
  opt_->zero_grad();
  loss.backward();
  if (cfg_.clip_grad_norm > 0)
    torch::nn::utils::clip_grad_norm_(net_->parameters(), cfg_.clip_grad_norm);
  opt_->step();
  buffer_.push_front(fake);

  m.loss = loss.item<double>();
  m.reg = reg.item<double>();
  m.cdiv = cdiv.item<double>();
  m.real = e_real.mean().item<double>();
  m.fake = e_fake.mean().item<double>();
  m.lr = lr();
  m.seconds = seconds_since(t0);
  m.rate = double(B) * cfg_.langevin_steps / std::max(m.seconds, 1e-9);
  m.healthy = std::isfinite(m.loss) && std::isfinite(m.real) && std::isfinite(m.fake) &&
              std::abs(m.real) <= cfg_.max_energy && std::abs(m.fake) <= cfg_.max_energy &&
              parameters_finite();
  ++counters_.step;
  ++counters_.step_in_epoch;
  return m;
}

torch::Tensor Trainer::dsm_loss(const EnergyNetImpl& net, const torch::Tensor& x,
                               const torch::Tensor& sigma, const torch::Tensor& z,
                               bool create_graph) const {
  const torch::Tensor s = sigma.view({-1, 1, 1, 1});
  const torch::Tensor noisy = (x + s * z).detach().requires_grad_(true);
  const torch::Tensor e = net.denoiser_energy(net.weights(), noisy, sigma);
  const torch::Tensor g = torch::autograd::grad({e.sum()}, {noisy}, {}, /*retain_graph=*/create_graph,
                                                create_graph)[0];
  const double sd = net.energy_form().sigma_data;
  // (sigma^2 + floor^2) / sigma_data^2: about the same weight on the network's output error at
  // every noise level above the floor (|sigma dE/dx - z| ~ |D - x| / sigma, D = mean + sd F), so
  // the tiny levels, which need D to copy the input exactly, do not crowd out the middle ones,
  // where the layout is decided.
  const double floor2 = cfg_.loss_sigma_floor * cfg_.loss_sigma_floor;
  const torch::Tensor weight = (sigma.square() + floor2) / (sd * sd);
  return weight * (s * g - z).square().flatten(1).mean(1);
}

StepMetrics Trainer::dsm_step(const torch::Tensor& x) {
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t B = x.size(0);
  // Noise levels log-normal (Karras et al. 2022), clamped to the range the sampler walks.
  const torch::Tensor sigma =
      (torch::randn({B}, gen_, torch::kFloat32) * cfg_.sigma_std + cfg_.sigma_mean)
          .exp()
          .clamp(cfg_.sigma_min, cfg_.sigma_max);
  const torch::Tensor z = torch::randn(x.sizes(), gen_, torch::kFloat32);
  net_->power_iteration();
  net_->train();
  const torch::Tensor loss = dsm_loss(*net_, x, sigma, z, /*create_graph=*/true).mean();
  opt_->zero_grad();
  loss.backward();
  if (cfg_.clip_grad_norm > 0)
    torch::nn::utils::clip_grad_norm_(net_->parameters(), cfg_.clip_grad_norm);
  opt_->step();
  {
    torch::NoGradGuard no_grad;
    // Warm-up: the average forgets the random initial weights within the first steps instead of
    // carrying 0.999^step of them.
    const double t = double(counters_.step);
    const double decay = std::min(cfg_.ema, (1.0 + t) / (10.0 + t));
    const std::vector<torch::Tensor> src = net_->parameters(), dst = ema_->parameters();
    for (size_t i = 0; i < src.size(); ++i) dst[i].mul_(decay).add_(src[i], 1.0 - decay);
  }
  StepMetrics m;
  m.loss = loss.item<double>();
  m.lr = lr();
  m.seconds = seconds_since(t0);
  m.rate = double(B) / std::max(m.seconds, 1e-9);
  m.healthy = std::isfinite(m.loss) && parameters_finite();
  ++counters_.step;
  ++counters_.step_in_epoch;
  return m;
}

StepMetrics Trainer::classify_step(const torch::Tensor& real, const torch::Tensor& labels) {
  const auto t0 = std::chrono::steady_clock::now();
  net_->train();
  const torch::Tensor logits = net_->forward(real);
  const torch::Tensor loss = torch::nn::functional::cross_entropy(logits, labels);
  opt_->zero_grad();
  loss.backward();
  if (cfg_.clip_grad_norm > 0)
    torch::nn::utils::clip_grad_norm_(net_->parameters(), cfg_.clip_grad_norm);
  opt_->step();
  StepMetrics m;
  m.loss = loss.item<double>();
  m.accuracy = logits.argmax(1).eq(labels).to(torch::kFloat64).mean().item<double>();
  m.lr = lr();
  m.seconds = seconds_since(t0);
  m.rate = double(real.size(0)) / std::max(m.seconds, 1e-9);
  m.healthy = std::isfinite(m.loss) && parameters_finite();
  ++counters_.step;
  ++counters_.step_in_epoch;
  return m;
}

ValMetrics Trainer::validate(const Dataset& val, uint64_t noise_seed) const {
  ValMetrics v;
  const int64_t n = val.size();
  if (n == 0) return v;
  const Shape s = net_->image_shape();
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(noise_seed);
  const torch::Tensor images =
      torch::from_blob(const_cast<float*>(val.images.data()), {n, s.c, s.h, s.w}, torch::kFloat32);
  if (cfg_.objective == Objective::kDenoisingScoreMatching && cfg_.task == Task::kEnergy) {
    // The loss of the moving average at noise levels spread evenly in log sigma over the
    // training range, image i at level i mod 8, the noise from the validation generator.
    double sum = 0;
    for (int64_t i = 0; i < n; i += cfg_.batch) {
      const int64_t b = std::min<int64_t>(cfg_.batch, n - i);
      const torch::Tensor t = (torch::arange(i, i + b) % 8).to(torch::kFloat32) / 7.0;
      const torch::Tensor sigma =
          (std::log(cfg_.sigma_min) + t * (std::log(cfg_.sigma_max) - std::log(cfg_.sigma_min))).exp();
      const torch::Tensor z = torch::randn({b, s.c, s.h, s.w}, gen, torch::kFloat32);
      sum += dsm_loss(*model_net(), images.narrow(0, i, b), sigma, z, false).sum().item<double>();
    }
    v.loss = sum / double(n);
    return v;
  }
  torch::NoGradGuard no_grad;
  double sum_a = 0, sum_b = 0, correct = 0;
  for (int64_t i = 0; i < n; i += cfg_.batch) {
    const int64_t b = std::min<int64_t>(cfg_.batch, n - i);
    const torch::Tensor x = images.narrow(0, i, b);
    if (cfg_.task == Task::kEnergy) {
      const torch::Tensor noise = torch::rand({b, s.c, s.h, s.w}, gen, torch::kFloat32) * 2.0 - 1.0;
      sum_a += net_->forward(x).sum().item<double>();
      sum_b += net_->forward(noise).sum().item<double>();
    } else {
      std::vector<int64_t> lab(val.labels.begin() + i, val.labels.begin() + i + b);
      const torch::Tensor y = torch::tensor(lab, torch::kLong);
      const torch::Tensor logits = net_->forward(x);
      sum_a +=
          torch::nn::functional::cross_entropy(
              logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
              .item<double>();
      correct += logits.argmax(1).eq(y).sum().item<double>();
    }
  }
  if (cfg_.task == Task::kEnergy) {
    v.real = sum_a / double(n);
    v.fake = sum_b / double(n);
    v.cdiv = v.real - v.fake;
  } else {
    v.loss = sum_a / double(n);
    v.accuracy = correct / double(n);
  }
  return v;
}

}  // namespace ebm::train
