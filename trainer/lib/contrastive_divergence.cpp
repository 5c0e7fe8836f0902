// Contrastive divergence with a replay buffer and short Langevin runs: the paper's method
// (SPEC section 1), the book's Examples 7-5 and 7-6.
#include <chrono>

#include "ebm/error.h"
#include "langevin.h"
#include "objective.h"
#include "replay_buffer.h"

namespace ebm::train {

namespace {

class ContrastiveDivergence final : public TrainingObjective {
 public:
  // Every rank keeps 1/N of the buffer and starts it with its share of one global batch.
  ContrastiveDivergence(const TrainConfig& cfg, EnergyNet& net, at::Generator& gen,
                        const Shard& shard)
      : shape_(net->image_shape()),
        buffer_(rank_capacity(cfg, shard), shape_),
        backend_(parse_langevin_backend(cfg.langevin_backend)) {
    // The buffer starts as one batch of uniform noise (the book's Buffer.__init__).
    buffer_.reset_uniform(std::min<int64_t>(cfg.batch / shard.size, buffer_.capacity()), gen);
  }

  std::vector<std::string> step_figures() const override {
    return {"reg", "cdiv", "real", "fake", "fresh"};
  }
  std::string rate_name() const override { return "image_steps_per_s"; }
  std::vector<std::string> validation_figures() const override { return {"cdiv", "real", "fake"}; }
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
    const torch::Tensor start = buffer_.draw(B, cfg.fresh, s.gen, &fresh);
    const torch::Tensor fake = langevin(*s.net, start, cfg.sampler, cfg.langevin_steps, s.gen,
                                        backend_, torch::get_num_threads(), stop);
    if (!fake.defined()) {
      s.gen.set_state(gen_state);
      return std::nullopt;
    }

    s.net->power_iteration();
    s.net->train();
    const torch::Tensor out = s.net->forward(torch::cat({real, fake})).select(1, 0);
    const torch::Tensor e_real = out.narrow(0, 0, B), e_fake = out.narrow(0, B, B);
    const torch::Tensor cdiv = e_real.mean() - e_fake.mean();
    const torch::Tensor reg = cfg.alpha * (e_real.square() + e_fake.square()).mean();
    const torch::Tensor loss = cdiv + reg;
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
    m.work = double(B) * cfg.langevin_steps;
    m.healthy = std::isfinite(m.loss) && std::isfinite(e_r) && std::isfinite(e_f) &&
                std::abs(e_r) <= cfg.max_energy && std::abs(e_f) <= cfg.max_energy &&
                parameters_finite(*s.net);
    return m;
  }

  // Contrastive divergence between the held-out images and as many fresh uniform-noise images
  // (the book's test_step).
  Figures validate(const TrainConfig& cfg, const EnergyNetImpl& net, const Dataset&,
                   const torch::Tensor& images, at::Generator& gen) const override {
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
  nlohmann::json validation_json(const Figures& v) const override {
    return {{"cdiv", v.get("cdiv")}, {"real", v.get("real")}, {"noise", v.get("fake")}};
  }
  std::string describe(const Figures& v) const override {
    return "cdiv " + short_number(v.get("cdiv")) + " (real " + short_number(v.get("real")) +
           ", noise " + short_number(v.get("fake")) + ")";
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

  Shape shape_;
  ReplayBuffer buffer_;
  LangevinBackend backend_;
};

}  // namespace

std::unique_ptr<TrainingObjective> make_contrastive_divergence(const TrainConfig& cfg,
                                                               EnergyNet& net, at::Generator& gen,
                                                               const Shard& shard) {
  return std::make_unique<ContrastiveDivergence>(cfg, net, gen, shard);
}

}  // namespace ebm::train
