// Checkpoints: one TorchScript archive (torch::save's format, so Python's torch.jit.load reads
// it) holding everything a run needs to continue exactly where it stopped.
//
//   format         "bridge-ebm checkpoint 1"
//   config         run configuration, JSON text (config.h, with the resolved architecture)
//   kind, labels   "energy" or "classifier"; JSON array of class names
//   model          sub-archive: every model tensor, "layers.3.weight" stored as layers_3_weight
//                  (trainable parameters, batch-norm statistics, spectral-norm vectors)
//                  and a denoiser's mean image "energy.mean"
//   ema            sub-archive like model: the moving average of the weights (objective dsm),
//                  which a model is made from
//   (the objective's own entries, ema and buffer, are written and read by its unit, objective.h)
//   optimizer      sub-archive: Adam's state (torch::optim::Adam::save)
//   buffer         replay buffer [n, C, H, W], newest first (objective cd)
//   rng            the training generator's state (torch's CPU generator, uint8)
//   step, epoch, step_in_epoch, rollbacks   integers
//   wall_seconds   training time so far; summary: latest metrics, JSON text
//   world_size     the processes of the run that wrote it (absent before data parallelism: 1);
//                  everything above is rank 0's
//   ranks          sub-archive, world_size > 1: rng_R, the generator of rank R = 1..world_size-1,
//                  and state_R, its part of the replay buffer (objective cd)
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "config.h"
#include "ebm/model.h"
#include "trainer.h"

namespace ebm::train {

inline constexpr const char* kCheckpointFormat = "bridge-ebm checkpoint 1";

// What export needs from a checkpoint: the configuration, the counters, the final metrics and the
// model (effective weights, batch norm not yet folded).
struct CheckpointInfo {
  TrainConfig config;
  TrainCounters counters;
  nlohmann::json summary;
  ModelKind kind = ModelKind::kEnergy;
  std::vector<std::string> labels;
  nlohmann::json architecture;  // as stored: {"input":..., "layers":[...]}
  std::vector<std::pair<std::string, torch::Tensor>> tensors;  // runtime names
  int grid = -1;  // the coarser grid of a multi-grid run these are (read_checkpoint), else -1
};

// Reads the parts of a checkpoint that describe the model, without building a trainer. Throws
// ebm::Error naming the file if it is not a bridge-ebm checkpoint. `grid` >= 0: of a multi-grid
// run (--objective multigrid), the network of that coarser grid (0 = coarsest), its architecture
// the run's on the smaller input (objective.h, multigrid_architecture); an error naming the fix
// for any other run or a grid it does not have.
CheckpointInfo read_checkpoint(const std::string& path, int grid = -1);

// The runtime model held by a checkpoint: builds the network its configuration describes, loads
// the tensors and returns its effective weights. Throws ebm::Error, naming the layer, when the
// runtime cannot run the stored architecture.
Model checkpoint_model(const CheckpointInfo& info);

}  // namespace ebm::train
