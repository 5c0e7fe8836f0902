// Langevin sampling with the weights frozen and the gradient taken with respect to the input,
// in the two forms of sampler_params.h. Chain i draws all its randomness from
// Pcg32(seed, first_chain + i), so a chain's path depends only on the seed, its index, its start
// and the model: not on how a grid is split into batches or workers.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
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
  // [count]: at the latest gradient evaluation (each step's is of the images before it); NaN at
  // the start of a noise-level walk (ddim, annealed), whose first step computes them
  const float* energies = nullptr;
  float sigma = 0;                  // annealed form: the noise level of the latest step
  int level = 0, levels = 0;        // annealed form: that level's index (from 0) and the count
  // Noise-level forms, once a step is done: each chain's denoised estimate at that step,
  // clip(x - sigma^2 dE/dx) (the kept pixels: the kept image), [count, C, H, W]. A clean drawing
  // long before the walk ends: what a page shows while it refines. Else null.
  const float* denoised = nullptr;
};

// A keep mask for set_keep that regenerates one named half of an image ("left", "right", "top"
// or "bottom") and keeps the rest: 1 = keep, for each of the image's pixels. Throws ebm::Error
// for any other name.
bool is_region_name(const std::string& name);
std::vector<float> region_keep_mask(const std::string& region, const Shape& image);

// A guide target (LangevinSampler::set_guide) from "arch:0.5,suspension:0.5": comma-separated
// label or family names (the family is a label's part before the first '_', metrics.h), each
// with an optional share (default 1). Shares must be > 0 and are normalised to sum to 1, so
// "arch,suspension" is the same 50/50 mix; a family's share is spread evenly over its subtypes.
// Returns one probability per label. Throws ebm::Error naming the known names for an unknown one,
// and for a bad or repeated entry.
std::vector<float> parse_guide_target(const std::string& spec, const std::vector<std::string>& labels);

// Guidance by a classifier: the noise level above which its pull is tapered, and the scale the
// programs use when none is given (see set_guide; chosen by the sweep in models/README.md).
constexpr float kDefaultGuideSigma = 1.0f;
constexpr float kDefaultGuideScale = 3000.0f;
// The scale for a noise-conditional guide (models/bridge-guide.safetensors; the sweep in
// models/README.md).
constexpr float kDefaultNoiseGuideScale = 30.0f;
// The share of a noise-level walk a blend restarts (start_blend; models/README.md, "Blends").
constexpr float kDefaultBlendStrength = 0.5f;

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
  // Under the noise-level forms a blend is no state of the walk's first level (it carries none of
  // sigma_max's noise; walked from there it is read as noise and forgotten), so each chain
  // restarts from its blend part way, as start_variation does with `strength`: "blend, then
  // restart". The other forms start from the blends themselves and walk every step (`strength`
  // unused).
  void start_blend(const float* a, const float* b, const std::vector<float>& t,
                   uint64_t first_chain = 0, float strength = kDefaultBlendStrength);
  // Variations: chains restart from `images` part way through the walk. `strength` in [0, 1] is
  // the share of the walk still to run: the noise-level forms start at the level (1 - strength)
  // of the way down, from image + sigma N(0,1) at that level (0: only the final denoising step,
  // 1: a fresh start whatever the image); the other forms start from the blend
  // (1 - strength) image + strength u, u the noise start_uniform draws, with that share of the
  // steps left. Small strengths give close variations, large ones new designs.
  void start_variation(const float* images, int count, float strength, uint64_t first_chain = 0);
  // Inpainting: from the next start on, the pixels where mask[k] > 0.5 keep their value in
  // `images` (one image for every chain, or one per chain: d or count * d floats, in [-1, 1]);
  // the sampler completes the rest. The kept pixels are reset after every step, to the image
  // plus N(0, sigma^2) of the level the chain now stands at under the noise-level forms and to
  // the image itself otherwise, so at the end they equal it bit for bit. `mask`: d floats.
  void set_keep(std::vector<float> images, const std::vector<float>& mask);
  void clear_keep();
  bool keeps() const { return !kept_.empty(); }

  // Guided sampling: from now on every step follows the gradient of
  //   E(x, sigma) + scale w(sigma) CE(target, softmax(classifier(x)))
  // in place of dE/dx (in the ddim form it thus enters D = x - sigma^2 grad). `target` is a
  // distribution over the classifier's labels (parse_guide_target); the classifier must take the
  // model's images and must outlive the sampler (it is not copied). w = 1 under the paper and
  // textbook forms; under the noise-level forms w(sigma) = min(1, (sigma_guide / sigma)^2): full
  // strength at and below sigma_guide, and above it a pull whose share of the step (which scales
  // with sigma^2) stays what it is at sigma_guide, so a classifier trained on clean drawings,
  // unreliable on very noisy states, does not dominate the early steps. The energies reported
  // (energies(), progress) stay E alone.
  //
  // With on_denoised (the noise-level forms only), the classifier reads the chain's denoised
  // estimate D = clip(x - sigma^2 dE/dx) instead of the noisy x, and its gradient there is added
  // as if dD/dx were the identity: not the gradient of any energy, but a clean classifier then
  // sees the kind of image it was trained on at every level (the noisy x it has never seen).
  //
  // A noise-conditional classifier (Network::noise_conditional(): trained on noised drawings
  // x + sigma z, models/bridge-guide.safetensors) reads the chains' states with their current
  // sigma, at full strength at every level (w = 1, sigma_guide unused); it needs a noise-level
  // form and refuses on_denoised.
  void set_guide(const Network& classifier, std::vector<float> target, float scale,
                 float sigma_guide = kDefaultGuideSigma, bool on_denoised = false);
  void clear_guide();
  bool guided() const { return guide_ != nullptr; }
  float guide_weight(float sigma) const;  // scale w(sigma); 0 without a guide
  // The gradient the steps follow at noise level sigma (dE/dx, composed with the weaker
  // network's under autoguidance, SamplerParams::autoguide, plus the guide's term) for n images,
  // and E (the model's alone, as energies() reports it); not while a step runs.
  void gradient(const float* x, int n, float sigma, float* e, float* grad);

  void step();  // one Langevin step for every chain; allocates nothing

  // Each thread runs the network on its chains in slices of at most this many (0, the default:
  // as many as keep the workspaces of the energy model and guide within kSliceBudgetBytes, at
  // least one and at most kSliceMostChains; a network still runs at most its own
  // Network::slice_images() at once). Every chain's result is the same whatever the slice: only
  // memory and speed change.
  void set_max_batch(int chains);
  int slice_size() const;  // the slice in effect
  size_t workspace_bytes() const;  // what the threads' workspaces hold now
  // Per thread. Natively 64 MiB: the shipped bridge model (13.5 MiB a chain with its weaker
  // network) then runs 4 chains a slice, 1.2x faster than one at a time; in WebAssembly 16 MiB,
  // where each worker's heap is what the page pays and one chain at a time was as fast
  // (bench/README.md, "Chains in slices"). At most 8 chains a slice, as for a network's own
  // slices (Network::kSliceMostImages).
