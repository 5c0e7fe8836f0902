// The classifier's objective: cross-entropy on the folder labels (the subtype classifier that
// labels samples in the page and in ebm-eval).
#include "objective.h"

namespace ebm::train {

namespace {

class Classify final : public TrainingObjective {
 public:
  std::vector<std::string> step_figures() const override { return {"accuracy"}; }
  std::string rate_name() const override { return "images_per_s"; }
  std::vector<std::string> validation_figures() const override { return {"loss", "accuracy"}; }

  std::optional<StepMetrics> step(TrainState& s, const torch::Tensor& real,
                                  const torch::Tensor& labels, const std::atomic<bool>*) override {
    s.net->train();
    const torch::Tensor logits = s.net->forward(real);
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

  Figures validate(const TrainConfig& cfg, const EnergyNetImpl& net, const Dataset& data,
                   const torch::Tensor& images, at::Generator&) const override {
    torch::NoGradGuard no_grad;
    const int64_t n = images.size(0);
    double sum = 0, correct = 0;
    for (int64_t i = 0; i < n; i += cfg.batch) {
      const int64_t b = std::min<int64_t>(cfg.batch, n - i);
      const std::vector<int64_t> lab(data.labels.begin() + i, data.labels.begin() + i + b);
      const torch::Tensor y = torch::tensor(lab, torch::kLong);
      const torch::Tensor logits = net.forward(images.narrow(0, i, b));
      sum += torch::nn::functional::cross_entropy(
                 logits, y,
                 torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                 .item<double>();
      correct += logits.argmax(1).eq(y).sum().item<double>();
    }
    Figures v;
    v.set("loss", sum / double(n));
    v.set("accuracy", correct / double(n));
    return v;
  }
  std::string describe(const Figures& v) const override {
    return "loss " + short_number(v.get("loss")) + ", accuracy " + short_number(v.get("accuracy"));
  }
  std::string progress(const StepMetrics& m) const override {
    return "loss " + short_number(m.loss, 3) + " acc " + short_number(m.figures.get("accuracy"), 3);
  }

  void save(torch::serialize::OutputArchive&) const override {}
  void load(torch::serialize::InputArchive&) override {}
};

}  // namespace

std::unique_ptr<TrainingObjective> make_classify() { return std::make_unique<Classify>(); }

}  // namespace ebm::train
