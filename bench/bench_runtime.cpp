// Native runtime speed: one Langevin step (forward, gradient with respect to the input, update)
// for a batch of images, reported per image-step. Run: build/bench/bench_runtime
#include <benchmark/benchmark.h>

#include <string>

#include "ebm/kernels.h"
#include "ebm/network.h"
#include "ebm/sampler.h"

namespace {

void BM_LangevinStep(benchmark::State& state, const std::string& preset) {
  // A preset name (random weights), or a shipped model file.
  const std::string dir = EBM_BENCH_MODELS_DIR;
  const bool file = preset.size() > 12 && preset.substr(preset.size() - 12) == ".safetensors";
  // form: 3x3 convolutions of stride 1 and 2 (ebm/kernels.h): 0 the build's default, 1 direct,
  // 2 Winograd (F(2x2, 3x3) for stride 1), 3 Winograd with F(4x4, 3x3) for stride 1.
  ebm::set_conv3x3_form(ebm::Conv3x3Form(state.range(3)));
  // taps: other stride-1 convolutions, and strided ones into small planes, by taps (1, the
  // default) or im2col (0); 2: by taps with the output channels as the GEMMs' rows whatever the
  // batch (ConvTapRows::kChannels; 1 takes the pixels as rows where they waste less).
  ebm::set_conv_taps(state.range(4) != 0);
  ebm::set_conv_tap_rows(state.range(4) == 2 ? ebm::ConvTapRows::kChannels : ebm::ConvTapRows::kAuto);
  // phases: strided convolutions the taps do not take by stride phases where they qualify (1,
  // the default), or im2col (0).
  ebm::set_conv_strided_form(state.range(5) != 0 ? ebm::ConvStridedForm::kAuto
                                                 : ebm::ConvStridedForm::kIm2col);
  // rows: the shifted and phase forms write output rows straight into the image where they fit
  // (1, the default), or compute across the padded rows and copy them out (0).
  ebm::set_conv_row_tiles(state.range(6) != 0);
  ebm::Network net(file ? ebm::load_model(dir + "/" + preset)
                        : ebm::random_model(ebm::load_preset(dir + "/presets/" + preset + ".json").arch, 1));
  const int batch = int(state.range(0)), threads = int(state.range(1));
  // slice: chains per network call (LangevinSampler::set_max_batch, and the network's own
  // slices, Network::set_slice_images): 0 automatic (the default, bounded workspaces), -1 the
  // whole batch at once (as before slicing).
  const int slice = state.range(2) < 0 ? batch : int(state.range(2));
  net.set_slice_images(slice);
  ebm::SamplerParams params;
  params.steps = 1 << 30;
  ebm::LangevinSampler sampler(net, params, 1, threads);
  sampler.set_max_batch(slice);
  sampler.start_uniform(batch);
  sampler.step();  // workspaces are sized on the first step
  for (auto _ : state) sampler.step();
  state.SetItemsProcessed(int64_t(state.iterations()) * batch);
  // Seconds per image-step: the inverse of the image-step rate.
  state.counters["per_image_step"] = benchmark::Counter(
      double(batch), benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
  state.counters["workspace_MiB"] = double(sampler.workspace_bytes()) / double(1 << 20);
  ebm::set_conv3x3_form(ebm::Conv3x3Form::kAuto);
  ebm::set_conv_taps(true);
  ebm::set_conv_tap_rows(ebm::ConvTapRows::kAuto);
  ebm::set_conv_strided_form(ebm::ConvStridedForm::kAuto);
  ebm::set_conv_row_tiles(true);
}

}  // namespace

// Args: batch, threads, slice, form, taps, phases, rows.
BENCHMARK_CAPTURE(BM_LangevinStep, paper, std::string("paper"))
    ->ArgsProduct({{1, 8, 32}, {1}, {0}, {0}, {1}, {1}, {1}})
    ->Args({4, 1, 0, 0, 1, 1, 1})
    ->ArgsProduct({{1, 4}, {1}, {0}, {0}, {2}, {1}, {1}})
    ->Args({32, 1, -1, 0, 1, 1, 1})
    ->Args({8, 1, 0, 0, 0, 1, 1})
    ->ArgsProduct({{8, 32}, {1}, {0}, {0}, {1}, {0}, {1}})
    ->Args({8, 2, 0, 0, 1, 1, 1})
    ->Args({32, 2, 0, 0, 1, 1, 1})
    ->ArgsProduct({{8, 32}, {1}, {0}, {1, 2}, {1}, {1}, {1}})
    ->ArgsProduct({{8, 32}, {1}, {0}, {0}, {1}, {1}, {0}})
    ->ArgNames({"batch", "threads", "slice", "form", "taps", "phases", "rows"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_LangevinStep, book, std::string("book"))
    ->ArgsProduct({{1, 8, 32}, {1}, {0}, {0}, {1}, {1}, {1}})
    ->ArgNames({"batch", "threads", "slice", "form", "taps", "phases", "rows"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
// The shipped bridge model (a U-Net): the automatic slice against the whole batch, its 3x3
// convolutions direct against Winograd's F(2x2, 3x3) and F(4x4, 3x3), its 3x13 bottleneck by taps
// against im2col, the taps with the pixels as rows where they waste less (the default) against
// the channels as rows always (at batch 1, and 4: the native sampler's slice of this model), its
// strided convolutions by stride phases against im2col, and its output rows straight into the
// image against across the padded rows.
BENCHMARK_CAPTURE(BM_LangevinStep, bridges, std::string("bridges.safetensors"))
    ->ArgsProduct({{32}, {1}, {0, -1}, {0}, {1}, {1}, {1}})
    ->ArgsProduct({{32}, {1}, {0}, {1, 2, 3}, {1}, {1}, {1}})
    ->ArgsProduct({{8, 32}, {1}, {0}, {0}, {0, 1}, {1}, {1}})
    ->ArgsProduct({{1, 4}, {1}, {0}, {0}, {1, 2}, {1}, {1}})
    ->ArgsProduct({{8, 32}, {1}, {0}, {0}, {1}, {0}, {1}})
    ->ArgsProduct({{8, 32}, {1}, {0}, {0}, {1}, {1}, {0}})
    ->ArgNames({"batch", "threads", "slice", "form", "taps", "phases", "rows"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

BENCHMARK_MAIN();
