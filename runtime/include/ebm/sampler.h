// Langevin sampling with the weights frozen and the gradient taken with respect to the input,
// in the two forms of sampler_params.h. Chain i draws all its randomness from
// Pcg32(seed, first_chain + i), so a chain's path depends only on the seed, its index, its start
// and the model: not on how a grid is split into batches or workers.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

#include "ebm/network.h"
#include "ebm/rng.h"
#include "ebm/thread_pool.h"
#include "ebm/sampler_params.h"

namespace ebm {

struct SamplerProgress {
  int step = 0;                     // steps done so far (0 = the starting images)
  int total = 0;                    // steps this run will do if not stopped
  int count = 0;                    // images
  const float* images = nullptr;    // [count, C, H, W]
  const float* energies = nullptr;  // [count]: at the latest gradient evaluation
  float sigma = 0;                  // annealed form: the noise level of the latest step
  int level = 0, levels = 0;        // annealed form: that level's index (from 0) and the count
};

class LangevinSampler {
 public:
  // `threads` splits the chains into that many groups stepped in parallel (<= 0: one per hardware
  // thread); the samples are bit-identical whatever the number.
  LangevinSampler(const Network& net, const SamplerParams& params, uint64_t seed, int threads = 1);

  // Starting points; each resets the step counter and computes the starting energies.
  // Uniform noise in [-1, 1), per pixel or smoothed over params().start_cell pixels; for the
  // annealed form, the model's mean image plus N(0, sigma_max^2) (annealing starts there).
  void start_uniform(int count, uint64_t first_chain = 0);
  void start_from(const float* images, int count, uint64_t first_chain = 0);
  // Image i = (1 - t[i]) * a + t[i] * b: chains from blends of two images, to explore mixtures.
  void start_blend(const float* a, const float* b, const std::vector<float>& t,
                   uint64_t first_chain = 0);

  void step();  // one Langevin step for every chain; allocates nothing

  // Runs the remaining steps of params.steps, at most max_steps of them in this call (so a caller
  // can run a long chain in slices). Calls `on_progress` before the very first step, then every
  // `every` steps and after the last; it returns false to stop. request_stop() from any thread
  // also stops after the current step (the request is consumed). Returns the steps done.
  using Callback = std::function<bool(const SamplerProgress&)>;
  int run(int every = 0, const Callback& on_progress = {}, int max_steps = 1 << 30);
  void request_stop() { stop_.store(true); }
  bool finished() const { return done_ >= params_.steps; }

  const SamplerParams& params() const { return params_; }
  int count() const { return count_; }
  int steps_done() const { return done_; }
  const std::vector<float>& images() const { return x_; }
  const std::vector<float>& energies() const { return e_; }
  // E(images()) as they are now (one forward pass).
  std::vector<float> final_energies();

 private:
  void begin(int count, uint64_t first_chain);
  void annealed_step();
  void compute_energies(float* e);
  // Calls fn(workspace, first chain, chain count) for each group of chains, in parallel.
  void for_each_group(const std::function<void(Network::Workspace&, int, int)>& fn);
  SamplerProgress progress(int total) const;
  // Annealed form: the noise level of step k (the last step is the denoising one at sigma_min).
  int level_of(int k) const;
  int level_count() const;  // annealed: params.levels; ddim: one level per step
  float sigma_of_level(int level) const;
  // The noise level energies are taken at: the annealed level, else sigma_min (which a
  // noise-conditional model needs whatever the form).
  float current_sigma() const;

  const Network& net_;
  ThreadPool pool_;
  std::vector<Network::Workspace> workspaces_;
  SamplerParams params_;
  uint64_t seed_;
  int count_ = 0, done_ = 0;
  std::vector<Pcg32> rngs_;
  std::vector<float> x_, grad_, e_, noise_;
  std::atomic<bool> stop_{false};
};

}  // namespace ebm
