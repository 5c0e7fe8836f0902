// The native side of the peer benchmark (bench/run.sh): energies and input gradients of one model
// file from this runtime and from LibTorch, checked against each other before anything is timed.
//
//   bench_peers [--model M.safetensors] [--sigma S] [--verify-input X.f32 --verify-out PREFIX]
//               [--tolerance 1e-4] [Google Benchmark flags]
//
// Without --model, a random-weights paper model (seed 7). --verify-input: images [n, C, H, W]
// (raw little-endian floats) for the agreement check instead of 5 seeded uniform ones;
// --verify-out writes PREFIX.runtime.f32 and PREFIX.torch.f32 (n energies, then n x C x H x W
// gradients) for the caller's own comparisons. LibTorch runs the folded network (batch norm in
// the convolutions), as the runtime does; the weights are detached, so its backward pass computes
// input gradients only. A noise-conditional model (the shipped U-Net) is timed at one noise level,
// --sigma (default 0.5): E(x, sigma) and dE/dx, as one step of its sampler needs them.
//
// Benchmarks (args batch, threads), ms per image-step in the counter per_image_step:
//   BM_RuntimeEnergyGrad  Network::energy_and_input_grad, the batch split over `threads` threads
//                         (one workspace each; one image is never split)
//   BM_TorchEnergyGrad    forward, then autograd dE/dx (torch::set_num_threads(threads))
//   BM_RuntimeLangevin    a whole Langevin step of the runtime's sampler (noise, gradient, update)
//   BM_MultiplyAddCeiling (no args) the runtime's vectors doing nothing but multiply-adds, one
//                         thread: FLOP/s in the counter flops, the arithmetic's ceiling
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "ebm/error.h"
#include "ebm/kernels.h"
#include "ebm/model.h"
#include "ebm/network.h"
#include "ebm/sampler.h"
#include "ebm/thread_pool.h"
#include "langevin.h"
#include "net.h"

namespace {

using ebm::train::EnergyNet;

struct Peers {
  ebm::Model folded;
  std::unique_ptr<ebm::Network> runtime;
  EnergyNet torch_net{nullptr};
  ebm::train::NetWeights torch_weights;
  float sigma = 0;  // > 0 for a noise-conditional model
};
Peers* g_peers = nullptr;

std::vector<float> uniform_images(int n, int64_t size, uint64_t seed) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const torch::Tensor x = torch::rand({n, size}, gen, torch::kFloat32) * 2.0 - 1.0;
  return std::vector<float>(x.data_ptr<float>(), x.data_ptr<float>() + n * size);
}

torch::Tensor images_tensor(const std::vector<float>& x, int n) {
  const ebm::Shape s = g_peers->torch_net->image_shape();
  return torch::from_blob(const_cast<float*>(x.data()), {n, s.c, s.h, s.w}, torch::kFloat32);
}

// Energies [n] and gradients [n, C, H, W] from LibTorch.
void torch_energy_grad(const std::vector<float>& x, int n, torch::Tensor* e, torch::Tensor* g) {
  const torch::Tensor sigma =
      g_peers->sigma > 0 ? torch::full({n}, double(g_peers->sigma)) : torch::Tensor();
  *g = ebm::train::energy_input_grad(*g_peers->torch_net, g_peers->torch_weights,
                                     images_tensor(x, n), e, sigma);
}

// Largest |a - b| over the largest |b| (trainer/lib/export.h's measure).
double max_relative_error(const float* a, const float* b, size_t n) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < n; ++i) {
    diff = std::max(diff, double(std::abs(a[i] - b[i])));
    scale = std::max(scale, double(std::abs(b[i])));
  }
  return scale > 0 ? diff / scale : diff;
}

void write_floats(const std::string& path, const float* e, size_t ne, const float* g, size_t ng) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(e), std::streamsize(ne * sizeof(float)));
  out.write(reinterpret_cast<const char*>(g), std::streamsize(ng * sizeof(float)));
  if (!out) throw ebm::Error("cannot write " + path);
}

