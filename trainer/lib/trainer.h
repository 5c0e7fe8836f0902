// One training run's state and its step: the network, Adam, the replay buffer, the random
// generator and the counters, and the energy (contrastive divergence) and classifier steps.
// The loop around it (epochs, logging, checkpoints, the divergence guard) is run.h.
#pragma once

#include <torch/torch.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "config.h"
#include "data/dataset.h"
#include "langevin.h"
#include "net.h"
#include "replay_buffer.h"

namespace ebm::train {

struct StepMetrics {
  // Energy task (energies are per-image means over the batch).
  double loss = NAN, reg = NAN, cdiv = NAN, real = NAN, fake = NAN;
  int64_t fresh = 0;  // fresh noise images in this batch's Langevin starts
  // Classify task.
  double accuracy = NAN;
  double lr = NAN;
  double seconds = 0;   // wall time of the step
  double rate = 0;      // energy: Langevin image-steps per second; classify: images per second
  bool healthy = true;  // loss, energies and every parameter finite, energies within max_energy
};

struct ValMetrics {
  double cdiv = NAN, real = NAN, fake = NAN;  // energy: held-out real vs fresh uniform noise
  double loss = NAN, accuracy = NAN;          // classify
};

struct TrainCounters {
  int64_t step = 0;           // optimizer steps done
  int64_t epoch = 0;          // epochs completed
  int64_t step_in_epoch = 0;  // steps done in the current epoch
  int64_t rollbacks = 0;      // divergence-guard rollbacks so far
  double wall_seconds = 0;    // training time over every session of the run
};

class Trainer {
 public:
  // cfg.architecture must be set ({"input":..., "layers":[...]}); for the classify task it is
  // the classifier form and `labels` names its outputs. Weights are initialised from cfg.seed.
  Trainer(const TrainConfig& cfg, std::vector<std::string> labels = {});

  const TrainConfig& config() const { return cfg_; }
  EnergyNet& net() { return net_; }
  const EnergyNet& net() const { return net_; }
  // The weights a model is made from: the moving average under denoising score matching, else
  // the trained weights themselves.
  const EnergyNet& model_net() const { return ema_ ? ema_ : net_; }
  // A denoiser's mean image, from the training images [n, C, H, W] (a fresh run's first act).
  void set_data_mean(const torch::Tensor& images);
  const ReplayBuffer& buffer() const { return buffer_; }
  const torch::optim::Adam& optimizer() const { return *opt_; }
  const std::vector<std::string>& labels() const { return labels_; }
  ModelKind kind() const;
  TrainCounters& counters() { return counters_; }
  const TrainCounters& counters() const { return counters_; }
  nlohmann::json& summary() { return summary_; }  // final metrics, for the model card

  double lr() const;
  void set_lr(double lr);
  // Restarts the training generator from a seed (after a rollback, so the replay differs).
  void reseed(uint64_t seed);

  // One optimizer step on a batch of real images [B, C, H, W] (labels [B] for classify).
  // Returns nothing, with every piece of state as it was before the call, when `stop` is raised
  // during the Langevin loop.
  std::optional<StepMetrics> step(const torch::Tensor& real, const torch::Tensor& labels,
                                  const std::atomic<bool>* stop = nullptr);

  // Held-out metrics. Energy: contrastive divergence between the images and as many fresh
  // uniform-noise images (the book's test_step); the noise comes from its own generator seeded
  // by `noise_seed`, leaving the training generator alone.
  ValMetrics validate(const Dataset& val, uint64_t noise_seed) const;

  // Writes everything (weights, optimizer, buffer, generator state, counters, config) as a
  // TorchScript archive, atomically (temporary file, then rename).
  void save(const std::string& path) const;
  // Restores everything save() wrote. The checkpoint must come from the same architecture.
  void load(const std::string& path);

 private:
  StepMetrics energy_step(const torch::Tensor& real, const std::atomic<bool>* stop, bool* stopped);
  StepMetrics classify_step(const torch::Tensor& real, const torch::Tensor& labels);
  StepMetrics dsm_step(const torch::Tensor& real);
  // The denoising score matching loss per image: (sigma^2 + floor^2)/sigma_data^2 |sigma dE/dx - z|^2
  // averaged over pixels, for x + sigma z. create_graph keeps it differentiable in the weights.
  torch::Tensor dsm_loss(const EnergyNetImpl& net, const torch::Tensor& x, const torch::Tensor& sigma,
                         const torch::Tensor& z, bool create_graph) const;
  bool parameters_finite() const;

  TrainConfig cfg_;
  std::vector<std::string> labels_;
  Architecture arch_;
  EnergyNet net_;
  EnergyNet ema_{nullptr};  // denoising score matching: the exponential moving average
  std::unique_ptr<torch::optim::Adam> opt_;
  ReplayBuffer buffer_;
  at::Generator gen_;
  LangevinBackend backend_ = LangevinBackend::kRuntime;
  TrainCounters counters_;
  nlohmann::json summary_ = nlohmann::json::object();
};

// The resolved architecture stored in a config: {"input": the images, "layers":[...], and for a
// denoiser "energy": its form}.
Architecture config_architecture(const TrainConfig& cfg);
EnergyForm config_energy_form(const TrainConfig& cfg);
nlohmann::json architecture_json(const Architecture& arch, const EnergyForm& energy = {});

}  // namespace ebm::train