#if defined(__EMSCRIPTEN__)
  static constexpr size_t kSliceBudgetBytes = size_t(16) << 20;
#else
  static constexpr size_t kSliceBudgetBytes = Network::kSliceBudgetBytes;
#endif
  static constexpr int kSliceMostChains = Network::kSliceMostImages;

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
  const std::vector<float>& energies() const { return e_; }  // as SamplerProgress::energies
  // E(images()) as they are now (one forward pass).
  std::vector<float> final_energies();

 private:
  void begin(int count, uint64_t first_chain);
  void start_energies();  // e_ for the starting images (NaN for the noise-level forms)
  // Resets the kept pixels of chains [b0, b0 + nb) to the kept image plus N(0, sigma^2) (sigma 0:
  // the image itself); the noise comes from each chain's own generator.
  void apply_keep(int b0, int nb, float sigma);
  void apply_keep_all(float sigma);
  // The denoised estimates of chains [b0, b0 + nb) from x_ and grad_ at noise level sigma.
  void store_denoised(int b0, int nb, float sigma);
  void annealed_step();
  void compute_energies(float* e);
  // One group's workspaces: the energy model's and the guide classifier's.
  struct Workspaces {
    Network::Workspace energy, guide, autoguide;
  };
  // The weaker network when autoguidance is on (params().autoguide != 1), else null.
  const Network* weak_network() const;
  // Whether the weaker network takes part at noise level sigma (params().autoguide).
  bool autoguided(float sigma) const;
  void compose_autoguide(float* grad, const float* weak, size_t len) const;
  // E and the guided gradient of chains [b0, b0 + nb) into e_ and grad_.
  void energy_and_grad(Workspaces& ws, int b0, int nb, float sigma);
  // Calls fn(workspaces, first chain, chain count) for each group of chains, in parallel.
  void for_each_group(const std::function<void(Workspaces&, int, int)>& fn);
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
  std::vector<Workspaces> workspaces_;
  SamplerParams params_;
  uint64_t seed_;
  int count_ = 0, done_ = 0;
  std::vector<Pcg32> rngs_;
  std::vector<float> x_, grad_, e_, noise_;
  // Where this run started: the step counter, the noise level and its index (a variation starts
  // part way; every other start at step 0, sigma_max, level 0).
  int start_step_ = 0, start_level_ = 0;
  float start_sigma_ = 0;
  std::vector<float> keep_;        // kept images: one (d floats) or one per chain
  std::vector<uint32_t> kept_;     // indices of the kept pixels within an image
  std::vector<float> denoised_;    // noise-level forms: the latest step's denoised estimates
  const Network* guide_ = nullptr;  // the guide classifier, if any
  std::vector<float> guide_target_, guide_grad_, guide_ce_;  // grad_, ce: per chain
  std::vector<float> guide_input_;  // on_denoised: the denoised estimates it reads
  std::vector<float> weak_grad_, weak_e_;  // autoguidance: the weaker network's dE/dx and E
  float guide_scale_ = 0, guide_sigma_ = kDefaultGuideSigma;
  int max_batch_ = 0;
  bool guide_denoised_ = false;
  std::atomic<bool> stop_{false};
};

}  // namespace ebm
