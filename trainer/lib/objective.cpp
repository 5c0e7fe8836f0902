#include "objective.h"

#include <algorithm>
#include <cstdio>

#include "distributed.h"
#include "ebm/error.h"

namespace ebm::train {

void Figures::set(const std::string& name, double value) {
  for (auto& [n, v] : items_)
    if (n == name) {
      v = value;
      return;
    }
  items_.emplace_back(name, value);
}

double Figures::get(const std::string& name) const {
  for (const auto& [n, v] : items_)
    if (n == name) return v;
  return NAN;
}

nlohmann::json TrainingObjective::validation_json(const Figures& v) const {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [name, value] : v.items()) j[name] = value;
  return j;
}

std::unique_ptr<TrainingObjective> make_objective(const TrainConfig& cfg, EnergyNet& net,
                                                  at::Generator& gen, const Shard& shard) {
  if (cfg.task == Task::kClassify) return make_classify(cfg, net);
  if (cfg.noise_conditional)
    throw Error("--noise-conditional is for --task classify (a guide classifier); an energy "
                "model is noise-conditional by its preset's energy form (--preset unet "
                "--objective dsm)");
  if (cfg.objective == Objective::kDenoisingScoreMatching)
    return make_denoising_score_matching(cfg, net);
  if (net->energy_form().denoiser)
    throw Error("a denoiser energy is trained by denoising score matching (--objective dsm)");
  if (cfg.objective == Objective::kMultigrid) return make_multigrid(cfg, net, shard);
  return make_contrastive_divergence(cfg, net, gen, shard);
}

bool draws_per_rank(const TrainConfig& cfg) {
  return cfg.task == Task::kEnergy && cfg.objective == Objective::kContrastiveDivergence;
}

bool parameters_finite(const EnergyNetImpl& net) {
  for (const torch::Tensor& p : net.parameters())
    if (!torch::isfinite(p).all().item<bool>()) return false;
  return true;
}

torch::optim::AdamOptions& adam_options(torch::optim::Adam& opt) {
  return static_cast<torch::optim::AdamOptions&>(opt.param_groups().at(0).options());
}

void descend(TrainState& s, const torch::Tensor& loss) {
  s.opt.zero_grad();
  if (s.averager) s.averager->begin();
  loss.backward();
  if (s.averager) s.averager->finish();  // every rank now holds the mean gradient
  // The parameters Adam steps (the trainable ones, --freeze-layers), as it holds them.
  if (s.cfg.clip_grad_norm > 0)
    torch::nn::utils::clip_grad_norm_(s.opt.param_groups().front().params(), s.cfg.clip_grad_norm);
  s.opt.step();
}

std::string short_number(double v, int precision) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*g", precision, v);
  return buf;
}

std::string archive_key(std::string name) {
  std::replace(name.begin(), name.end(), '.', '_');
  return name;
}

void write_net_state(torch::serialize::OutputArchive& out, const std::string& key,
                     const EnergyNetImpl& net) {
  torch::serialize::OutputArchive sub;
  for (const auto& [name, t] : net.state()) sub.write(archive_key(name), t.detach().cpu(), true);
  out.write(key, sub);
}

void read_net_state(torch::serialize::InputArchive& in, const std::string& key, EnergyNetImpl& net) {
  torch::serialize::InputArchive sub;
  in.read(key, sub);
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& [name, t] : net.state()) {
    torch::Tensor v;
    sub.read(archive_key(name), v, true);
    tensors.emplace_back(name, v);
  }
  net.load_state(tensors);
}

}  // namespace ebm::train
