// ebm-eval's work: sample an energy model from fresh noise with the runtime (the page's code path),
// label the samples with a bridge classifier, and measure them against the dataset they came from.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ebm/image_io.h"
#include "ebm/sampler_params.h"

namespace ebm::eval {

struct EvalOptions {
  std::string model;         // energy model (.safetensors)
  std::string classifier;    // classifier over the dataset's subtypes (.safetensors)
  std::string data;          // the dataset folder ("" = the energy model card's dataset path)
  double val_fraction = -1;  // held-out share (< 0: the card's, else 0.1)
  int64_t split_seed = -1;   // split seed (< 0: the card's training seed, else 1)
  int count = 512;           // samples from noise
  uint64_t seed = 1;         // sampling seed
  nlohmann::json sampler;    // overrides of the model's sampler settings (e.g. {"steps": 500})
  int threads = 0;           // 0: every core
  // What makes a sample a new bridge type: two different families each with at least
  // `mix_threshold` probability, sharpness at least `sharp_fraction` of the real images' mean, and
  // a nearest-neighbour distance to the training set above the held-out images' `novel_quantile`.
  double mix_threshold = 0.25;
  double sharp_fraction = 0.9;
  double novel_quantile = 0.95;
};

struct EvalResult {
  nlohmann::json report;  // every number (see evaluate.cpp for the fields)
  std::string markdown;   // a short summary with the targets
  Image samples_png;      // the first samples, labelled with their family mix
  Image candidates_png;   // the best new-type candidates (or an explanatory empty grid)
  Image real_png;         // held-out real images, for comparison
};

// progress(stage, done, total): stages "sampling", "features", "novelty".
using Progress = std::function<void(const std::string&, int64_t, int64_t)>;

EvalResult evaluate(const EvalOptions& opt, const Progress& progress = {});

// Writes report.json, report.md, samples.png, candidates.png and real.png into dir (created if
// needed), each atomically.
void write_result(const std::string& dir, const EvalResult& r);

}  // namespace ebm::eval
