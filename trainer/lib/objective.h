// What a run learns from: one unit per objective behind one interface, so that the Trainer
// (network, Adam, generator, counters, checkpoints) and the run loop (epochs, CSVs, curves,
// pictures, the divergence guard) are the same for every one of them.
//
//   contrastive_divergence.cpp    energy, the paper's method: replay buffer and short Langevin
//                                 runs (SPEC section 1)
//   denoising_score_matching.cpp  energy: a noise-conditional denoiser energy (SPEC section 1b),
//                                 with the moving average of its weights
//   multigrid.cpp                 energy: one per grid (a quarter, half and full resolution), each
//                                 by contrastive divergence, sampled coarse to fine (Gao et al.
//                                 2018)
//   classify.cpp                  cross-entropy on the folder labels (the evaluation's classifier;
//                                 --noise-conditional: on noised drawings, the sampler's guide)
//
// A unit owns what only it needs (the replay buffer, the moving average) and writes it into the
// checkpoint itself; everything else it borrows from the Trainer through TrainState.
//
// Under data parallelism (distributed.h) a unit sees its rank's share of every global batch and
// descend() averages the gradient over the ranks. Contrastive divergence runs its own chains and
// keeps its own part of the replay buffer on every rank, from a generator of its own; the others
// make each random draw for the whole global batch, identically on every rank, and take their
// rank's slice, so that N processes train exactly what one would.
#pragma once

#include <torch/torch.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "config.h"
#include "data/dataset.h"
#include "net.h"
#include "sample_pngs.h"

namespace ebm::train {

class GradientAverager;
class ReplayBuffer;

// Which share of every global batch this process trains on: rank `rank` of `size` takes the
// rank-th slice of batch / size images.
struct Shard {
  int rank = 0, size = 1;
};

// Named figures of a step or a validation pass, in the order of their CSV columns.
class Figures {
 public:
  void set(const std::string& name, double value);
  double get(const std::string& name) const;  // NaN if absent
  const std::vector<std::pair<std::string, double>>& items() const { return items_; }

 private:
  std::vector<std::pair<std::string, double>> items_;
};

struct StepMetrics {
  double loss = NAN;
  Figures figures;      // the objective's own (cd: reg, cdiv, real, fake, fresh; classify: accuracy)
  double lr = NAN;
  double work = 0;      // images (cd: Langevin image-steps) this step processed
  double seconds = 0;   // wall time of the step
  double rate = 0;      // work per second
  bool healthy = true;  // loss and every parameter finite (cd: energies within max_energy;
                        // dsm: loss within max_loss_ratio of its running mean)
  std::string diagnosis;  // why it is not healthy, where more than the loss says it
};

struct TrainCounters {
  int64_t step = 0;           // optimizer steps done
  int64_t epoch = 0;          // epochs completed
  int64_t step_in_epoch = 0;  // steps done in the current epoch
  int64_t rollbacks = 0;      // divergence-guard rollbacks so far
  double wall_seconds = 0;    // training time over every session of the run
};

// What the Trainer lends its objective.
struct TrainState {
  const TrainConfig& cfg;
  EnergyNet& net;
  torch::optim::Adam& opt;
  at::Generator& gen;
  const TrainCounters& counters;
  const Shard& shard;
  GradientAverager* averager;  // under data parallelism, else null
};

class TrainingObjective {
 public:
  virtual ~TrainingObjective() = default;

  // The CSV columns and summary keys of a step's figures beyond the loss, of the rate, and of a
  // validation pass.
  virtual std::vector<std::string> step_figures() const = 0;
  virtual std::string rate_name() const = 0;  // "image_steps_per_s" or "images_per_s"
  virtual std::vector<std::string> validation_figures() const = 0;
  // Step figures that count over the batch (summed over ranks; the others are averaged).
  virtual std::vector<std::string> summed_figures() const { return {}; }

