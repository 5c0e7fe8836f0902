// Multi-grid contrastive divergence (Gao et al. 2018, "Learning generative ConvNets via
// multi-grid modeling and sampling"): one energy per grid, at a quarter, half and the full
// resolution, each learned by contrastive divergence against the data averaged down to its grid.
// The samples of a step come from one short run through the grids: Langevin from uniform noise on
// the coarsest grid, the result upsampled (each pixel four times) and walked on the next grid, and
// so on. No replay buffer: every chain starts afresh, so the run learns the short-run sampler the
// exported files are drawn with (ebm-eval --grids). The coarse grids are cheap and carry the
// layout; the fine one the strokes.
//
// The trained network (the Trainer's) is the full-resolution energy; the unit owns the coarser
// ones, their Adam states, and writes both into the checkpoint (keys "grid_0", "grid_0_adam", ...:
// read_checkpoint takes a grid's network from there for ebm-export --grid).
#include <cmath>

#include "ebm/error.h"
#include "langevin.h"
#include "objective.h"
#include "sample_pngs.h"

namespace ebm::train {

namespace {

torch::Tensor upsample2(const torch::Tensor& x) {
  return x.repeat_interleave(2, 2).repeat_interleave(2, 3);
}

// Validated as contrastive divergence is, on the full-resolution energy.
class MultiGrid final : public NoiseContrastValidation {
 public:
  MultiGrid(const TrainConfig& cfg, EnergyNet& net, const Shard& shard)
      : fine_(net->image_shape()), backend_(parse_langevin_backend(cfg.langevin_backend)) {
    if (shard.size > 1)
      throw Error("--objective multigrid trains on one process (its coarser grids are not "
                  "averaged over ranks); run it without WORLD_SIZE");
    for (int k = 0; k < kMultigridGrids - 1; ++k) {
      const Architecture arch = multigrid_architecture(cfg.architecture, k);
      grids_.emplace_back(arch, cfg.seed + 1 + uint64_t(k), cfg.spectral_norm);
      grids_.back()->to(net->device());
      opts_.push_back(std::make_unique<torch::optim::Adam>(
          grids_.back()->parameters(),
          torch::optim::AdamOptions(cfg.lr).betas({cfg.beta1, cfg.beta2}).eps(cfg.adam_eps)));
    }
  }

  std::vector<std::string> step_figures() const override {
    std::vector<std::string> f = {"reg", "cdiv", "real", "fake"};
    for (int k = 0; k < kMultigridGrids - 1; ++k) f.push_back(grid_figure(k));
    return f;
  }
  std::string rate_name() const override { return "image_steps_per_s"; }

