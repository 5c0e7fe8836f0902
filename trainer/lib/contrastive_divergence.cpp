// Contrastive divergence with a replay buffer and short Langevin runs: the paper's method
// (SPEC section 1), the book's Examples 7-5 and 7-6.
#include <chrono>

#include "ebm/error.h"
#include "langevin.h"
#include "objective.h"
#include "replay_buffer.h"

namespace ebm::train {

namespace {

class ContrastiveDivergence final : public NoiseContrastValidation {
 public:
  // Every rank keeps 1/N of the buffer and starts it with its share of one global batch.
  ContrastiveDivergence(const TrainConfig& cfg, EnergyNet& net, at::Generator& gen,
                        const Shard& shard)
      : shape_(net->image_shape()),
        buffer_(rank_capacity(cfg, shard), shape_),
        backend_(parse_langevin_backend(cfg.langevin_backend)),
        kl_(cfg.kl_weight > 0) {
    // The buffer starts as one batch of uniform noise (the book's Buffer.__init__).
    buffer_.reset_uniform(std::min<int64_t>(cfg.batch / shard.size, buffer_.capacity()), gen);
  }

  std::vector<std::string> step_figures() const override {
    std::vector<std::string> f = {"reg", "cdiv", "real", "fake", "fresh"};
    if (kl_) f.insert(f.end(), {"kl_energy", "kl_entropy"});
    return f;
  }
  std::string rate_name() const override { return "image_steps_per_s"; }
  std::vector<std::string> summed_figures() const override { return {"fresh"}; }

  std::optional<StepMetrics> step(TrainState& s, const torch::Tensor& real_in, const torch::Tensor&,
                                  const std::atomic<bool>* stop) override {
    const TrainConfig& cfg = s.cfg;
    const torch::Tensor gen_state = s.gen.get_state();  // to undo the draws if stopped
    const int64_t B = real_in.size(0);

    // Real images get a little noise so the model cannot fit the exact pixels (Example 7-6).
    const torch::Tensor real =
        (real_in + cfg.real_noise * torch::randn(real_in.sizes(), s.gen, torch::kFloat32))
            .clamp(-1.0, 1.0);
    int64_t fresh = 0;
    torch::Tensor start = buffer_.draw(B, cfg.fresh, s.gen, &fresh);
    if (cfg.augment > 0 && fresh < B)  // the buffer's images, not the fresh noise before them
      start = torch::cat({start.narrow(0, 0, fresh),
                          augment_images(start.narrow(0, fresh, B - fresh), cfg.augment, s.gen)});
    // With the KL term the last step is taken again below, differentiably, from the one before.
    const bool kl = cfg.kl_weight > 0;
    const int run_steps = cfg.langevin_steps - (kl ? 1 : 0);
    torch::Tensor fake = run_steps > 0 ? langevin(*s.net, start, cfg.sampler, run_steps, s.gen,
                                                  backend_, torch::get_num_threads(), stop)
                                       : start;
    if (!fake.defined() || (kl && stop && stop->load())) {
      s.gen.set_state(gen_state);
      return std::nullopt;
    }

    s.net->power_iteration();
    s.net->train();
    torch::Tensor kl_term;
    double kl_energy = 0, kl_entropy = 0;
    if (kl) {
      const torch::Tensor z = torch::randn(fake.sizes(), s.gen, torch::kFloat32);
      const torch::Tensor last = last_langevin_step(*s.net, fake, z, cfg.sampler);
      const torch::Tensor bank = buffer_.newest(std::min<int64_t>(buffer_.size(), kKlBank));
      kl_term = cfg.kl_weight * kl_loss(*s.net, last, bank, &kl_energy, &kl_entropy);
      fake = last.detach();
    }
    const torch::Tensor out = s.net->forward(torch::cat({real, fake})).select(1, 0);
    const torch::Tensor e_real = out.narrow(0, 0, B), e_fake = out.narrow(0, B, B);
    const torch::Tensor cdiv = e_real.mean() - e_fake.mean();
    const torch::Tensor reg = cfg.alpha * (e_real.square() + e_fake.square()).mean();
    const torch::Tensor loss = kl ? cdiv + reg + kl_term : cdiv + reg;
    descend(s, loss);
    buffer_.push_front(fake);

    StepMetrics m;
    m.loss = loss.item<double>();
    const double e_r = e_real.mean().item<double>(), e_f = e_fake.mean().item<double>();
    m.figures.set("reg", reg.item<double>());
    m.figures.set("cdiv", cdiv.item<double>());
    m.figures.set("real", e_r);
    m.figures.set("fake", e_f);
    m.figures.set("fresh", double(fresh));
    if (kl) {
      m.figures.set("kl_energy", kl_energy);
      m.figures.set("kl_entropy", kl_entropy);
    }
    m.work = double(B) * cfg.langevin_steps;
    m.healthy = std::isfinite(m.loss) && std::isfinite(e_r) && std::isfinite(e_f) &&
                std::abs(e_r) <= cfg.max_energy && std::abs(e_f) <= cfg.max_energy &&
                parameters_finite(*s.net);
    return m;
  }