  // One optimizer step on a batch of real images [B, C, H, W] (labels [B] for classify): the
  // loss, its gradient, Adam, and the unit's own state. Returns nothing, every piece of state as
  // it was, when `stop` is raised during the step (only objectives that sample check it).
  virtual std::optional<StepMetrics> step(TrainState& s, const torch::Tensor& real,
                                          const torch::Tensor& labels,
                                          const std::atomic<bool>* stop) = 0;

  // Held-out figures of the trained weights `net` (or the unit's average of them) for `images`
  // [n, C, H, W] (and `data`'s labels); any noise comes from `gen`, not the training generator.
  virtual Figures validate(const TrainConfig& cfg, const EnergyNetImpl& net, const Dataset& data,
                           const torch::Tensor& images, at::Generator& gen) const = 0;
  // The model card's "validation" entry and the log's words for a validation pass.
  virtual nlohmann::json validation_json(const Figures& v) const;
  virtual std::string describe(const Figures& v) const = 0;
  // The progress bar's words for a step (the rate follows them).
  virtual std::string progress(const StepMetrics& m) const = 0;
  virtual const char* rate_unit() const { return "img/s"; }

  // The weights a model is made from (the moving average where the unit keeps one).
  virtual const EnergyNet& model_net(const EnergyNet& trained) const { return trained; }
  // The trained weights were set from outside (a fresh run's mean image): the unit's copies
  // follow.
  virtual void weights_set(const EnergyNet& trained) { (void)trained; }
  // The replay buffer, where the unit keeps one.
  virtual const ReplayBuffer* buffer() const { return nullptr; }
  // `count` samples from fresh noise by the unit's own sampler where the runtime's sampler on the
  // trained network alone would not draw what the run learns (multigrid: the coarser grids
  // first), for the epoch pictures; nothing for the others. Chain 0 recorded `snapshots` times
  // per grid.
  virtual std::optional<NoiseSamples> draw_samples(const TrainConfig& cfg,
                                                   const EnergyNet& trained, int count,
                                                   uint64_t seed, int threads,
                                                   const std::atomic<bool>* stop) const {
    (void)cfg, (void)trained, (void)count, (void)seed, (void)threads, (void)stop;
    return std::nullopt;
  }

