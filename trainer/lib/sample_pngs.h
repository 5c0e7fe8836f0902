// The pictures a run folder shows at each epoch: grids of images with captions, and samples drawn
// from noise by the runtime's own Langevin sampler (the code that will run the exported file, so
// what a person sees here is what the page will draw).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "ebm/image_io.h"
#include "ebm/model.h"
#include "ebm/sampler_params.h"

namespace ebm::train {

// Columns that make a grid of n tiles of shape s roughly square.
int grid_columns(int n, const Shape& s);

// The whole-pixel factor that makes a tile of shape s about 24,000 pixels (32x32 -> 5,
// 96x24 -> 3, 192x48 -> 2), so small images stay visible and large ones do not take over.
int grid_scale(const Shape& s);

// n images [n, 1, H, W] in [-1, 1] tiled in `cols` columns under a caption line, each upscaled by
// grid_scale; tile_labels (if given, one per tile) are written under the tiles. RGB.
Image captioned_grid(const float* images, int n, const Shape& s, int cols,
                     const std::string& caption, const std::vector<std::string>& tile_labels = {});

struct NoiseSamples {
  std::vector<float> images;                  // [count, C, H, W] after all steps
  std::vector<float> energies;                // [count]
  std::vector<int> snapshot_steps;            // steps at which chain 0 was recorded (0 = noise)
  std::vector<std::vector<float>> snapshots;  // chain 0 at each of those steps
};

// `count` chains from uniform noise, params.steps steps each, on the runtime's Network built from
// `model`; chain 0 is recorded `snapshots` + 1 times, evenly spaced from step 0 to the end.
// Stops early (with the images as they are) when `stop` becomes true.
NoiseSamples sample_from_noise(const Model& model, const SamplerParams& params, int count,
                               uint64_t seed, int threads, int snapshots = 10,
                               const std::atomic<bool>* stop = nullptr);

}  // namespace ebm::train
