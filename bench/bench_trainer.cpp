// Trainer speed on the CPU: the Langevin loop of a training batch (LibTorch autograd with respect
// to the input) and a whole training step (Langevin, loss on real + fake, backward, Adam), reported
// as image-steps per second (batch x Langevin steps / time). The runtime's own Langevin step on
// the same batch is measured beside them. A denoising score matching step by phase (BM_Dsm).
// Run: build/release/bench/bench_trainer
#include <benchmark/benchmark.h>

#include <string>

#include "ebm/network.h"
#include "ebm/sampler.h"
#include "langevin.h"
#include "net.h"
#include "trainer.h"

namespace {

using ebm::train::EnergyNet;

constexpr int kLangevinSteps = 5;  // per benchmark iteration (a training batch runs 60)

void set_rate(benchmark::State& state, double image_steps_per_iteration) {
  state.counters["image_steps_per_s"] =
      benchmark::Counter(image_steps_per_iteration, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_TorchLangevin(benchmark::State& state, const std::string& preset) {
  const int batch = int(state.range(0)), threads = int(state.range(1));
  torch::set_num_threads(threads);
  const ebm::Architecture arch = ebm::load_preset(preset).arch;
  const EnergyNet net(arch, 1);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(1);
  const torch::Tensor x =
      torch::rand({batch, arch.input.c, arch.input.h, arch.input.w}, gen) * 2 - 1;
  ebm::SamplerParams p;
  for (auto _ : state)
    benchmark::DoNotOptimize(ebm::train::langevin(*net, x, p, kLangevinSteps, gen));
  set_rate(state, double(batch) * kLangevinSteps);
}

void BM_RuntimeLangevin(benchmark::State& state, const std::string& preset) {
  const int batch = int(state.range(0)), threads = int(state.range(1));
  const ebm::Architecture arch = ebm::load_preset(preset).arch;
  const EnergyNet tnet(arch, 1);
  const ebm::Network net(tnet->to_model(ebm::ModelKind::kEnergy));
  ebm::SamplerParams p;
  p.steps = 1 << 30;
  ebm::LangevinSampler sampler(net, p, 1, threads);
  sampler.start_uniform(batch);
  sampler.step();
  for (auto _ : state)
    for (int k = 0; k < kLangevinSteps; ++k) sampler.step();
  set_rate(state, double(batch) * kLangevinSteps);
}

// One training step with the paper's 60 Langevin steps, Langevin on the given backend.
void BM_TrainStep(benchmark::State& state, const std::string& preset, const std::string& backend) {
  const int batch = int(state.range(0)), threads = int(state.range(1));
  torch::set_num_threads(threads);
  ebm::train::TrainConfig cfg;
  cfg.preset = preset;
  cfg.batch = batch;
  cfg.langevin_backend = backend;
  cfg.architecture = ebm::train::architecture_json(ebm::load_preset(preset).arch);
  ebm::train::Trainer tr(cfg);
  const ebm::Shape s = ebm::load_preset(preset).arch.input;
  const torch::Tensor real = torch::rand({batch, s.c, s.h, s.w}) * 2 - 1;
  for (auto _ : state) benchmark::DoNotOptimize(tr.step(real, {}));
  set_rate(state, double(batch) * cfg.langevin_steps);
}

// Denoising score matching on a denoiser preset (unet), by phase, images per second: the energy
// alone (no graph), the energy and dE/dx with the graph kept for the second derivative (what the
// loss needs), and the whole training step (that, the loss, the backward pass through dE/dx to
// the weights, Adam and the moving average). The differences are where a step's time goes.
enum class DsmPhase { kEnergy, kInputGrad, kStep };

void BM_Dsm(benchmark::State& state, const std::string& preset, DsmPhase phase) {
  const int batch = int(state.range(0)), threads = int(state.range(1));
  torch::set_num_threads(threads);
  const ebm::Preset pr = ebm::load_preset(preset);
  ebm::train::TrainConfig cfg;
  cfg.preset = preset;
  cfg.batch = batch;
  cfg.objective = ebm::train::Objective::kDenoisingScoreMatching;
  cfg.architecture = ebm::train::architecture_json(pr.arch, pr.energy);
  ebm::train::Trainer tr(cfg);
  const ebm::Shape s = tr.net()->image_shape();
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(1);
  const torch::Tensor x = torch::rand({batch, s.c, s.h, s.w}, gen) * 2 - 1;
  const torch::Tensor sigma = (torch::randn({batch}, gen) * 1.4 - 1).exp();
  for (auto _ : state) {
    if (phase == DsmPhase::kStep) {
      benchmark::DoNotOptimize(tr.step(x, {}));
    } else if (phase == DsmPhase::kEnergy) {
      torch::NoGradGuard no_grad;
      benchmark::DoNotOptimize(tr.net()->denoiser_energy(tr.net()->weights(), x, sigma));
    } else {
      const torch::Tensor xi = x.detach().requires_grad_(true);
      const torch::Tensor e = tr.net()->denoiser_energy(tr.net()->weights(), xi, sigma);
      benchmark::DoNotOptimize(torch::autograd::grad({e.sum()}, {xi}, {}, true, true)[0]);
    }
  }
  state.counters["images_per_s"] =
      benchmark::Counter(double(batch), benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

#define EBM_DSM_BENCH(preset, name, phase)                              \
  BENCHMARK_CAPTURE(BM_Dsm, name##_##phase, preset, DsmPhase::k##phase) \
      ->Args({64, 2})                                                   \
      ->Args({64, 1})                                                   \
      ->ArgNames({"batch", "threads"})                                  \
      ->Unit(benchmark::kMillisecond)                                   \
      ->UseRealTime()

EBM_DSM_BENCH("unet", unet, Energy);
EBM_DSM_BENCH("unet", unet, InputGrad);
EBM_DSM_BENCH("unet", unet, Step);
// The presets of scripts/train-bridges.sh's stages.
EBM_DSM_BENCH("unet-global", unet_global, Step);
EBM_DSM_BENCH("unet-wide", unet_wide, Step);
EBM_DSM_BENCH("unet-wide-fine", unet_wide_fine, Step);

// Args: batch, threads.
#define EBM_LANGEVIN_BENCH(fn, preset)   \
  BENCHMARK_CAPTURE(fn, preset, #preset) \
      ->Args({128, 2})                   \
      ->Args({128, 1})                   \
      ->ArgNames({"batch", "threads"})   \
      ->Unit(benchmark::kMillisecond)    \
      ->UseRealTime()

EBM_LANGEVIN_BENCH(BM_TorchLangevin, paper);
EBM_LANGEVIN_BENCH(BM_TorchLangevin, book);
EBM_LANGEVIN_BENCH(BM_TorchLangevin, compact);
EBM_LANGEVIN_BENCH(BM_RuntimeLangevin, paper);
EBM_LANGEVIN_BENCH(BM_RuntimeLangevin, book);
EBM_LANGEVIN_BENCH(BM_RuntimeLangevin, compact);

#define EBM_STEP_BENCH(preset, backend)                                  \
  BENCHMARK_CAPTURE(BM_TrainStep, preset##_##backend, #preset, #backend) \
      ->Args({128, 2})                                                   \
      ->ArgNames({"batch", "threads"})                                   \
      ->Iterations(2)                                                    \
      ->Unit(benchmark::kSecond)                                         \
      ->UseRealTime()

EBM_STEP_BENCH(paper, runtime);
EBM_STEP_BENCH(paper, torch);
EBM_STEP_BENCH(book, runtime);
EBM_STEP_BENCH(book, torch);
EBM_STEP_BENCH(compact, runtime);
EBM_STEP_BENCH(compact, torch);

BENCHMARK_MAIN();
