// One training run's state and its step: the network, Adam, the random generator, the counters
// and the objective, the unit that computes the loss and keeps its own state (objective.h: the
// replay buffer of contrastive divergence, the moving average of score matching). The loop around
// it (epochs, logging, checkpoints, the divergence guard) is run.h.
#pragma once

#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "config.h"
#include "data/dataset.h"
#include "distributed.h"
#include "net.h"
#include "objective.h"
#include "replay_buffer.h"

namespace ebm::train {

// Seconds of the steady clock since t0 (step times, checkpoint intervals).
inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

class Trainer {
 public:
  // cfg.architecture must be set ({"input":..., "layers":[...]}); for the classify task it is
  // the classifier form and `labels` names its outputs. Weights are initialised from cfg.seed.
  // With `dist` (distributed.h) this is one rank of a data-parallel run: step() takes this rank's
  // share of the global batch and averages the gradient over the ranks; save() and load() are
  // collectives.
  Trainer(const TrainConfig& cfg, std::vector<std::string> labels = {}, Collective* dist = nullptr);
  Trainer(const Trainer&) = delete;  // the objective holds references into it
  Trainer& operator=(const Trainer&) = delete;

  const TrainConfig& config() const { return cfg_; }
  torch::Device device() const { return device_; }
  const Shard& shard() const { return shard_; }
  const GradientAverager* averager() const { return averager_.get(); }  // null: one process
  EnergyNet& net() { return net_; }
  const EnergyNet& net() const { return net_; }
  const TrainingObjective& objective() const { return *objective_; }
  // The weights a model is made from: the moving average under denoising score matching, else
  // the trained weights themselves.
  const EnergyNet& model_net() const { return objective_->model_net(net_); }
  // A denoiser's mean image, from the training images [n, C, H, W] (a fresh run's first act).
  void set_data_mean(const torch::Tensor& images);
  // A fresh run's start from a trained model (EnergyNetImpl::embed_model: the same network, or a
  // wider one), in place of set_data_mean: the model's mean image is kept. The objective's copies
  // (a moving average) follow.
  void init_from(const Model& m);
  // The replay buffer of contrastive divergence; throws ebm::Error under other objectives.
  const ReplayBuffer& buffer() const;
  const torch::optim::Adam& optimizer() const { return *opt_; }
  const std::vector<std::string>& labels() const { return labels_; }
  ModelKind kind() const;
  TrainCounters& counters() { return counters_; }
  const TrainCounters& counters() const { return counters_; }
  nlohmann::json& summary() { return summary_; }  // final metrics, for the model card

  double lr() const;
  void set_lr(double lr);
  // Restarts the training generator from a seed (after a rollback, so the replay differs); under
  // contrastive divergence each rank mixes its rank in (rank 0 takes the seed itself).
  void reseed(uint64_t seed);

  // Data parallelism: rank 0's weights (the trained ones and the unit's average) to every rank;
  // and a fingerprint of them, which must be equal on every rank.
  void broadcast_weights();
  uint64_t weights_fingerprint() const;

  // One optimizer step on a batch of real images [B, C, H, W] (labels [B] for classify).
  // Returns nothing, with every piece of state as it was before the call, when `stop` is raised
  // during the step (contrastive divergence checks it between Langevin steps).
  std::optional<StepMetrics> step(const torch::Tensor& real, const torch::Tensor& labels,
                                  const std::atomic<bool>* stop = nullptr);

  // Held-out figures (the objective's); any noise comes from a generator seeded by `noise_seed`,
  // leaving the training generator alone.
  Figures validate(const Dataset& val, uint64_t noise_seed) const;

  // Writes everything (weights, optimizer, buffer, generator state, counters, config) as a
  // TorchScript archive, atomically (temporary file, then rename). Under data parallelism every
  // rank calls it: the ranks' own state (generators, buffer parts) is gathered to rank 0, which
  // alone writes.
  void save(const std::string& path) const;
  // Restores everything save() wrote. The checkpoint must come from the same architecture, and
  // under contrastive divergence from the same world size. Under data parallelism every rank calls
  // it: rank 0 reads the file and sends it to the others (their machines need no copy).
  void load(const std::string& path);

 private:
  uint64_t rank_seed(uint64_t seed) const;
  void load_archive_bytes(const std::vector<uint8_t>& bytes, const std::string& path);

  TrainConfig cfg_;
  Collective* dist_;
  Shard shard_;
  std::vector<std::string> labels_;
  torch::Device device_;  // cfg.device, checked
  Architecture arch_;
  EnergyNet net_;
  std::unique_ptr<torch::optim::Adam> opt_;
  at::Generator gen_;
  TrainCounters counters_;
  std::unique_ptr<TrainingObjective> objective_;
  std::unique_ptr<GradientAverager> averager_;
  nlohmann::json summary_ = nlohmann::json::object();
};

// LibTorch allocates and frees every activation of every step. glibc's malloc gives blocks above
// its (adaptive) mmap threshold back to the kernel and trims the heap's top, so each step faults
// its pages in again, zeroed by the kernel: a fifth of a denoising score matching step on this
// machine. Keeping freed memory for reuse (blocks up to 32 MiB from the heap, no trimming) made
// that step 1.5-1.6x faster (bench/README.md). Called by every Trainer, once per process; glibc only;
// EBM_KEEP_FREED_MEMORY=0 in the environment leaves malloc as it is (for comparisons). Returns
// whether the setting is in force.
bool keep_freed_memory();

// cfg.device as a LibTorch device, checked: a CUDA device needs a CUDA build of LibTorch that
// sees it, and an objective that trains there (dsm, classify); throws ebm::Error naming the fix.
torch::Device training_device(const TrainConfig& cfg);

// The resolved architecture stored in a config: {"input": the images, "layers":[...], and for a
// denoiser "energy": its form}.
Architecture config_architecture(const TrainConfig& cfg);
EnergyForm config_energy_form(const TrainConfig& cfg);
nlohmann::json architecture_json(const Architecture& arch, const EnergyForm& energy = {});

}  // namespace ebm::train
