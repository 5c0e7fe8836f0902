// Denoising score matching of a noise-conditional denoiser energy E(x, sigma) (SPEC section 1b):
// no chains while training, one double backward pass per step, and an exponential moving average
// of the weights, which is what a model is made from.
#include "ebm/error.h"
#include "objective.h"

namespace ebm::train {

namespace {

class DenoisingScoreMatching final : public TrainingObjective {
 public:
  DenoisingScoreMatching(const TrainConfig& cfg, EnergyNet& net) {
    if (!net->energy_form().denoiser)
      throw Error("denoising score matching needs a denoiser energy (a preset with "
                  "\"energy\": {\"form\": \"denoiser\"}, such as unet); preset '" + cfg.preset +
                  "' is a scalar energy for contrastive divergence (--objective cd)");
    if (!(cfg.sigma_min > 0 && cfg.sigma_min <= cfg.sigma_max))
      throw Error("noise levels need 0 < sigma_min <= sigma_max");
    average_ = EnergyNet(net->architecture(), cfg.seed, cfg.spectral_norm, net->energy_form());
    average_->to(net->device());
    average_->load_state(net->state());
  }

  std::vector<std::string> step_figures() const override { return {}; }
  std::string rate_name() const override { return "images_per_s"; }
  std::vector<std::string> validation_figures() const override { return {"loss"}; }

  std::optional<StepMetrics> step(TrainState& s, const torch::Tensor& x, const torch::Tensor&,
                                  const std::atomic<bool>*) override {
    const TrainConfig& cfg = s.cfg;
    const int64_t B = x.size(0);
    // The draws are made for the whole global batch, the same on every rank (the generator too
    // stays the same everywhere), and each rank takes its slice: N processes draw exactly what one
    // would. Noise levels log-normal (Karras et al. 2022), clamped to the range the sampler walks.
    const int64_t global = B * s.shard.size, first = B * s.shard.rank;
    std::vector<int64_t> zshape = x.sizes().vec();
    zshape[0] = global;
    // Drawn on the CPU and copied to the training device: the same draws on every device.
    const torch::Tensor sigma =
        (torch::randn({global}, s.gen, torch::kFloat32) * cfg.sigma_std + cfg.sigma_mean)
            .exp()
            .clamp(cfg.sigma_min, cfg.sigma_max)
            .narrow(0, first, B)
            .to(x.device());
    const torch::Tensor z =
        torch::randn(zshape, s.gen, torch::kFloat32).narrow(0, first, B).to(x.device());
    s.net->power_iteration();
    s.net->train();
    const torch::Tensor loss = dsm_loss(cfg, *s.net, x, sigma, z, /*create_graph=*/true).mean();
    descend(s, loss);
    {
      torch::NoGradGuard no_grad;
      // Warm-up: the average forgets the random initial weights within the first steps instead
      // of carrying 0.999^step of them.
      const double t = double(s.counters.step);
      const double decay = std::min(cfg.ema, (1.0 + t) / (10.0 + t));
      const std::vector<torch::Tensor> src = s.net->parameters(), dst = average_->parameters();
      // Frozen layers (--freeze-layers) stay as they are: d x + (1 - d) x need not round to x.
      for (size_t i = 0; i < src.size(); ++i)
        if (src[i].requires_grad()) dst[i].mul_(decay).add_(src[i], 1.0 - decay);
    }
    StepMetrics m;
    m.loss = loss.item<double>();
    m.work = double(B);
    m.healthy = std::isfinite(m.loss) && parameters_finite(*s.net);
    // A loss far above the recent ones: the step that starts a blow-up (the weights it changed
    // are rolled back with the moving average, before the average takes them in for long).
    if (m.healthy && cfg.max_loss_ratio > 0 && loss_mean_ > 0 &&
        m.loss > cfg.max_loss_ratio * loss_mean_) {
      m.healthy = false;
      m.diagnosis = short_number(m.loss / loss_mean_, 3) + " times the running mean " +
                    short_number(loss_mean_, 3) + ", above --max-loss-ratio " +
                    short_number(cfg.max_loss_ratio);
    } else if (m.healthy) {
      loss_mean_ = loss_mean_ > 0 ? 0.98 * loss_mean_ + 0.02 * m.loss : m.loss;
    }
    return m;
  }

