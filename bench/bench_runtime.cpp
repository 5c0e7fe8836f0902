// Native runtime speed: one Langevin step (forward, gradient with respect to the input, update)
// for a batch of images, reported per image-step. Run: build/bench/bench_runtime
#include <benchmark/benchmark.h>

#include <string>

#include "ebm/network.h"
#include "ebm/sampler.h"

namespace {

void BM_LangevinStep(benchmark::State& state, const std::string& preset) {
  const ebm::Preset p = ebm::load_preset(std::string(EBM_BENCH_MODELS_DIR) + "/presets/" + preset + ".json");
  ebm::Network net(ebm::random_model(p.arch, 1));
  const int batch = int(state.range(0)), threads = int(state.range(1));
  ebm::SamplerParams params;
  params.steps = 1 << 30;
  ebm::LangevinSampler sampler(net, params, 1, threads);
  sampler.start_uniform(batch);
  sampler.step();  // workspaces are sized on the first step
  for (auto _ : state) sampler.step();
  state.SetItemsProcessed(int64_t(state.iterations()) * batch);
  // Seconds per image-step: the inverse of the image-step rate.
  state.counters["per_image_step"] = benchmark::Counter(
      double(batch), benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

}  // namespace

// Args: batch, threads.
BENCHMARK_CAPTURE(BM_LangevinStep, paper, std::string("paper"))
    ->ArgsProduct({{1, 8, 32}, {1}})
    ->Args({8, 2})
    ->Args({32, 2})
    ->ArgNames({"batch", "threads"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_LangevinStep, book, std::string("book"))
    ->ArgsProduct({{1, 8, 32}, {1}})
    ->ArgNames({"batch", "threads"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

BENCHMARK_MAIN();
