#include "config.h"

#include <set>

#include "ebm/error.h"
#include "ebm/json_util.h"

namespace ebm::train {

using nlohmann::json;

const char* task_name(Task t) {
  return t == Task::kClassify ? "classify" : "energy";
}

Task parse_task(const std::string& name) {
  if (name == "energy") return Task::kEnergy;
  if (name == "classify") return Task::kClassify;
  throw Error("unknown task '" + name + "' (expected energy or classify)");
}

const char* objective_name(Objective o) {
  return o == Objective::kDenoisingScoreMatching ? "dsm"
         : o == Objective::kMultigrid            ? "multigrid"
                                                 : "cd";
}

Objective parse_objective(const std::string& name) {
  if (name == "cd") return Objective::kContrastiveDivergence;
  if (name == "dsm") return Objective::kDenoisingScoreMatching;
  if (name == "multigrid") return Objective::kMultigrid;
  throw Error("unknown objective '" + name +
              "' (expected cd: contrastive divergence, dsm: denoising score matching, or "
              "multigrid: multi-grid contrastive divergence)");
}

json TrainConfig::to_json() const {
  return {{"task", task_name(task)},
          {"objective", objective_name(objective)},
          {"preset", preset},
          {"architecture", architecture},
          {"data", data},
          {"labels", labels},
          {"val_fraction", val_fraction},
          {"limit", limit},
          {"epochs", epochs},
          {"batch", batch},
          {"lr", lr},
          {"lr_decay_epochs", lr_decay_epochs},
          {"beta1", beta1},
          {"beta2", beta2},
          {"adam_eps", adam_eps},
          {"init_from", init_from},
          {"freeze_layers", freeze_layers},
          {"clip_grad_norm", clip_grad_norm},
          {"spectral_norm", spectral_norm},
          {"alpha", alpha},
          {"buffer_size", buffer_size},
          {"fresh", fresh},
          {"langevin_steps", langevin_steps},
          {"langevin_backend", langevin_backend},
          {"sampler", sampler_params_json(sampler)},
          {"real_noise", real_noise},
          {"kl_weight", kl_weight},
          {"augment", augment},
          {"grid_presets", grid_presets},
          {"sigma_mean", sigma_mean},
          {"sigma_std", sigma_std},
          {"sigma_min", sigma_min},
          {"sigma_max", sigma_max},
          {"loss_sigma_floor", loss_sigma_floor},
          {"stroke_weight", stroke_weight},
          {"ema", ema},
          {"noise_conditional", noise_conditional},
          {"sample_count", sample_count},
          {"sample_steps", sample_steps},
          {"buffer_grid", buffer_grid},
          {"checkpoint_minutes", checkpoint_minutes},
          {"max_energy", max_energy},
          {"max_loss_ratio", max_loss_ratio},
          {"max_rollbacks", max_rollbacks},
          {"rollback_lr_factor", rollback_lr_factor},
          {"seed", seed},
          {"threads", threads},
          {"device", device},
          {"max_steps", max_steps},
          {"inject_nan_step", inject_nan_step},
          {"inject_drift_step", inject_drift_step}};
}

TrainConfig TrainConfig::from_json(const json& j) {
  if (!j.is_object()) throw Error("run configuration must be a JSON object");
  TrainConfig c;
  const json known = c.to_json();
  for (const auto& [key, value] : j.items()) {
    (void)value;
    if (!known.contains(key)) throw Error("run configuration: unknown key \"" + key + "\"");
  }
  try {
    auto get = [&](const char* key, auto* out) {
      if (j.contains(key)) *out = j.at(key).get<std::decay_t<decltype(*out)>>();
    };
    std::string task = task_name(c.task);
    get("task", &task);
    c.task = parse_task(task);
    std::string objective = objective_name(c.objective);
    get("objective", &objective);
    c.objective = parse_objective(objective);
    get("preset", &c.preset);
    if (j.contains("architecture")) c.architecture = j.at("architecture");
    get("data", &c.data);
    get("labels", &c.labels);
    get("val_fraction", &c.val_fraction);
    get("limit", &c.limit);
    get("epochs", &c.epochs);
    get("batch", &c.batch);
    get("lr", &c.lr);
    get("lr_decay_epochs", &c.lr_decay_epochs);
    get("beta1", &c.beta1);
    get("beta2", &c.beta2);
    get("adam_eps", &c.adam_eps);
    get("init_from", &c.init_from);
    get("freeze_layers", &c.freeze_layers);
    get("clip_grad_norm", &c.clip_grad_norm);
    get("spectral_norm", &c.spectral_norm);
    get("alpha", &c.alpha);
    get("buffer_size", &c.buffer_size);
    get("fresh", &c.fresh);
    get("langevin_steps", &c.langevin_steps);
    get("langevin_backend", &c.langevin_backend);
    if (j.contains("sampler")) c.sampler = parse_sampler_params(j.at("sampler"));
    get("real_noise", &c.real_noise);
    get("kl_weight", &c.kl_weight);
    get("augment", &c.augment);
    get("grid_presets", &c.grid_presets);
    get("sigma_mean", &c.sigma_mean);
    get("sigma_std", &c.sigma_std);
    get("sigma_min", &c.sigma_min);
    get("sigma_max", &c.sigma_max);
    get("loss_sigma_floor", &c.loss_sigma_floor);
    get("stroke_weight", &c.stroke_weight);
    get("ema", &c.ema);
    get("noise_conditional", &c.noise_conditional);
    get("sample_count", &c.sample_count);
    get("sample_steps", &c.sample_steps);
    get("buffer_grid", &c.buffer_grid);
    get("checkpoint_minutes", &c.checkpoint_minutes);
    get("max_energy", &c.max_energy);
    get("max_loss_ratio", &c.max_loss_ratio);
    get("max_rollbacks", &c.max_rollbacks);
    get("rollback_lr_factor", &c.rollback_lr_factor);
    get("seed", &c.seed);
    get("threads", &c.threads);
    get("device", &c.device);
    get("max_steps", &c.max_steps);
    get("inject_nan_step", &c.inject_nan_step);
    get("inject_drift_step", &c.inject_drift_step);
  } catch (const json::exception& e) {
    throw Error(std::string("run configuration: ") + e.what());
  }
  return c;
}

}  // namespace ebm::train
