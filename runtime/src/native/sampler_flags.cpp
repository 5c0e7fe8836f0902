#include "ebm/sampler_flags.h"

namespace ebm {

template <class T, class... Bounds>
void SamplerFlags::add(ArgParser& args, const char* flag, const char* metavar, const char* help,
                       T* out, Bounds... bounds) {
  args.option(flag, metavar, help, out, bounds...);
  flags_.push_back({flag, [out] { return nlohmann::json(*out); }});
}

void SamplerFlags::add_to(ArgParser& args) {
  add(args, "steps", "K", "Langevin steps (default: the model's)", &steps_, 0, 1000000);
  add(args, "form", "NAME", "sampler form: paper, textbook, annealed or ddim (default: the model's)",
      &form_);
  add(args, "step-size", "X", "paper form: gradient step size (default: the model's)", &step_size_,
      0.0, 1e6);
  add(args, "noise", "X", "paper form: noise standard deviation (default: the model's)", &noise_,
      0.0, 10.0);
  add(args, "grad-clip", "X", "paper form: element-wise gradient clip (default: the model's)",
      &grad_clip_, 0.0, 1e6);
  add(args, "eps", "X",
      "textbook form: eps in x - eps/2 dE/dx + sqrt(eps) N(0,1); annealed form: the step "
      "a_i = eps sigma_i^2 / sigma_min^2 (default: the model's)",
      &eps_, 0.0, 10.0);
  add(args, "levels", "L", "annealed form: noise levels (ddim: one per step) (default: the model's)",
      &levels_, 1, 10000);
  add(args, "sigma-max", "S",
      "annealed and ddim forms: largest noise level, where chains start (default: the model's)",
      &sigma_max_, 0.0, 1e4);
  add(args, "sigma-min", "S", "annealed and ddim forms: smallest noise level (default: the model's)",
      &sigma_min_, 0.0, 1e4);
  add(args, "eta", "E", "ddim form: share of fresh noise per level, 0 to 1 (default: the model's)",
      &eta_, 0.0, 1.0);
  add(args, "rho", "R",
      "annealed and ddim forms: noise levels evenly spaced in sigma^(1/R), R from 1 to 100 "
      "(smaller R: more levels at large noise, where the layout forms; 7 in Karras et al. 2022); "
      "0 = geometric, evenly in log sigma (default: the model's)",
      &rho_, 0.0, 100.0);
  add(args, "split-sigma", "S",
      "annealed and ddim forms: a schedule in two pieces, --split-levels levels from --sigma-max "
      "down to S and the rest from S down to --sigma-min (few large steps above the noise the "
      "model was trained on); 0 = one piece (default: the model's)",
      &split_sigma_, 0.0, 1e4);
  add(args, "split-levels", "K",
      "with --split-sigma: the levels above S (default: the model's)", &split_levels_, 0, 10000);
  add(args, "resample", "R",
      "ddim form: take each level's step R times, re-noising in between, so inpainted regions "
      "agree with the kept pixels, at R times the cost (default: the model's, 1)",
      &resample_, 1, 100);
  add(args, "resample-sigma-max", "S",
      "with --resample: only at noise levels up to S (a restart of the small-noise end, where the "
      "strokes form), 0 = at every level (default: the model's)",
      &resample_sigma_max_, 0.0, 1e4);
  add(args, "autoguide", "W",
      "annealed and ddim forms, a model that carries a weaker network (format 3): follow "
      "W E + (1 - W) E_weak, pushed away from the weaker network's guess; 1 = the model alone "
      "(default: the model's)",
      &autoguide_, 0.0, 20.0);
  add(args, "autoguide-sigma-max", "S",
      "skip the weaker network at noise levels above S, 0 = at none (default: the model's)",
      &autoguide_sigma_max_, 0.0, 1e4);
  add(args, "start-cell", "K",
      "start from uniform noise smoothed over KxK-pixel cells, 1 = every pixel its own (default: "
      "the model's)",
      &start_cell_, 1, 4096);
}

nlohmann::json SamplerFlags::overrides(const ArgParser& args) const {
  // Each flag overrides the ebm.sampler key of its name with underscores: --sigma-max, sigma_max.
  nlohmann::json j = nlohmann::json::object();
  for (const Flag& f : flags_) {
    if (!args.given(f.name)) continue;
    std::string key = f.name;
    for (char& c : key)
      if (c == '-') c = '_';
    j[key] = f.value();
  }
  return j;
}

}  // namespace ebm
