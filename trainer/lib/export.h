// From a checkpoint (or a network) to the runtime's model file: effective weights, batch norm
// folded into the convolutions (fold_normalization), a model card, and a check that the runtime
// computes what LibTorch computes before anything is written.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "checkpoint.h"
#include "ebm/model.h"
#include "ebm/safetensors.h"
#include "net.h"

namespace ebm::train {

struct ExportOptions {
  std::string name;         // default: the run folder's name
  std::string description;  // default: says what was trained on what
  std::string license;      // default: "unspecified"
  std::string source;       // where the weights came from (the checkpoint path), for the card
  nlohmann::json sampler;   // overrides of the exported default sampler settings (may be null)
  nlohmann::json card;      // extra card fields, merged over the generated ones (may be null)
  // Merged over the card's "evaluation" section after `card` (evaluation_card's; may be null).
  nlohmann::json evaluation;
  // A weaker denoiser to carry for autoguidance (model.h "ebm.autoguide"; the file becomes format
  // 3), or null to keep what the model has. drop_autoguide removes it.
  std::shared_ptr<const Model> autoguide;
  bool drop_autoguide = false;
};

// The folded model with its card (name, description, license, dataset, architecture, training:
// epochs, steps, wall time, final metrics) and sampler settings. Throws ebm::Error when the
// runtime cannot run the checkpoint's architecture, or when the runtime's outputs on random
// images disagree with LibTorch's (max relative error above 1e-4).
Model export_checkpoint(const CheckpointInfo& info, const ExportOptions& opt);

// A model file exported before (`m`, as load_model read it), with new default sampler settings,
// name, description, license, card fields or evaluation figures from `opt` (the same meaning as
// for a checkpoint; opt.source is ignored): the weights, the architecture and the rest of the
// card stay as they are, and the card gets "updated" (today's date). For a model whose
// checkpoint is gone, or one downloaded: retune its sampler and publish it again.
Model reexport_model(Model m, const ExportOptions& opt);

// The card's "evaluation" section from ebm-eval reports (report.json, parsed): the first report's
// figures (Frechet and speckle ratios, rarest subtype, subtypes present, sharpness, copies, new
// types, seed, sample count), and each further report's main figures under "seed_<its seed>", as
// the page's card shows them. Throws ebm::Error naming a missing figure (not an ebm-eval report).
nlohmann::json evaluation_card(const std::vector<nlohmann::json>& reports);

// Largest |a - b| over the largest |b|: the error measure of every agreement check here.
double max_relative_error(const torch::Tensor& a, const torch::Tensor& b);

// LibTorch's outputs of `net` and the runtime's outputs of `model` (already folded or not) on
// `count` seeded uniform images in [-1, 1]; returns the max relative error of the outputs.
// LibTorch computes in double precision (a copy of `net`), so the figure is the runtime's own
// float error, not its distance from LibTorch's float rounding, which differs by kernel.
double runtime_agreement(const EnergyNetImpl& net, const Model& model, int count, uint64_t seed);

}  // namespace ebm::train
