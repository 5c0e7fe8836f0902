#include "ebm/sampler_flags.h"

namespace ebm {

void SamplerFlags::add_to(ArgParser& args) {
  args.option("steps", "K", "Langevin steps (default: the model's)", &steps_, 0, 1000000);
  args.option("form", "NAME", "sampler form: paper, textbook, annealed or ddim (default: the model's)",
              &form_);
  args.option("step-size", "X", "paper form: gradient step size (default: the model's)",
              &step_size_, 0, 1e6);
  args.option("noise", "X", "paper form: noise standard deviation (default: the model's)", &noise_,
              0, 10);
  args.option("grad-clip", "X", "paper form: element-wise gradient clip (default: the model's)",
              &grad_clip_, 0, 1e6);
  args.option("eps", "X",
              "textbook form: eps in x - eps/2 dE/dx + sqrt(eps) N(0,1); annealed form: the step "
              "a_i = eps sigma_i^2 / sigma_min^2 (default: the model's)",
              &eps_, 0, 10);
  args.option("levels", "L", "annealed form: noise levels (ddim: one per step) (default: the model's)",
              &levels_, 1, 10000);
  args.option("sigma-max", "S",
              "annealed and ddim forms: largest noise level, where chains start (default: the "
              "model's)",
              &sigma_max_, 0, 1e4);
  args.option("sigma-min", "S", "annealed and ddim forms: smallest noise level (default: the model's)",
              &sigma_min_, 0, 1e4);
  args.option("eta", "E", "ddim form: share of fresh noise per level, 0 to 1 (default: the model's)",
              &eta_, 0, 1);
  args.option("start-cell", "K",
              "start from uniform noise smoothed over KxK-pixel cells, 1 = every pixel its own "
              "(default: the model's)",
              &start_cell_, 1, 4096);
}

nlohmann::json SamplerFlags::overrides(const ArgParser& args) const {
  nlohmann::json j = nlohmann::json::object();
  if (args.given("form")) j["form"] = form_;
  if (args.given("steps")) j["steps"] = steps_;
  if (args.given("step-size")) j["step_size"] = step_size_;
  if (args.given("noise")) j["noise"] = noise_;
  if (args.given("grad-clip")) j["grad_clip"] = grad_clip_;
  if (args.given("eps")) j["eps"] = eps_;
  if (args.given("levels")) j["levels"] = levels_;
  if (args.given("sigma-max")) j["sigma_max"] = sigma_max_;
  if (args.given("sigma-min")) j["sigma_min"] = sigma_min_;
  if (args.given("eta")) j["eta"] = eta_;
  if (args.given("start-cell")) j["start_cell"] = start_cell_;
  return j;
}

}  // namespace ebm
