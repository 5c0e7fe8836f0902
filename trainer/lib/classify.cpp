// The classifier's objective: cross-entropy on the folder labels (the subtype classifier that
// labels samples in the page and in ebm-eval).
//
// With cfg.noise_conditional it trains the guide of a noise-level sampler instead: each image is
// seen as x + sigma z, sigma log-uniform in [sigma_min, sigma_max] (the levels the sampler walks;
// the smallest are visually clean), with log(sigma) / 4 as one more input plane
// (EnergyNetImpl::classify), so that its input gradient is meaningful on the chains' states.
#include <cmath>
#include <cstdio>

#include "ebm/error.h"
#include "objective.h"

namespace ebm::train {

namespace {

// Held-out noise levels of a noise-conditional classifier: spread evenly in log sigma.
constexpr int kValidationLevels = 8;

double validation_sigma(const TrainConfig& cfg, int level) {
  const double t = double(level) / double(kValidationLevels - 1);
  return std::exp(std::log(cfg.sigma_min) + t * (std::log(cfg.sigma_max) - std::log(cfg.sigma_min)));
}

std::string level_figure(int level) { return "accuracy_" + std::to_string(level); }

class Classify final : public TrainingObjective {
 public:
  Classify(const TrainConfig& cfg, const EnergyNet& net) : noisy_(cfg.noise_conditional) {
    if (noisy_ != net->energy_form().scalar_noise)
      throw Error(noisy_ ? "--noise-conditional needs a classifier with a noise plane; this "
                           "run's architecture has none (start a new run)"
                         : "this classifier reads a noise plane but the run is not "
                           "noise-conditional (run.json \"noise_conditional\")");
    if (noisy_ && !(cfg.sigma_min > 0 && cfg.sigma_min <= cfg.sigma_max))
      throw Error("noise levels need 0 < --sigma-min <= --sigma-max");
    if (noisy_) sigma_range_ = {cfg.sigma_min, cfg.sigma_max};
  }

  std::vector<std::string> step_figures() const override { return {"accuracy"}; }
  std::string rate_name() const override { return "images_per_s"; }
  std::vector<std::string> validation_figures() const override {
    std::vector<std::string> f = {"loss", "accuracy"};
    if (noisy_)
      for (int l = 0; l < kValidationLevels; ++l) f.push_back(level_figure(l));
    return f;
  }

  std::optional<StepMetrics> step(TrainState& s, const torch::Tensor& real,
                                  const torch::Tensor& labels, const std::atomic<bool>*) override {
    torch::Tensor x = real, sigma;
    if (noisy_) {
      // Drawn for the whole global batch, the same on every rank, each rank taking its slice
      // (as denoising score matching does): N processes train exactly what one would.
      const int64_t B = real.size(0), global = B * s.shard.size, first = B * s.shard.rank;
      std::vector<int64_t> zshape = real.sizes().vec();
      zshape[0] = global;
      const double lo = std::log(s.cfg.sigma_min), hi = std::log(s.cfg.sigma_max);
      sigma = (torch::rand({global}, s.gen, torch::kFloat32) * (hi - lo) + lo)
                  .exp()
                  .narrow(0, first, B)
                  .to(real.device());
      const torch::Tensor z =
          torch::randn(zshape, s.gen, torch::kFloat32).narrow(0, first, B).to(real.device());
      x = real + sigma.view({-1, 1, 1, 1}) * z;
    }
    s.net->train();
    const torch::Tensor logits = s.net->classify(s.net->weights(), x, sigma);
    const torch::Tensor loss = torch::nn::functional::cross_entropy(logits, labels);
    descend(s, loss);
    StepMetrics m;
    m.loss = loss.item<double>();
    m.figures.set("accuracy",
                  logits.argmax(1).eq(labels).to(torch::kFloat64).mean().item<double>());
    m.work = double(real.size(0));
    m.healthy = std::isfinite(m.loss) && parameters_finite(*s.net);
    return m;
  }