  std::optional<StepMetrics> step(TrainState& s, const torch::Tensor& real_in, const torch::Tensor&,
                                  const std::atomic<bool>* stop) override {
    const TrainConfig& cfg = s.cfg;
    const torch::Tensor gen_state = s.gen.get_state();  // to undo the draws if stopped
    const int64_t B = real_in.size(0);
    const int last = kMultigridGrids - 1;

    // The data on every grid, from the same noisy real images (Example 7-6's noise).
    std::vector<torch::Tensor> real(kMultigridGrids);
    real[size_t(last)] =
        (real_in + cfg.real_noise * torch::randn(real_in.sizes(), s.gen, torch::kFloat32))
            .clamp(-1.0, 1.0);
    for (int k = last - 1; k >= 0; --k)
      real[size_t(k)] = torch::avg_pool2d(real[size_t(k) + 1], 2);

    // One short run through the grids with the weights as they are.
    std::vector<torch::Tensor> fake(kMultigridGrids);
    torch::Tensor x =
        torch::rand(real[0].sizes(), s.gen, torch::kFloat32) * 2.0 - 1.0;  // [-1, 1)
    for (int k = 0; k <= last; ++k) {
      if (k > 0) x = upsample2(x);
      x = langevin(net_of(s, k), x, cfg.sampler, cfg.langevin_steps, s.gen, backend_,
                   torch::get_num_threads(), stop);
      if (!x.defined()) {
        s.gen.set_state(gen_state);
        return std::nullopt;
      }
      fake[size_t(k)] = x;
    }

    // Each grid's contrastive divergence against its own data; the fine one through the Trainer's
    // Adam (its learning-rate schedule), the coarser ones through theirs at the same rate.
    StepMetrics m;
    m.loss = 0;
    bool healthy = true;
    for (int k = last; k >= 0; --k) {
      EnergyNetImpl& net = net_of(s, k);
      net.power_iteration();
      net.train();
      const torch::Tensor out =
          net.forward(torch::cat({real[size_t(k)], fake[size_t(k)]})).select(1, 0);
      const torch::Tensor er = out.narrow(0, 0, B), ef = out.narrow(0, B, B);
      const torch::Tensor cdiv = er.mean() - ef.mean();
      const torch::Tensor reg = cfg.alpha * (er.square() + ef.square()).mean();
      const torch::Tensor loss = cdiv + reg;
      if (k == last) {
        descend(s, loss);
      } else {
        torch::optim::Adam& opt = *opts_[size_t(k)];
        adam_options(opt).lr(adam_options(s.opt).lr());
        opt.zero_grad();
        loss.backward();
        if (cfg.clip_grad_norm > 0)
          torch::nn::utils::clip_grad_norm_(grids_[size_t(k)]->parameters(), cfg.clip_grad_norm);
        opt.step();
      }
      const double e_r = er.mean().item<double>(), e_f = ef.mean().item<double>();
      m.figures.set(k == last ? "cdiv" : grid_figure(k), cdiv.item<double>());
      if (k == last) {
        m.figures.set("reg", reg.item<double>());
        m.figures.set("real", e_r);
        m.figures.set("fake", e_f);
      }
      // Every grid's energies within max_energy (a NaN fails the comparison) and its weights
      // finite after the step.
      healthy = healthy && std::abs(e_r) <= cfg.max_energy && std::abs(e_f) <= cfg.max_energy &&
                parameters_finite(net);
      m.loss += loss.item<double>();
    }
    // Image-steps counted at the full resolution: a coarser grid's step costs a quarter per level.
    double work = 0;
    for (int k = 0; k <= last; ++k) work += std::ldexp(1.0, -2 * (last - k));
    m.work = double(B) * cfg.langevin_steps * work;
    m.healthy = healthy && std::isfinite(m.loss);
    return m;
  }

  std::string progress(const StepMetrics& m) const override {
    std::string p = "cdiv";
    for (int k = 0; k < kMultigridGrids - 1; ++k)
      p += " " + short_number(m.figures.get(grid_figure(k)), 3) + " /";
    return p + " " + short_number(m.figures.get("cdiv"), 3) + " real " +
           short_number(m.figures.get("real"), 3) + " fake " +
           short_number(m.figures.get("fake"), 3);
  }
  const char* rate_unit() const override { return "img-steps/s"; }

  std::optional<NoiseSamples> draw_samples(const TrainConfig& cfg, const EnergyNet& trained,
                                           int count, uint64_t seed, int threads,
                                           const std::atomic<bool>* stop) const override {
    std::vector<Model> models;
    for (const EnergyNet& g : grids_) models.push_back(g->to_model(ModelKind::kEnergy));
    models.push_back(trained->to_model(ModelKind::kEnergy));
    std::vector<Network> nets;
    for (const Model& m : models) nets.emplace_back(m);
    std::vector<const Network*> ptrs;
    for (const Network& n : nets) ptrs.push_back(&n);
    SamplerParams p = cfg.sampler;
    p.steps = cfg.langevin_steps;
    return sample_multigrid(ptrs, std::vector<SamplerParams>(ptrs.size(), p), count, seed, threads,
                            4, stop);
  }