  std::string progress(const StepMetrics& m) const override {
    return "cdiv " + short_number(m.figures.get("cdiv"), 3) + " real " +
           short_number(m.figures.get("real"), 3) + " fake " +
           short_number(m.figures.get("fake"), 3);
  }
  const char* rate_unit() const override { return "img-steps/s"; }

  const ReplayBuffer* buffer() const override { return &buffer_; }
  void save(torch::serialize::OutputArchive& out) const override {
    out.write("buffer", buffer_.ordered(), true);
  }
  void load(torch::serialize::InputArchive& in) override {
    torch::Tensor buf;
    in.read("buffer", buf, true);
    buffer_.restore(buf);
  }
  size_t state_bytes() const override {
    return size_t(buffer_.size()) * size_t(shape_.size()) * 4;
  }
  torch::Tensor rank_state() const override { return buffer_.ordered(); }
  void restore_rank_state(const torch::Tensor& state) override { buffer_.restore(state); }

 private:
  static int64_t rank_capacity(const TrainConfig& cfg, const Shard& shard) {
    if (cfg.buffer_size < shard.size)
      throw Error("the replay buffer (--buffer-size " + std::to_string(cfg.buffer_size) +
                  ") is split over " + std::to_string(shard.size) +
                  " processes and needs at least one image for each");
    return cfg.buffer_size / shard.size;
  }

  // The KL term's entropy compares a batch with this many of the buffer's newest images.
  static constexpr int64_t kKlBank = 512;

