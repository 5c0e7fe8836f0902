// Langevin sampler settings: what a model file's "ebm.sampler" holds and a user may override.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace ebm {

enum class SamplerForm {
  // The book's / paper's form (SPEC section 1), per step:
  //   x = clip(x + noise * N(0,1), -1, 1)
  //   x = clip(x - step_size * clip(dE/dx, -grad_clip, grad_clip), -1, 1)
  kPaper,
  // Du & Mordatch's textbook form: x = clip(x - (eps/2) dE/dx + sqrt(eps) N(0,1), -1, 1)
  kTextbook,
  // Annealed Langevin for noise-conditional energies E(x, sigma) (Song & Ermon 2019), from
  // x = mean + sigma_max N(0,1). Steps 0 .. steps-2 walk `levels` noise levels sigma_i, geometric
  // from sigma_max down to sigma_min, the same number of steps at each (to within one):
  //   x = x - (a_i/2) dE/dx(x, sigma_i) + sqrt(a_i) N(0,1),   a_i = eps sigma_i^2 / sigma_min^2
  // and the last step jumps to the denoised image: x = clip(x - sigma_min^2 dE/dx(x, sigma_min)).
  kAnnealed,
  // One step per noise level, sigma_0 = sigma_max ... sigma_{steps-1} = sigma_min geometric, then 0
  // (Song et al. 2021's DDIM for this noise schedule): with D = x - sigma_i^2 dE/dx(x, sigma_i),
  // the denoised image,
  //   x = D + sigma_{i+1} (eta N(0,1) + sqrt(1 - eta^2) (x - D) / sigma_i)
  // eta = 0 follows the noise levels deterministically, eta = 1 draws fresh noise at each level.
  // Also for noise-conditional energies; the last step is x = clip(D).
  kDdim,
};
// The forms that walk noise levels (and need a noise-conditional model).
inline bool walks_noise_levels(SamplerForm f) {
  return f == SamplerForm::kAnnealed || f == SamplerForm::kDdim;
}

struct SamplerParams {
  SamplerForm form = SamplerForm::kPaper;
  int steps = 1000;         // to generate; training uses 60 per batch
  float step_size = 10.0f;  // paper form
  float noise = 0.005f;     // paper form: standard deviation of the added noise
  float grad_clip = 0.03f;  // paper form: element-wise gradient clip
  float eps = 0.005f;       // textbook form: eps ~ 1/200
  // Chains from noise start at uniform noise in [-1, 1) drawn on a grid of start_cell x start_cell
  // pixel cells and bilinearly interpolated between the cell corners: 1 = every pixel independent
  // (the paper); larger values give smooth blotches, which send chains into more different basins.
  int start_cell = 1;
  // Annealed form: noise levels; eps above is its step (eps / sigma_min^2: the step as a share of
  // sigma_i^2).
  int levels = 20;
  float sigma_max = 10.0f;
  float sigma_min = 0.01f;
  float eta = 0.0f;  // ddim form: the share of fresh noise at each level
  // Annealed and ddim forms: how the noise levels are spaced between sigma_max and sigma_min.
  // 0: geometric (evenly in log sigma). rho >= 1: evenly in sigma^(1/rho) (Karras et al. 2022's
  // schedule, rho = 7 there): more of the levels at large noise, where the layout is decided, and
  // bigger steps at the small-noise end (80 -> 0.02 in 40 levels: 30 above sigma 5 at rho = 2,
  // 26 at rho = 3, 14 geometric). Smaller rho, more levels up high; rho -> infinity approaches
  // the geometric spacing.
  float rho = 0.0f;
  // Annealed and ddim forms: a schedule in two pieces. With split_sigma > 0 the first
  // split_levels levels are spaced (as rho says) from sigma_max down to split_sigma, not
  // including it, and the rest from split_sigma (itself a level) down to sigma_min. Above the
  // noise a model was trained on the chains only spread out, so a few large steps do there what
  // many did, and the levels go where the drawing forms (the shipped bridge model: 3 levels above
  // sigma 20 and 15 below, 18 levels for about the cost of its 20 even ones, with a lower
  // Frechet distance and less speckle; models/README.md). 0 = one piece, as before.
  float split_sigma = 0.0f;
  int split_levels = 0;
  // ddim form, for inpainting (Lugmayr et al. 2022's RePaint): each level's step is taken this many
  // times, the chains sent back up to the level's noise in between (x + sqrt(sigma_i^2 -
  // sigma_{i+1}^2) N(0,1)), so the regenerated pixels and the kept ones have several rounds to
  // agree. Costs that many gradient evaluations per step; 1 = plain ddim. With resample_sigma_max
  // S > 0, only the levels at or below S are taken again (0: every level). From fresh noise this
  // is a restart of the small-noise end (Xu et al. 2023): the strokes, drawn there, get a second
  // chance to agree (the shipped bridge model: 2 rounds at the levels up to sigma 2).
  int resample = 1;
  float resample_sigma_max = 0.0f;
  // Annealed and ddim forms, for a model that carries a weaker network of its own (model.h,
  // "ebm.autoguide"): Karras et al. 2024's autoguidance. The chains follow the composed energy
  //   E_w(x, sigma) = w E(x, sigma) + (1 - w) E_weak(x, sigma)
  // whose denoised image is D + (w - 1) (D - D_weak): pushed away from the weaker network's
  // guess, toward what the stronger network knows better (fewer ghosts and cleaner strokes, no
  // loss of variety). w = autoguide; 1 is the model alone. At levels above autoguide_sigma_max
  // (0: none) the weaker network is skipped (both only see out-of-training noise up there).
  float autoguide = 1.0f;
  float autoguide_sigma_max = 0.0f;
};
// The noise levels a noise-level form walks: annealed, `levels`; ddim, one per step (at least one).
inline int level_count(const SamplerParams& p) {
  return p.form == SamplerForm::kDdim ? (p.steps > 1 ? p.steps : 1) : p.levels;
}

// Throws ebm::Error naming the setting when the two-piece schedule (split_sigma, split_levels)
// does not fit the levels: split_sigma strictly between sigma_min and sigma_max, at least one
// level above it and two from it down (it and sigma_min). Nothing to check while it is off.
void check_split(const SamplerParams& p);

// The default settings of a form, as a model card would start from them.
SamplerParams default_sampler_params(SamplerForm f);

const char* sampler_form_name(SamplerForm f);  // "paper" / "textbook" / "annealed" / "ddim"
SamplerForm parse_sampler_form(const std::string& name);

// Reads the keys present in `j` over `base` and validates every value (ebm::Error names the key).
// Unknown keys are refused, so a typo never silently falls back to a default.
SamplerParams parse_sampler_params(const nlohmann::json& j, SamplerParams base = {});
nlohmann::json sampler_params_json(const SamplerParams& p);

}  // namespace ebm
