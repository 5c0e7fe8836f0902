// Everything that defines a training run, with the SPEC section 1 defaults. Written to the run
// folder as run.json and into every checkpoint, so a resumed run continues with the same settings
// and an exported model's card can say how it was made.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ebm/sampler_params.h"

namespace ebm::train {

enum class Task { kEnergy, kClassify };
const char* task_name(Task t);  // "energy" / "classify"
Task parse_task(const std::string& name);

// How an energy model learns (the trainer's objective.h units):
//   cd   contrastive divergence with a replay buffer and short Langevin runs (SPEC section 1)
//   dsm  denoising score matching of a noise-conditional denoiser energy (SPEC section 1b)
//   multigrid  contrastive divergence of one energy per grid, sampled coarse to fine, no replay
//        buffer (Gao et al. 2018; multigrid.cpp)
enum class Objective { kContrastiveDivergence, kDenoisingScoreMatching, kMultigrid };
const char* objective_name(Objective o);  // "cd" / "dsm" / "multigrid"
Objective parse_objective(const std::string& name);

struct TrainConfig {
  Task task = Task::kEnergy;
  std::string preset = "paper";  // a name in models/presets or a path to a preset JSON
  nlohmann::json architecture;   // {"input":..., "layers": explicit list}: filled when a run starts

  // Data.
  std::string data;           // an image folder, or an IDX images file
  std::string labels;         // IDX labels file ("" = guess from the images file name)
  double val_fraction = 0.1;  // held out, stratified by label
  int64_t limit = 0;          // use at most this many images (0 = all)

  // Optimisation. Adam with betas (0.0, 0.999) as in the Lippe tutorial the notebook adapts.
  int epochs = 60;
  int batch = 128;
  double lr = 1e-4;
  // The learning rate falls along a half cosine from lr to 0 over the last lr_decay_epochs epochs
  // before `epochs` (0 = constant). A function of the step, so resuming stays bit for bit; may
  // change when resuming (the decay then ends at the new --epochs).
  int lr_decay_epochs = 0;
  double beta1 = 0.0, beta2 = 0.999, adam_eps = 1e-8;
  // A model file a fresh run starts from instead of random weights: the same architecture, or one
  // with more channels per layer (EnergyNetImpl::embed_model). "" = random initialisation.
  std::string init_from;
  // The first freeze_layers layers keep their weights: only the later ones train (e.g. a
  // refinement added after the layers of an --init-from model). 0 = every layer trains.
  int freeze_layers = 0;
  double clip_grad_norm = 0;  // max global norm of the parameter gradient (0 = off)
  bool spectral_norm = false;

  // Energy training (SPEC section 1).
  Objective objective = Objective::kContrastiveDivergence;
  double alpha = 0.1;  // regulariser weight
  int64_t buffer_size = 8192;
  double fresh = 0.05;                       // expected fraction of fresh uniform noise per batch
  int langevin_steps = 60;                   // per training batch
  std::string langevin_backend = "runtime";  // or "torch": who computes dE/dx (langevin.h)
  SamplerParams sampler;      // form, step_size, noise, grad_clip, eps (steps: to generate)
  double real_noise = 0.005;  // std of the noise added to real images
  // Du et al. 2021, "Improved contrastive divergence training of energy-based models" (cd only):
  // kl_weight W adds W (E(x_K) - mean log d_nn(x_K)) to the loss, x_K the batch's last Langevin
  // step taken again with the graph kept so that it depends on the weights, E read with the
  // weights held constant (the gradient reaches them through x_K alone), d_nn the distance to the
  // nearest of the buffer's newest images (an estimate of the samples' entropy, up to constants);
  // 0 = off. augment P: each buffer image a chain starts from is, with probability P, mirrored
  // left-right (half the time) and shifted up to 8 columns and 2 rows (edges repeated) before its
  // Langevin run, so chains move between modes more easily; 0 = off.
  double kl_weight = 0;
  double augment = 0;
  // Multi-grid (objective multigrid): the presets of the coarser grids, coarsest first, whose
  // layers run on the grid's input (a quarter, half the size); empty: the run's preset on every
  // grid. Resolved into architecture["grids"] when the run starts.
  std::vector<std::string> grid_presets;

  // Denoising score matching (SPEC section 1b): per image sigma = exp(N(sigma_mean, sigma_std^2))
  // clamped to [sigma_min, sigma_max]; loss (sigma^2 + loss_sigma_floor^2) / sigma_data^2
  // |sigma dE/dx - z|^2 per pixel; the exported weights are an exponential moving average with this decay (at step t
  // at most (1 + t) / (10 + t), so the first steps' weights are not kept for long).
  double sigma_mean = -1.0, sigma_std = 1.4;
  double sigma_min = 0.005, sigma_max = 20;
  double loss_sigma_floor = 0.1;
  // Each pixel's squared error weighted 1 + stroke_weight where the clean drawing is dark (x < 0)
  // or has a dark 8-neighbour, then divided by the image's mean weight: the thin strokes count
  // for more of the loss than their area; 0 = every pixel alike (dsm only).
  double stroke_weight = 0;
  double ema = 0.999;

  // Classify: a noise-conditional classifier (the guide of a noise-level sampler), trained on
  // x + sigma z with sigma log-uniform in [sigma_min, sigma_max] and the log-sigma plane as one
  // more input channel (architecture.h EnergyForm, form "scalar" with a noise plane).
  bool noise_conditional = false;

  // Watching and saving.
  int sample_count = 16;    // fresh samples from noise drawn at each epoch
  int sample_steps = 1000;  // Langevin steps for them
  int buffer_grid = 32;     // buffer images shown at each epoch
  double checkpoint_minutes = 10;

  // Divergence guard.
  double max_energy = 1000;  // |mean energy| above this counts as running away
  // dsm: a step whose loss is above this many times the running mean of the steps before it
  // counts as diverged (0 = off). A run that blows up can stay finite for hundreds of steps
  // (seen on a GPU at batch 256, lr 2e-3: 0.16 -> 5 -> 3859 -> 2e6), poisoning the moving
  // average; healthy runs here stay within 2.1x.
  double max_loss_ratio = 10;
  int max_rollbacks = 5;
  double rollback_lr_factor = 0.5;

  uint64_t seed = 1;
  int threads = 0;               // 0 = every hardware thread
  // Where the network trains: "cpu", or "cuda" / "cuda:N" with a CUDA build of LibTorch
  // (dsm and classify; the random draws stay on the CPU, so a run draws the same noise on every
  // device, but GPU arithmetic is not bit for bit the CPU's). May change when resuming.
  std::string device = "cpu";
  int64_t max_steps = 0;         // stop after this many optimizer steps in all (0 = no limit)
  int64_t inject_nan_step = -1;  // testing the guard: poison a weight before this step, once
  int64_t inject_drift_step = -1;  // testing the replica check: the last rank nudges a weight

  nlohmann::json to_json() const;
  static TrainConfig from_json(const nlohmann::json& j);  // unknown keys are refused
};

}  // namespace ebm::train