  void save(torch::serialize::OutputArchive& out) const override {
    for (size_t k = 0; k < grids_.size(); ++k) {
      write_net_state(out, multigrid_key(int(k)), *grids_[k]);
      torch::serialize::OutputArchive optim;
      opts_[k]->save(optim);
      out.write(multigrid_key(int(k)) + "_adam", optim);
    }
  }
  void load(torch::serialize::InputArchive& in) override {
    for (size_t k = 0; k < grids_.size(); ++k) {
      read_net_state(in, multigrid_key(int(k)), *grids_[k]);
      torch::serialize::InputArchive optim;
      in.read(multigrid_key(int(k)) + "_adam", optim);
      opts_[k]->state().clear();  // as the Trainer's: no moments survive from before
      opts_[k]->load(optim);
    }
  }
  size_t state_bytes() const override {
    size_t n = 0;
    for (const EnergyNet& g : grids_)
      for (const torch::Tensor& p : g->parameters()) n += size_t(p.numel()) * 4 * 3;
    return n;
  }

 private:
  EnergyNetImpl& net_of(TrainState& s, int k) {
    return k == kMultigridGrids - 1 ? *s.net : *grids_[size_t(k)];
  }
  std::string grid_figure(int k) const {
    const int f = 1 << (kMultigridGrids - 1 - k);
    return "cdiv_" + std::to_string(fine_.w / f) + "x" + std::to_string(fine_.h / f);
  }

  Shape fine_;
  LangevinBackend backend_;
  std::vector<EnergyNet> grids_;  // coarsest first, without the full-resolution one
  std::vector<std::unique_ptr<torch::optim::Adam>> opts_;
};

}  // namespace

std::string multigrid_key(int grid) { return "grid_" + std::to_string(grid); }

Architecture multigrid_architecture(const nlohmann::json& arch, int grid) {
  if (grid < 0 || grid >= kMultigridGrids - 1)
    throw Error("multi-grid run: grid " + std::to_string(grid) + " is not one of its coarser "
                "grids (0 to " + std::to_string(kMultigridGrids - 2) + ", coarsest first; the "
                "full-resolution network is exported without --grid)");
  const Shape fine = parse_input_shape(arch.at("input"));
  const int f = 1 << (kMultigridGrids - 1 - grid);
  if (fine.h % (1 << (kMultigridGrids - 1)) || fine.w % (1 << (kMultigridGrids - 1)))
    throw Error("--objective multigrid halves the images " + std::to_string(kMultigridGrids - 1) +
                " times: their height and width must be multiples of " +
                std::to_string(1 << (kMultigridGrids - 1)) + " (this preset's input is " +
                std::to_string(fine.w) + "x" + std::to_string(fine.h) + ")");
  if (arch.contains("energy"))
    throw Error("--objective multigrid learns plain energies by contrastive divergence; this "
                "preset is a denoiser energy (train it with --objective dsm)");
  // The grid's layers as written (run.cpp stores them when the run starts).
  if (!arch.contains("grids") || arch.at("grids").size() != size_t(kMultigridGrids - 1))
    throw Error("multi-grid run: the architecture has no layers for its " +
                std::to_string(kMultigridGrids - 1) + " coarser grids");
  const nlohmann::json& layers = arch.at("grids").at(size_t(grid));
  try {
    return resolve_architecture(Shape{fine.c, fine.h / f, fine.w / f}, layers);
  } catch (const Error& e) {
    throw Error("--objective multigrid: the layers do not fit the " +
                std::to_string(fine.w / f) + "x" + std::to_string(fine.h / f) + " grid (" +
                e.what() + "); give that grid a smaller network with --grid-presets");
  }
}

std::unique_ptr<TrainingObjective> make_multigrid(const TrainConfig& cfg, EnergyNet& net,
                                                  const Shard& shard) {
  return std::make_unique<MultiGrid>(cfg, net, shard);
}

}  // namespace ebm::train