// The runtime's energies and gradients for a batch split over a pool, one workspace per part.
class RuntimeSplit {
 public:
  RuntimeSplit(const ebm::Network& net, int threads, int batch)
      : net_(net), pool_(threads), ws_(size_t(threads)), batch_(batch) {
    for (int t = 0; t < threads; ++t) net.reserve(ws_[size_t(t)], part(t).second);
  }
  // Images [first, first + count) of part t.
  std::pair<int, int> part(int t) const {
    const int parts = int(ws_.size());
    const int first = batch_ * t / parts, end = batch_ * (t + 1) / parts;
    return {first, end - first};
  }
  void run(const float* x, float* e, float* g) {
    const int64_t d = net_.input_size();
    pool_.run(int(ws_.size()), [&](int t) {
      const auto [first, count] = part(t);
      if (count > 0)
        net_.energy_and_input_grad(ws_[size_t(t)], x + first * d, count, e + first, g + first * d,
                                   g_peers->sigma);
    });
  }

 private:
  const ebm::Network& net_;
  ebm::ThreadPool pool_;
  std::vector<ebm::Network::Workspace> ws_;
  int batch_;
};

void set_per_image_step(benchmark::State& state, int batch) {
  state.counters["per_image_step"] = benchmark::Counter(
      double(batch), benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

void BM_RuntimeEnergyGrad(benchmark::State& state) {
  const int batch = int(state.range(0)), threads = int(state.range(1));
  const ebm::Network& net = *g_peers->runtime;
  const std::vector<float> x = uniform_images(batch, net.input_size(), 1);
  std::vector<float> e(static_cast<size_t>(batch)), g(x.size());
  RuntimeSplit split(net, std::min(threads, batch), batch);
  split.run(x.data(), e.data(), g.data());
  for (auto _ : state) {
    split.run(x.data(), e.data(), g.data());
    benchmark::DoNotOptimize(g.data());
  }
  set_per_image_step(state, batch);
}

void BM_TorchEnergyGrad(benchmark::State& state) {
  const int batch = int(state.range(0)), threads = int(state.range(1));
  torch::set_num_threads(threads);
  const std::vector<float> x = uniform_images(batch, g_peers->runtime->input_size(), 1);
  torch::Tensor e, g;
  torch_energy_grad(x, batch, &e, &g);
  for (auto _ : state) {
    torch_energy_grad(x, batch, &e, &g);
    benchmark::DoNotOptimize(g.data_ptr<float>());
  }
  set_per_image_step(state, batch);
}

void BM_RuntimeLangevin(benchmark::State& state) {
  const int batch = int(state.range(0)), threads = int(state.range(1));
  ebm::SamplerParams params = g_peers->runtime->sampler();
  params.steps = 1 << 30;
  ebm::LangevinSampler sampler(*g_peers->runtime, params, 1, threads);
  sampler.start_uniform(batch);
  sampler.step();  // workspaces are sized on the first step
  for (auto _ : state) sampler.step();
  set_per_image_step(state, batch);
}

// The ceiling of the runtime's arithmetic on one thread (ebm::multiply_add_probe: independent
// multiply-add chains in every lane of the GEMM's vectors), as the `flops` counter; the probe's
// sum is checked, so a probe that skipped work fails instead of flattering the ceiling.
void BM_MultiplyAddCeiling(benchmark::State& state) {
  constexpr int kRounds = 1 << 20;
  const double floats = ebm::multiply_add_probe_floats();
  for (auto _ : state) {
    if (ebm::multiply_add_probe(kRounds, 1.0f, 1.0f) != kRounds * floats) {
      state.SkipWithError("the multiply-add probe's sum is wrong: it skipped work");
      break;
    }
  }
  state.counters["flops"] =
      benchmark::Counter(2.0 * kRounds * floats, benchmark::Counter::kIsIterationInvariantRate);
}

// Runtime and LibTorch on the same images; false (with the errors printed) if they disagree.
bool verify(const std::vector<float>& x, int n, double tolerance, const std::string& out_prefix) {
  const int64_t d = g_peers->runtime->input_size();
  std::vector<float> e(static_cast<size_t>(n)), g(x.size());
  g_peers->runtime->energy_and_input_grad(x.data(), n, e.data(), g.data(), g_peers->sigma);
  torch::Tensor te, tg;
  torch_energy_grad(x, n, &te, &tg);
  te = te.contiguous();
  tg = tg.contiguous();
  const double err_e = max_relative_error(te.data_ptr<float>(), e.data(), size_t(n));
  const double err_g = max_relative_error(tg.data_ptr<float>(), g.data(), size_t(n * d));
  std::printf(
      "verify: LibTorch against the runtime on %d images%s: energies max relative error %.3g, "
      "gradients %.3g (tolerance %.3g)\n",
      n, g_peers->sigma > 0 ? (" at sigma " + std::to_string(g_peers->sigma)).c_str() : "",
      err_e, err_g, tolerance);
  std::fflush(stdout);
  if (!out_prefix.empty()) {
    write_floats(out_prefix + ".runtime.f32", e.data(), e.size(), g.data(), g.size());
    write_floats(out_prefix + ".torch.f32", te.data_ptr<float>(), size_t(n), tg.data_ptr<float>(),
                 size_t(n * d));
  }
  return err_e <= tolerance && err_g <= tolerance;
}

std::vector<float> read_floats(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw ebm::Error("cannot read " + path);
  const std::streamsize bytes = in.tellg();
  if (bytes <= 0 || bytes % 4 != 0) throw ebm::Error(path + " is not a whole number of floats");
  std::vector<float> v(size_t(bytes / 4));
  in.seekg(0);
  in.read(reinterpret_cast<char*>(v.data()), bytes);
  return v;
}

}  // namespace

BENCHMARK(BM_RuntimeEnergyGrad)
    ->ArgsProduct({{1, 8, 32}, {1, 2}})
    ->ArgNames({"batch", "threads"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_TorchEnergyGrad)
    ->ArgsProduct({{1, 8, 32}, {1, 2}})
    ->ArgNames({"batch", "threads"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_RuntimeLangevin)
    ->ArgsProduct({{1, 8, 32}, {1, 2}})
    ->ArgNames({"batch", "threads"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_MultiplyAddCeiling)->Unit(benchmark::kMillisecond)->UseRealTime();

int main(int argc, char** argv) {
  std::string model_path, verify_input, verify_out;
  double tolerance = 1e-4;
  float sigma = 0.5f;
  std::vector<char*> rest{argv[0]};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << "bench_peers: " << a << " needs a value\n";
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--model") {
      model_path = value();
    } else if (a == "--verify-input") {
      verify_input = value();
    } else if (a == "--verify-out") {
      verify_out = value();
    } else if (a == "--sigma") {
      sigma = float(std::atof(value().c_str()));
      if (!(sigma > 0)) {
        std::cerr << "bench_peers: --sigma needs a noise level > 0\n";
        return 2;
      }
    } else if (a == "--tolerance") {
      tolerance = std::atof(value().c_str());
    } else if (a == "--help" || a == "-h") {
      std::cout << "usage: bench_peers [--model M.safetensors] [--sigma 0.5] [--verify-input X.f32] "
                   "[--verify-out PREFIX] [--tolerance 1e-4] [--benchmark_* flags]\n"
                   "  --sigma S  the noise level of a noise-conditional model's energy (default 0.5)\n";
      return 0;
    } else {
      rest.push_back(argv[i]);
    }
  }
  int rest_argc = int(rest.size());
  benchmark::Initialize(&rest_argc, rest.data());
  if (benchmark::ReportUnrecognizedArguments(rest_argc, rest.data())) return 2;
  try {
    Peers peers;
    const ebm::Model model = model_path.empty()
                                 ? ebm::random_model(ebm::load_preset("paper").arch, 7)
                                 : ebm::load_model(model_path);
    peers.folded = ebm::fold_normalization(model);
    peers.runtime = std::make_unique<ebm::Network>(peers.folded);
    peers.torch_net = EnergyNet(peers.folded.arch, 0, false, peers.folded.energy);
    peers.torch_net->load_model(peers.folded);
    {
      torch::NoGradGuard no_grad;
      peers.torch_weights = peers.torch_net->weights();
      for (ebm::train::LayerWeights& l : peers.torch_weights)
        for (torch::Tensor* t : {&l.weight, &l.bias, &l.mean, &l.var})
          if (t->defined()) *t = t->detach();
    }
    if (peers.runtime->noise_conditional()) peers.sigma = sigma;
    g_peers = &peers;
    const int64_t d = peers.runtime->input_size();
    std::vector<float> x =
        verify_input.empty() ? uniform_images(5, d, 99) : read_floats(verify_input);
    if (int64_t(x.size()) % d != 0)
      throw ebm::Error(verify_input + " is not a whole number of images");
    if (!verify(x, int(int64_t(x.size()) / d), tolerance, verify_out)) {
      std::cerr << "bench_peers: LibTorch and the runtime disagree; nothing timed\n";
      return 1;
    }
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    g_peers = nullptr;
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "bench_peers: " << e.what() << "\n";
    return 1;
  }
}