  Shape shape_;
  ReplayBuffer buffer_;
  LangevinBackend backend_;
  bool kl_;
};

}  // namespace

Figures NoiseContrastValidation::validate(const TrainConfig& cfg, const EnergyNetImpl& net,
                                          const Dataset&, const torch::Tensor& images,
                                          at::Generator& gen) const {
  torch::NoGradGuard no_grad;
  const int64_t n = images.size(0);
  double sum_real = 0, sum_noise = 0;
  for (int64_t i = 0; i < n; i += cfg.batch) {
    const int64_t b = std::min<int64_t>(cfg.batch, n - i);
    const torch::Tensor x = images.narrow(0, i, b);
    const torch::Tensor noise = torch::rand(x.sizes(), gen, torch::kFloat32) * 2.0 - 1.0;
    sum_real += net.forward(x).sum().item<double>();
    sum_noise += net.forward(noise).sum().item<double>();
  }
  Figures v;
  v.set("cdiv", (sum_real - sum_noise) / double(n));
  v.set("real", sum_real / double(n));
  v.set("fake", sum_noise / double(n));
  return v;
}

nlohmann::json NoiseContrastValidation::validation_json(const Figures& v) const {
  return {{"cdiv", v.get("cdiv")}, {"real", v.get("real")}, {"noise", v.get("fake")}};
}

std::string NoiseContrastValidation::describe(const Figures& v) const {
  return "cdiv " + short_number(v.get("cdiv")) + " (real " + short_number(v.get("real")) +
         ", noise " + short_number(v.get("fake")) + ")";
}

torch::Tensor last_langevin_step(const EnergyNetImpl& net, const torch::Tensor& x,
                                 const torch::Tensor& z, const SamplerParams& p) {
  if (p.form != SamplerForm::kPaper && p.form != SamplerForm::kTextbook)
    throw Error(std::string("the KL term differentiates a paper or textbook Langevin step, not ") +
                sampler_form_name(p.form));
  torch::AutoGradMode grad_on(true);
  // langevin()'s step (langevin.h), the gradient kept as a function of the weights
  // (create_graph); the state it starts from is a constant.
  return langevin_step(x.detach(), z, p, [&](const torch::Tensor& at) {
    const torch::Tensor xin = at.detach().requires_grad_(true);
    const torch::Tensor e = net.forward(xin).select(1, 0).sum();
    return torch::autograd::grad({e}, {xin}, {}, true, true)[0];
  });
}

torch::Tensor kl_loss(const EnergyNetImpl& net, const torch::Tensor& samples,
                      const torch::Tensor& bank, double* energy, double* entropy) {
  const int64_t n = samples.size(0);
  // dE/dx at the samples with the weights held constant: (x . that).sum() has the gradient of
  // E_const(x(weights)) with respect to the weights, through x alone.
  torch::Tensor e;
  const torch::Tensor gx = energy_input_grad(net, net.weights(), samples, &e);
  const torch::Tensor through = (samples * gx).sum() / double(n);
  // Distances to the nearest bank image, from squared norms (kept above 1e-8 so that a sample
  // equal to a bank image has a finite gradient).
  const torch::Tensor xf = samples.flatten(1), bf = bank.detach().flatten(1).to(xf.dtype());
  const torch::Tensor d2 = (xf.square().sum(1, true) + bf.square().sum(1).unsqueeze(0) -
                            2.0 * torch::matmul(xf, bf.t()))
                               .clamp_min(1e-8);
  const torch::Tensor log_nn = std::get<0>(d2.min(1)).sqrt().log().mean();
  if (energy) *energy = e.detach().mean().item<double>();
  if (entropy) *entropy = log_nn.detach().item<double>();
  return through - log_nn;
}

torch::Tensor augment_images(const torch::Tensor& x, double p, at::Generator& gen) {
  constexpr int64_t kShiftX = 8, kShiftY = 2;
  const int64_t n = x.size(0), h = x.size(2), w = x.size(3);
  // Every image draws the same four numbers whether it is changed or not, so the stream does not
  // depend on which were.
  const torch::Tensor u = torch::rand({n, 2}, gen, torch::kDouble);
  const torch::Tensor dx = torch::randint(-kShiftX, kShiftX + 1, {n}, gen, torch::kLong);
  const torch::Tensor dy = torch::randint(-kShiftY, kShiftY + 1, {n}, gen, torch::kLong);
  const torch::Tensor padded = torch::nn::functional::pad(
      x.detach(), torch::nn::functional::PadFuncOptions({kShiftX, kShiftX, kShiftY, kShiftY})
                      .mode(torch::kReplicate));
  torch::Tensor out = x.detach().clone();
  for (int64_t i = 0; i < n; ++i) {
    if (u[i][0].item<double>() >= p) continue;
    torch::Tensor img = padded[i]
                            .narrow(1, kShiftY + dy[i].item<int64_t>(), h)
                            .narrow(2, kShiftX + dx[i].item<int64_t>(), w);
    if (u[i][1].item<double>() < 0.5) img = img.flip({2});
    out[i].copy_(img);
  }
  return out;
}

std::unique_ptr<TrainingObjective> make_contrastive_divergence(const TrainConfig& cfg,
                                                               EnergyNet& net, at::Generator& gen,
                                                               const Shard& shard) {
  return std::make_unique<ContrastiveDivergence>(cfg, net, gen, shard);
}

}  // namespace ebm::train