  // Clean: loss and accuracy of the held-out images. Noise-conditional: every held-out image at
  // each of 8 levels spread evenly in log sigma over the training range (noise from `gen`); loss
  // and accuracy over all of them, and the accuracy per level.
  Figures validate(const TrainConfig& cfg, const EnergyNetImpl& net, const Dataset& data,
                   const torch::Tensor& images, at::Generator& gen) const override {
    torch::NoGradGuard no_grad;
    const NetWeights w = net.weights();
    const int64_t n = images.size(0);
    const int levels = noisy_ ? kValidationLevels : 1;
    double sum = 0, correct = 0;
    Figures v;
    for (int level = 0; level < levels; ++level) {
      double level_correct = 0;
      for (int64_t i = 0; i < n; i += cfg.batch) {
        const int64_t b = std::min<int64_t>(cfg.batch, n - i);
        const std::vector<int64_t> lab(data.labels.begin() + i, data.labels.begin() + i + b);
        torch::Tensor x = images.narrow(0, i, b), sigma;
        const torch::Tensor y = torch::tensor(lab, torch::kLong).to(x.device());
        if (noisy_) {
          sigma = torch::full({b}, validation_sigma(cfg, level), torch::kFloat32).to(x.device());
          x = x + sigma.view({-1, 1, 1, 1}) *
                      torch::randn(x.sizes(), gen, torch::kFloat32).to(x.device());
        }
        const torch::Tensor logits = net.classify(w, x, sigma);
        sum += torch::nn::functional::cross_entropy(
                   logits, y,
                   torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                   .item<double>();
        level_correct += logits.argmax(1).eq(y).sum().item<double>();
      }
      correct += level_correct;
      if (noisy_) v.set(level_figure(level), level_correct / double(n));
    }
    v.set("loss", sum / double(n * levels));
    v.set("accuracy", correct / double(n * levels));
    // Keep the CSV's column order: loss, accuracy, then the levels.
    Figures ordered;
    for (const std::string& name : validation_figures()) ordered.set(name, v.get(name));
    return ordered;
  }

  // Noise-conditional: the accuracy per level under "accuracy_by_sigma", keyed by sigma.
  nlohmann::json validation_json(const Figures& v) const override {
    nlohmann::json j = {{"loss", v.get("loss")}, {"accuracy", v.get("accuracy")}};
    if (!noisy_) return j;
    TrainConfig cfg;
    cfg.sigma_min = sigma_range_.first;
    cfg.sigma_max = sigma_range_.second;
    nlohmann::json by = nlohmann::json::object();
    for (int l = 0; l < kValidationLevels; ++l)
      by[short_number(validation_sigma(cfg, l), 3)] = v.get(level_figure(l));
    j["accuracy_by_sigma"] = by;
    j["noise"] = "each held-out image at each level sigma, x + sigma z";
    return j;
  }

  std::string describe(const Figures& v) const override {
    std::string out =
        "loss " + short_number(v.get("loss")) + ", accuracy " + short_number(v.get("accuracy"));
    if (!noisy_) return out;
    out += " (over 8 noise levels; by level";
    for (int l = 0; l < kValidationLevels; ++l) out += " " + short_number(v.get(level_figure(l)), 3);
    return out + ")";
  }
  std::string progress(const StepMetrics& m) const override {
    return "loss " + short_number(m.loss, 3) + " acc " + short_number(m.figures.get("accuracy"), 3);
  }

  void save(torch::serialize::OutputArchive&) const override {}
  void load(torch::serialize::InputArchive&) override {}

 private:
  bool noisy_;
  std::pair<double, double> sigma_range_{0, 0};
};

}  // namespace

std::unique_ptr<TrainingObjective> make_classify(const TrainConfig& cfg, const EnergyNet& net) {
  return std::make_unique<Classify>(cfg, net);
}

}  // namespace ebm::train
