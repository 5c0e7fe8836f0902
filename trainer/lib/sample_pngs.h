// The pictures a run folder shows at each epoch: grids of images with captions, and samples drawn
// from noise by the runtime's own Langevin sampler (the code that will run the exported file, so
// what a person sees here is what the page will draw).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ebm/image_io.h"
#include "ebm/model.h"
#include "ebm/network.h"
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
  std::vector<std::string> snapshot_names;    // multi-grid: "48x12, step 10" for each; else empty
  std::string walk;  // multi-grid: "coarse to fine over 3 grids, 40 steps each"; else empty
};

// `count` chains from uniform noise, params.steps steps each, on the runtime's Network built from
// `model`; chain 0 is recorded `snapshots` + 1 times, evenly spaced from step 0 to the end.
// Stops early (with the images as they are) when `stop` becomes true.
NoiseSamples sample_from_noise(const Model& model, const SamplerParams& params, int count,
                               uint64_t seed, int threads, int snapshots = 10,
                               const std::atomic<bool>* stop = nullptr);

// Multi-grid sampling (Gao et al. 2018; ebm-train --objective multigrid): `count` chains from
// uniform noise in [-1, 1) on the first network's grid, params[k].steps steps of the runtime's
// sampler with network k in turn (coarsest first), the images upsampled between grids (each pixel
// four times). Grid k's noise comes from seed + k * 0x9e3779b97f4a7c15, chain first_chain + i, so
// chains sampled in chunks are the chains of one call. Chain 0 is recorded `snapshots` + 1 times
// per grid (each grid's start and end included), upscaled to the last grid's size. `progress`
// gets (steps done, steps in all) over the chains of this call and returns false to stop, as
// `stop` does (the images then as they are). Throws ebm::Error when a network's images are not
// twice the height and width of the one before it (or their channels differ), or when the lists'
// lengths differ.
NoiseSamples sample_multigrid(const std::vector<const Network*>& grids,
                              const std::vector<SamplerParams>& params, int count, uint64_t seed,
                              int threads, int snapshots = 4,
                              const std::atomic<bool>* stop = nullptr, uint64_t first_chain = 0,
                              const std::function<bool(int64_t, int64_t)>& progress = {});

}  // namespace ebm::train
