#include "export.h"

#include <cmath>
#include <ctime>

#include "ebm/cli.h"
#include "ebm/error.h"
#include "ebm/network.h"
#include "langevin.h"
#include "objective.h"

namespace ebm::train {

namespace {

// "runs/bridges/checkpoint.pt" -> "bridges"
std::string run_name(const std::string& checkpoint) {
  std::string dir = checkpoint.substr(
      0, checkpoint.find_last_of('/') == std::string::npos ? 0 : checkpoint.find_last_of('/'));
  const size_t k = dir.find_last_of('/');
  return k == std::string::npos ? (dir.empty() ? "model" : dir) : dir.substr(k + 1);
}

}  // namespace

double max_relative_error(const torch::Tensor& a, const torch::Tensor& b) {
  const double scale = b.abs().max().item<double>();
  const double diff = (a - b).abs().max().item<double>();
  return diff / std::max(scale, 1e-30);
}

double runtime_agreement(const EnergyNetImpl& net, const Model& model, int count, uint64_t seed) {
  EnergyNet ref(net.architecture(), 0, net.spectral_norm(), net.energy_form());
  ref->load_state(net.state());
  ref->to(torch::kDouble);
  const Shape s = net.image_shape();
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const torch::Tensor x = torch::rand({count, s.c, s.h, s.w}, gen, torch::kFloat32) * 2.0 - 1.0;
  const torch::Tensor xd = x.to(torch::kDouble);
  const auto error = [](const torch::Tensor& runtime, const torch::Tensor& exact) {
    return max_relative_error(runtime.to(torch::kDouble), exact.detach());
  };
  const auto sigmas = [&](double sigma) { return torch::full({count}, sigma, torch::kDouble); };
  if (net.energy_form().denoiser) {
    // Energies and input gradients at a small, a middle, a large and a very large noise level
    // (above the gate of a refinement, LayerSpec::sigma_max).
    Network rt(model);
    double worst = 0;
    for (float sigma : {0.02f, 0.3f, 5.0f, 40.0f}) {
      torch::Tensor e;
      const torch::Tensor g = energy_input_grad(*ref, ref->weights(), xd, &e, sigmas(sigma));
      torch::Tensor re = torch::empty({count}), rg = torch::empty_like(x);
      rt.energy_and_input_grad(x.data_ptr<float>(), count, re.data_ptr<float>(), rg.data_ptr<float>(),
                               sigma);
      worst = std::max({worst, error(re, e), error(rg, g)});
    }
    return worst;
  }
  if (net.energy_form().scalar_noise) {
    // A noise-conditional classifier: logits and the cross-entropy's input gradient (what a guide
    // follows) at a small, a middle and a large noise level.
    Network rt(model);
    const int k = rt.outputs();
    std::vector<float> target(size_t(k), 0.0f);
    target[0] = 0.5f;
    target[size_t(k - 1)] += 0.5f;
    const torch::Tensor t =
        torch::from_blob(target.data(), {1, k}, torch::kFloat32).to(torch::kDouble);
    double worst = 0;
    for (float sigma : {0.02f, 0.3f, 5.0f}) {
      const torch::Tensor xs = xd.clone().requires_grad_(true);
      const torch::Tensor logits = ref->classify(ref->weights(), xs, sigmas(sigma));
      const torch::Tensor ce = -(t * torch::log_softmax(logits, 1)).sum(1);
      const torch::Tensor g = torch::autograd::grad({ce.sum()}, {xs})[0];
      torch::Tensor rl = torch::empty({count, int64_t(k)}), rce = torch::empty({count}),
                    rg = torch::empty_like(x);
      rt.logits(x.data_ptr<float>(), count, rl.data_ptr<float>(), sigma);
      rt.cross_entropy_and_input_grad(x.data_ptr<float>(), count, target, rce.data_ptr<float>(),
                                      rg.data_ptr<float>(), sigma);
      worst = std::max({worst, error(rl, logits), error(rce, ce), error(rg, g)});
    }
    return worst;
  }
  torch::NoGradGuard no_grad;
  const torch::Tensor expected = ref->run(ref->weights(), xd);
  Network rt(model);
  torch::Tensor got = torch::empty({count, int64_t(rt.outputs())}, torch::kFloat32);
  rt.logits(x.data_ptr<float>(), count, got.data_ptr<float>());
  return error(got, expected);
}

nlohmann::json evaluation_card(const std::vector<nlohmann::json>& reports) {
  if (reports.empty()) throw Error("no evaluation reports given");
  const auto figure = [](const nlohmann::json& r, const char* section, const char* key) {
    if (!r.is_object() || !r.contains(section) || !r[section].is_object() ||
        !r[section].contains(key) || !r[section][key].is_number())
      throw Error(std::string("not an ebm-eval report: it has no number ") + section + "." + key);
    return r[section][key].get<double>();
  };
  // To a number of decimals, by division so that the result prints short (0.0078, not
  // 0.0078000000000000005).
  const auto round_to = [](double v, double per_unit) { return std::round(v * per_unit) / per_unit; };
  const auto main_figures = [&](const nlohmann::json& r) {
    return nlohmann::json{{"frechet_ratio", round_to(figure(r, "frechet", "ratio"), 10)},
                          {"speckle_ratio", round_to(figure(r, "speckle", "ratio"), 10)},
                          {"rarest_subtype", round_to(figure(r, "coverage", "rarest_share"), 1e4)},
                          {"new_types", round_to(figure(r, "new_types", "share"), 1e4)}};
  };
  const nlohmann::json& first = reports.front();
  nlohmann::json e = main_figures(first);
  e["subtypes_present"] = int(figure(first, "coverage", "subtypes_present"));
  e["sharpness_ratio"] = round_to(figure(first, "sharpness", "ratio"), 1e3);
  e["copies"] = figure(first, "copies", "share");
  e["seed"] = int64_t(figure(first, "sampling", "seed"));
  e["samples"] = int64_t(figure(first, "sampling", "count"));
  for (size_t i = 1; i < reports.size(); ++i)
    e["seed_" + std::to_string(int64_t(figure(reports[i], "sampling", "seed")))] =
        main_figures(reports[i]);
  return e;
}

namespace {
// The weaker network for ExportOptions::autoguide, folded, its card kept without the evaluation
// figures (validate_model checks that it fits the model it joins).
std::shared_ptr<const Model> autoguide_from(Model weak) {
  weak.card.erase("evaluation");
  weak.sampler = {};
  return std::make_shared<const Model>(fold_normalization(weak));
}

// The options' card fields, evaluation figures and weaker network onto m (both exports). Whether
// the weaker network fits the model and its settings is validate_model's to say.
void merge_options(Model* m, const ExportOptions& opt) {
  if (!opt.card.is_null()) {
    if (!opt.card.is_object()) throw Error("extra card fields must be a JSON object");
    m->card.merge_patch(opt.card);
  }
  if (!opt.evaluation.is_null()) m->card["evaluation"].merge_patch(opt.evaluation);
  if (opt.drop_autoguide) m->autoguide.reset();
  if (opt.autoguide) m->autoguide = autoguide_from(*opt.autoguide);
}
}  // namespace

Model export_checkpoint(const CheckpointInfo& info, const ExportOptions& opt) {
  Model m = checkpoint_model(info);
  const TrainConfig& cfg = info.config;
  {
    // The runtime must compute what LibTorch computes, before anything is written.
    EnergyNet net(m.arch, 0, info.config.spectral_norm, m.energy);
    net->load_state(info.tensors);
    const double err = runtime_agreement(*net, m, 8, 12345);
    if (!(err <= 1e-4))
      throw Error(
          "the runtime's outputs differ from LibTorch's on random images (max relative "
          "error " +
          std::to_string(err) + " > 1e-4); not exporting");
  }
  m.sampler = cfg.sampler;
  m.sampler.steps = cfg.sample_steps > 0 ? cfg.sample_steps : m.sampler.steps;
  // A multi-grid run learns the short run it samples with: each grid's steps as in training.
  if (cfg.task == Task::kEnergy && cfg.objective == Objective::kMultigrid)
    m.sampler.steps = cfg.langevin_steps;
  m.sampler = parse_sampler_params(opt.sampler, m.sampler);
  const std::string name = opt.name.empty() ? run_name(opt.source) : opt.name;
  const bool energy = info.kind == ModelKind::kEnergy;
  const std::string description = !opt.description.empty()
                                      ? opt.description
                                      : std::string(energy ? "Energy-based model" : "Classifier") +
                                            " trained by ebm-train on '" + cfg.data + "' (" +
                                            cfg.preset + " architecture).";
  nlohmann::json training = {
      {"task", task_name(cfg.task)},
      {"epochs", info.counters.epoch},
      {"steps", info.counters.step},
      {"wall_seconds", std::round(info.counters.wall_seconds)},
      {"wall_time", format_duration(info.counters.wall_seconds)},
      {"batch", cfg.batch},
      {"optimizer",
       {{"name", "adam"},
        {"lr", cfg.lr},
        {"betas", {cfg.beta1, cfg.beta2}},
        {"lr_decay", cfg.lr_decay_epochs > 0 ? "cosine to 0 over the last " +
                                                   std::to_string(cfg.lr_decay_epochs) + " epochs"
                                             : "constant"}}},
      {"rollbacks", info.counters.rollbacks},
      {"seed", cfg.seed},
      {"final", info.summary.value("train", nlohmann::json::object())},
      {"validation", info.summary.value("validation", nlohmann::json::object())}};
  // What a run continued: the epochs above are this run's own.
  if (!cfg.init_from.empty()) training["started_from"] = cfg.init_from;
  if (cfg.freeze_layers > 0) training["frozen_layers"] = cfg.freeze_layers;
  if (energy && cfg.objective == Objective::kDenoisingScoreMatching) {
    training["objective"] = "denoising score matching";
    training["noise_levels"] = {{"log_mean", cfg.sigma_mean}, {"log_std", cfg.sigma_std},
                                {"min", cfg.sigma_min},      {"max", cfg.sigma_max}};
    training["loss_sigma_floor"] = cfg.loss_sigma_floor;
    if (cfg.stroke_weight > 0) training["stroke_weight"] = cfg.stroke_weight;
    training["ema"] = cfg.ema;
  } else if (!energy && cfg.noise_conditional) {
    training["noise_conditional"] = true;
    training["noise_levels"] = {{"distribution", "log-uniform"}, {"min", cfg.sigma_min},
                                {"max", cfg.sigma_max}};
  } else if (energy && cfg.objective == Objective::kMultigrid) {
    training["objective"] = "multi-grid contrastive divergence (Gao et al. 2018)";
    training["alpha"] = cfg.alpha;
    training["grids"] = kMultigridGrids;
    // Which grid this file is: the coarser ones (ebm-export --grid) start the sampling.
    training["grid"] = info.grid >= 0 ? info.grid : kMultigridGrids - 1;
    training["langevin"] = sampler_params_json(cfg.sampler);
    training["langevin"]["steps"] = cfg.langevin_steps;
  } else if (energy) {
    training["objective"] = "contrastive divergence";
    training["alpha"] = cfg.alpha;
    training["replay_buffer"] = {{"size", cfg.buffer_size}, {"fresh", cfg.fresh}};
    if (cfg.kl_weight > 0) training["kl_weight"] = cfg.kl_weight;
    if (cfg.augment > 0) training["augment"] = cfg.augment;
    training["langevin"] = sampler_params_json(cfg.sampler);
    training["langevin"]["steps"] = cfg.langevin_steps;
  }
  m.card = {{"name", name},
            {"description", description},
            {"license", opt.license.empty() ? "unspecified" : opt.license},
            {"dataset", info.summary.value("dataset", nlohmann::json{{"path", cfg.data}})},
            {"architecture",
             {{"preset", cfg.preset},
              {"parameters", m.arch.parameter_count()},
              {"spectral_norm", cfg.spectral_norm}}},
            {"training", training},
            {"created", time_now("%Y-%m-%d")},
            {"exported_by", "ebm-export (bridge-ebm)"}};
  if (!opt.source.empty()) m.card["source"] = opt.source;
  merge_options(&m, opt);
  return fold_normalization(m);
}

Model reexport_model(Model m, const ExportOptions& opt) {
  if (!opt.sampler.is_null()) m.sampler = parse_sampler_params(opt.sampler, m.sampler);
  if (!opt.name.empty()) m.card["name"] = opt.name;
  if (!opt.description.empty()) m.card["description"] = opt.description;
  if (!opt.license.empty()) m.card["license"] = opt.license;
  merge_options(&m, opt);
  m.card["updated"] = time_now("%Y-%m-%d");
  validate_model(m);
  return m;
}

}  // namespace ebm::train
