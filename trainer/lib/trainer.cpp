#include "trainer.h"

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <optional>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "ebm/error.h"

namespace ebm::train {

EnergyForm config_energy_form(const TrainConfig& cfg) {
  const nlohmann::json& a = cfg.architecture;
  return a.is_object() && a.contains("energy") ? parse_energy_form(a.at("energy")) : EnergyForm{};
}

Architecture config_architecture(const TrainConfig& cfg) {
  const nlohmann::json& a = cfg.architecture;
  if (!a.is_object() || !a.contains("input") || !a.contains("layers"))
    throw Error("run configuration has no architecture");
  return resolve_architecture(layers_input(parse_input_shape(a.at("input")), config_energy_form(cfg)),
                              a.at("layers"));
}

nlohmann::json architecture_json(const Architecture& arch, const EnergyForm& energy) {
  nlohmann::json j = {{"input", input_shape_json(image_shape(arch, energy))},
                      {"layers", arch.layers_json()}};
  if (noise_conditional(energy)) j["energy"] = energy_form_json(energy);
  return j;
}

torch::Device training_device(const TrainConfig& cfg) {
  const std::string& name = cfg.device;
  std::optional<torch::Device> d;
  try {
    d.emplace(name);
  } catch (const c10::Error&) {
  }
  if (!d || !(d->is_cpu() || d->is_cuda()))
    throw Error("--device '" + name + "' is not a device this trainer knows: give cpu, cuda or "
                "cuda:N");
  if (d->is_cpu()) return *d;
  if (draws_per_rank(cfg))
    throw Error("--device " + name + " trains dsm and classify; contrastive divergence runs its "
                "Langevin chains in the runtime on the CPU (--device cpu)");
  if (!torch::cuda::is_available())
    throw Error("--device " + name + ": this LibTorch sees no CUDA device (Debian's "
                "libtorch-dev is built for the CPU alone); build ebm-train against a CUDA "
                "LibTorch, e.g. cmake -DCMAKE_PREFIX_PATH=$(python3 -c 'import torch; "
                "print(torch.utils.cmake_prefix_path)'), or train with --device cpu");
  const int64_t count = int64_t(torch::cuda::device_count());
  if (d->has_index() && d->index() >= count)
    throw Error("--device " + name + ": there " + (count == 1 ? "is " : "are ") +
                std::to_string(count) + " CUDA device" + (count == 1 ? "" : "s") +
                " (cuda:0 to cuda:" + std::to_string(count - 1) + ")");
  return *d;
}

bool keep_freed_memory() {
#if defined(__GLIBC__)
  static const bool kept = [] {
    const char* env = std::getenv("EBM_KEEP_FREED_MEMORY");
    if (env && std::string(env) == "0") return false;
    // Fixed thresholds also stop glibc from adapting them back down.
    return mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1 &&
           mallopt(M_TRIM_THRESHOLD, std::numeric_limits<int>::max()) == 1;
  }();
  return kept;
#else
  return false;
#endif
}

Trainer::Trainer(const TrainConfig& cfg, std::vector<std::string> labels, Collective* dist)
    : cfg_(cfg),
      dist_(dist),
      shard_{dist ? dist->rank() : 0, dist ? dist->size() : 1},
      labels_(std::move(labels)),
      device_(training_device(cfg)),
      arch_(config_architecture(cfg)),
      net_(arch_, cfg.seed, cfg.spectral_norm, config_energy_form(cfg)),
      gen_(at::make_generator<at::CPUGeneratorImpl>(rank_seed(cfg.seed ^ 0x9e3779b97f4a7c15ull))) {
  keep_freed_memory();
  if (cfg_.task == Task::kClassify && int(labels_.size()) != arch_.output().c)
    throw Error("classifier outputs " + std::to_string(arch_.output().c) + " logits but has " +
                std::to_string(labels_.size()) + " labels");
  if (cfg_.task == Task::kEnergy && arch_.output().c != 1)
    throw Error("an energy model must output one number, this architecture outputs " +
                std::to_string(arch_.output().c));
  if (dist_ && !device_.is_cpu())
    throw Error("data parallelism (WORLD_SIZE > 1) trains on the CPU: its gradients travel "
                "through Gloo's CPU collectives; drop --device " + cfg_.device);
  net_->to(device_);  // before Adam and the objective take the parameters
  if (cfg_.freeze_layers < 0 || size_t(cfg_.freeze_layers) >= arch_.layers.size())
    throw Error("--freeze-layers " + std::to_string(cfg_.freeze_layers) + ": the network has " +
                std::to_string(arch_.layers.size()) + " layers, so at most " +
                std::to_string(arch_.layers.size() - 1) + " can be kept as they are");
  if (cfg_.freeze_layers > 0 && cfg_.spectral_norm)
    throw Error("--freeze-layers with --spectral-norm: the normalised weights of the kept layers "
                "would still move with each power iteration; train without --spectral-norm");
  for (int i = 0; i < cfg_.freeze_layers; ++i)
    if (arch_.layers[size_t(i)].kind == LayerKind::kBatchNorm)
      throw Error("--freeze-layers " + std::to_string(cfg_.freeze_layers) + ": layer " +
                  std::to_string(i) + " is a batch norm, whose statistics would keep moving "
                  "while its weights are kept; keep fewer layers (at most " + std::to_string(i) +
                  ")");
  net_->freeze_layers(cfg_.freeze_layers);
  const std::vector<torch::Tensor> trained = net_->trainable_parameters();
  if (trained.empty())
    throw Error("--freeze-layers " + std::to_string(cfg_.freeze_layers) + " leaves no weights "
                "to train: the later layers have none");
  if (cfg_.stroke_weight > 0 &&
      (cfg_.task == Task::kClassify || cfg_.objective != Objective::kDenoisingScoreMatching))
    throw Error("--stroke-weight weights the errors of denoising score matching; this run is " +
                std::string(cfg_.task == Task::kClassify ? "classify"
                                                         : objective_name(cfg_.objective)) +
                ": drop --stroke-weight or train with --objective dsm");
  if ((cfg_.kl_weight > 0 || cfg_.augment > 0) &&
      (cfg_.task == Task::kClassify || cfg_.objective != Objective::kContrastiveDivergence))
    throw Error(std::string(cfg_.kl_weight > 0 ? "--kl-weight" : "--augment") +
                " belongs to contrastive divergence's Langevin chains; this run is " +
                std::string(cfg_.task == Task::kClassify ? "classify"
                                                         : objective_name(cfg_.objective)) +
                ": drop it or train with --objective cd");
  if (cfg_.kl_weight > 0 && cfg_.sampler.form != SamplerForm::kPaper &&
      cfg_.sampler.form != SamplerForm::kTextbook)
    throw Error(std::string("--kl-weight differentiates the last step of the paper or textbook "
                            "Langevin form; this run's is ") +
                sampler_form_name(cfg_.sampler.form) + ": use --form paper or textbook");
  if (cfg_.batch < 1) throw Error("batch size must be at least 1");
  if (cfg_.batch % shard_.size != 0)
    throw Error("--batch " + std::to_string(cfg_.batch) + " does not split evenly over " +
                std::to_string(shard_.size) + " processes (each takes batch / WORLD_SIZE " +
                "images); choose a multiple of " + std::to_string(shard_.size));
  opt_ = std::make_unique<torch::optim::Adam>(
      trained,
      torch::optim::AdamOptions(cfg_.lr).betas({cfg_.beta1, cfg_.beta2}).eps(cfg_.adam_eps));
  objective_ = make_objective(cfg_, net_, gen_, shard_);
  if (dist_) averager_ = std::make_unique<GradientAverager>(*dist_, trained);
}

uint64_t Trainer::rank_seed(uint64_t seed) const {
  // The CPU generator keeps 32 bits of its seed: the rank goes into the low ones.
  if (shard_.rank == 0 || !draws_per_rank(cfg_)) return seed;
  return seed ^ (0x9e3779b97f4a7c15ull * uint64_t(shard_.rank));
}

ModelKind Trainer::kind() const {
  return cfg_.task == Task::kClassify ? ModelKind::kClassifier : ModelKind::kEnergy;
}

void Trainer::set_data_mean(const torch::Tensor& images) {
  if (!net_->energy_form().denoiser) return;
  net_->set_mean(images.mean(0));
  objective_->weights_set(net_);
}

void Trainer::init_from(const Model& m) {
  net_->embed_model(m);
  objective_->weights_set(net_);
}

const ReplayBuffer& Trainer::buffer() const {
  const ReplayBuffer* b = objective_->buffer();
  if (!b)
    throw Error(std::string("this run has no replay buffer (objective ") +
                (cfg_.task == Task::kClassify ? "classify" : objective_name(cfg_.objective)) + ")");
  return *b;
}

double Trainer::lr() const {
  return adam_options(*opt_).lr();
}
void Trainer::set_lr(double lr) {
  adam_options(*opt_).lr(lr);
}
void Trainer::reseed(uint64_t seed) {
  gen_.set_current_seed(rank_seed(seed));
}

namespace {

std::vector<torch::Tensor> state_tensors(const EnergyNetImpl& net) {
  std::vector<torch::Tensor> out;
  for (const auto& [name, t] : net.state()) out.push_back(t);
  return out;
}

}  // namespace

void Trainer::broadcast_weights() {
  if (!dist_) return;
  torch::NoGradGuard no_grad;
  dist_->broadcast(state_tensors(*net_), "sending rank 0's weights");
  if (&objective_->model_net(net_) != &net_)
    dist_->broadcast(state_tensors(*objective_->model_net(net_)), "sending rank 0's average");
}

uint64_t Trainer::weights_fingerprint() const {
  uint64_t h = fingerprint(state_tensors(*net_));
  if (&objective_->model_net(net_) != &net_)
    h = fingerprint(state_tensors(*objective_->model_net(net_)), h);
  return h;
}

std::optional<StepMetrics> Trainer::step(const torch::Tensor& real, const torch::Tensor& labels,
                                         const std::atomic<bool>* stop) {
  const auto t0 = std::chrono::steady_clock::now();
  std::optional<StepMetrics> m;
  if (!parameters_finite(*net_)) {
    // Poisoned weights (the runtime refuses them, LibTorch would spread NaN): a diverged step.
    m.emplace();
    m->healthy = false;
  } else {
    TrainState s{cfg_, net_, *opt_, gen_, counters_, shard_, averager_.get()};
    // Energy objectives take no labels (an undefined tensor).
    m = objective_->step(s, real.to(device_), labels.defined() ? labels.to(device_) : labels, stop);
    if (!m) return std::nullopt;
  }
  m->lr = lr();
  m->seconds = seconds_since(t0);
  m->rate = m->work / std::max(m->seconds, 1e-9);
  ++counters_.step;
  ++counters_.step_in_epoch;
  return m;
}

Figures Trainer::validate(const Dataset& val, uint64_t noise_seed) const {
  const int64_t n = val.size();
  if (n == 0) return {};
  const Shape s = net_->image_shape();
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(noise_seed);
  const torch::Tensor images =
      torch::from_blob(const_cast<float*>(val.images.data()), {n, s.c, s.h, s.w}, torch::kFloat32)
          .to(device_);
  return objective_->validate(cfg_, *net_, val, images, gen);
}

}  // namespace ebm::train