  // The unit's own state in a checkpoint (checkpoint.h), and an estimate of its size in bytes.
  virtual void save(torch::serialize::OutputArchive& out) const = 0;
  virtual void load(torch::serialize::InputArchive& in) = 0;
  virtual size_t state_bytes() const { return 0; }
  // What differs between ranks (contrastive divergence: this rank's part of the replay buffer),
  // gathered into rank 0's checkpoint and handed back to its rank on resume; undefined if nothing.
  virtual torch::Tensor rank_state() const { return {}; }
  virtual void restore_rank_state(const torch::Tensor& state) { (void)state; }
};

// The validation of the contrastive units (contrastive_divergence.cpp, multigrid.cpp): the
// energy of the held-out images against as many fresh uniform-noise images (the book's
// test_step), figures cdiv, real and fake.
class NoiseContrastValidation : public TrainingObjective {
 public:
  std::vector<std::string> validation_figures() const override { return {"cdiv", "real", "fake"}; }
  Figures validate(const TrainConfig& cfg, const EnergyNetImpl& net, const Dataset& data,
                   const torch::Tensor& images, at::Generator& gen) const override;
  nlohmann::json validation_json(const Figures& v) const override;
  std::string describe(const Figures& v) const override;
};

// The unit for cfg.task and cfg.objective. Throws ebm::Error when the network cannot learn by it
// (a denoiser energy needs dsm, dsm needs a denoiser energy), naming the fix.
std::unique_ptr<TrainingObjective> make_objective(const TrainConfig& cfg, EnergyNet& net,
                                                  at::Generator& gen, const Shard& shard = {});
std::unique_ptr<TrainingObjective> make_contrastive_divergence(const TrainConfig& cfg,
                                                               EnergyNet& net, at::Generator& gen,
                                                               const Shard& shard);
std::unique_ptr<TrainingObjective> make_denoising_score_matching(const TrainConfig& cfg,
                                                                 EnergyNet& net);
// Du et al. (2021)'s improvements to contrastive divergence (TrainConfig::kl_weight, augment):
// - last_langevin_step: one step of the paper or textbook form from x ([n, C, H, W]) with the
//   step's noise z given, through the trainable weights with the graph kept, so that the result
//   is differentiable in them (its value is the step's, as the runtime takes it);
// - kl_loss: for those samples, mean_i E(x_i) with the weights held constant (the gradient
//   reaches the weights through x alone) minus mean_i log d_i, d_i the distance from x_i to its
//   nearest image in `bank` [m, C, H, W] (a nearest-neighbour entropy estimate up to constants);
//   sets the two figures;
// - augment_images: each of x's images with probability p mirrored left-right (half the time)
//   and shifted by up to 8 columns and 2 rows, the edges repeated; the others as they were.
torch::Tensor last_langevin_step(const EnergyNetImpl& net, const torch::Tensor& x,
                                 const torch::Tensor& z, const SamplerParams& p);
torch::Tensor kl_loss(const EnergyNetImpl& net, const torch::Tensor& samples,
                      const torch::Tensor& bank, double* energy = nullptr,
                      double* entropy = nullptr);
torch::Tensor augment_images(const torch::Tensor& x, double p, at::Generator& gen);
// The per-pixel loss weights of --stroke-weight a for clean drawings x [N, C, H, W]: 1 + a where
// x < 0 (a stroke) or an 8-neighbour in the same channel is, 1 elsewhere.
torch::Tensor stroke_weights(const torch::Tensor& x, double a);
// Multi-grid contrastive divergence (multigrid.cpp): kMultigridGrids grids, each half the one
// after it; the trained network is the last, full-resolution one. multigrid_architecture gives
// coarser grid `grid`'s network (0 = coarsest) from a run's architecture {"input", "layers"}: the
// same layers on the input averaged down, or an ebm::Error naming the fix (sizes not divisible,
// a denoiser energy, layers that do not fit the smaller input). A checkpoint holds that grid's
// weights under multigrid_key(grid) (write_net_state's form) and its Adam state under the key +
// "_adam".
inline constexpr int kMultigridGrids = 3;
Architecture multigrid_architecture(const nlohmann::json& arch, int grid);
std::string multigrid_key(int grid);
std::unique_ptr<TrainingObjective> make_multigrid(const TrainConfig& cfg, EnergyNet& net,
                                                  const Shard& shard);
std::unique_ptr<TrainingObjective> make_classify(const TrainConfig& cfg, const EnergyNet& net);

// Whether cfg's unit draws per rank (contrastive divergence: its chains) rather than for the
// global batch: then each rank has a generator of its own and a checkpoint resumes only at the
// world size that wrote it.
bool draws_per_rank(const TrainConfig& cfg);

// Shared by the units: every parameter finite; and zero_grad, backward, the average of the
// gradient over the ranks (bucketed, overlapping the backward pass), the optional clip of the
// global gradient norm, Adam's step.
bool parameters_finite(const EnergyNetImpl& net);
void descend(TrainState& s, const torch::Tensor& loss);
// The options (learning rate, betas) of an Adam's one parameter group.
torch::optim::AdamOptions& adam_options(torch::optim::Adam& opt);

// "%.*g": a figure in a log line or on the progress bar.
std::string short_number(double v, int precision = 4);

// A network's state() as a checkpoint's sub-archive `key` ("model", "ema"), each tensor under its
// runtime name with the dots made underscores (TorchScript attribute names may not hold dots).
std::string archive_key(std::string name);
void write_net_state(torch::serialize::OutputArchive& out, const std::string& key,
                     const EnergyNetImpl& net);
void read_net_state(torch::serialize::InputArchive& in, const std::string& key, EnergyNetImpl& net);

}  // namespace ebm::train