  // The loss of the moving average at noise levels spread evenly in log sigma over the training
  // range, image i at level i mod 8.
  Figures validate(const TrainConfig& cfg, const EnergyNetImpl&, const Dataset&,
                   const torch::Tensor& images, at::Generator& gen) const override {
    const int64_t n = images.size(0);
    double sum = 0;
    for (int64_t i = 0; i < n; i += cfg.batch) {
      const int64_t b = std::min<int64_t>(cfg.batch, n - i);
      const torch::Tensor t = (torch::arange(i, i + b) % 8).to(torch::kFloat32) / 7.0;
      const torch::Tensor x = images.narrow(0, i, b);
      const torch::Tensor sigma =
          (std::log(cfg.sigma_min) + t * (std::log(cfg.sigma_max) - std::log(cfg.sigma_min)))
              .exp()
              .to(x.device());
      const torch::Tensor z = torch::randn(x.sizes(), gen, torch::kFloat32).to(x.device());
      sum += dsm_loss(cfg, *average_, x, sigma, z, false).sum().item<double>();
    }
    Figures v;
    v.set("loss", sum / double(n));
    return v;
  }
  std::string describe(const Figures& v) const override {
    return "loss " + short_number(v.get("loss")) + " (moving average, 8 noise levels)";
  }
  std::string progress(const StepMetrics& m) const override {
    return "loss " + short_number(m.loss, 3) + " lr " + short_number(m.lr, 2);
  }

  const EnergyNet& model_net(const EnergyNet&) const override { return average_; }
  void weights_set(const EnergyNet& trained) override { average_->load_state(trained->state()); }
  void save(torch::serialize::OutputArchive& out) const override {
    write_net_state(out, "ema", *average_);
    out.write("dsm_loss_mean", c10::IValue(loss_mean_));
  }
  void load(torch::serialize::InputArchive& in) override {
    read_net_state(in, "ema", *average_);
    // Checkpoints from before the loss guard have no mean: it starts again from the next step.
    c10::IValue mean;
    loss_mean_ = in.try_read("dsm_loss_mean", mean) && mean.isDouble() ? mean.toDouble() : 0;
  }
  size_t state_bytes() const override {
    size_t n = 0;
    for (const auto& [name, t] : average_->state()) n += size_t(t.numel()) * 4;
    return n;
  }

 private:
  // Per image: (sigma^2 + floor^2)/sigma_data^2 |sigma dE/dx - z|^2 averaged over pixels, for
  // x + sigma z. create_graph keeps it differentiable in the weights.
  static torch::Tensor dsm_loss(const TrainConfig& cfg, const EnergyNetImpl& net,
                                const torch::Tensor& x, const torch::Tensor& sigma,
                                const torch::Tensor& z, bool create_graph) {
    const torch::Tensor s = sigma.view({-1, 1, 1, 1});
    const torch::Tensor noisy = (x + s * z).detach().requires_grad_(true);
    const torch::Tensor e = net.denoiser_energy(net.weights(), noisy, sigma);
    const torch::Tensor g = torch::autograd::grad({e.sum()}, {noisy}, {},
                                                  /*retain_graph=*/create_graph, create_graph)[0];
    const double sd = net.energy_form().sigma_data;
    // (sigma^2 + floor^2) / sigma_data^2: about the same weight on the network's output error
    // at every noise level above the floor (|sigma dE/dx - z| ~ |D - x| / sigma,
    // D = mean + sd F), so the tiny levels, which need D to copy the input exactly, do not crowd
    // out the middle ones, where the layout is decided.
    const double floor2 = cfg.loss_sigma_floor * cfg.loss_sigma_floor;
    const torch::Tensor weight = (sigma.square() + floor2) / (sd * sd);
    const torch::Tensor err = (s * g - z).square();
    if (!(cfg.stroke_weight > 0)) return weight * err.flatten(1).mean(1);
    const torch::Tensor pixels = stroke_weights(x, cfg.stroke_weight);
    return weight * (pixels * err).flatten(1).sum(1) / pixels.flatten(1).sum(1);
  }

  EnergyNet average_{nullptr};
  double loss_mean_ = 0;  // running mean of the healthy steps' losses (0: none yet)
};

}  // namespace

torch::Tensor stroke_weights(const torch::Tensor& x, double a) {
  torch::NoGradGuard no_grad;
  const torch::Tensor dark = x.lt(0).to(torch::kFloat32);
  const torch::Tensor near = torch::max_pool2d(dark, /*kernel_size=*/3, /*stride=*/1,
                                               /*padding=*/1);
  return 1.0 + a * near;
}

std::unique_ptr<TrainingObjective> make_denoising_score_matching(const TrainConfig& cfg,
                                                                 EnergyNet& net) {
  return std::make_unique<DenoisingScoreMatching>(cfg, net);
}

}  // namespace ebm::train
