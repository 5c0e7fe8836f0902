// The key test: LibTorch (the trainer) and the runtime (on the exported file) compute the same
// energies, input gradients and classifier logits for the same weights.
//
// Error measure: energies and logits, max |a - b| / max |b| over the batch; input gradients, the
// same per image (max over pixels of |a - b| over max |b| of that image), worst image reported.
#include <gtest/gtest.h>

#include <cmath>

#include "ebm/architecture.h"
#include "ebm/half.h"
#include "ebm/model.h"
#include "ebm/network.h"
#include "export.h"
#include "langevin.h"
#include "net.h"
#include "trainer_test_util.h"

namespace ebm::train {
namespace {

constexpr int kBatch = 6;

struct Outputs {
  torch::Tensor out, grad;  // [n, outputs], [n, C, H, W] (energy models)
};

Outputs torch_outputs(const EnergyNetImpl& net, const torch::Tensor& x, bool energy) {
  Outputs o;
  if (energy) {
    torch::Tensor e;
    o.grad = energy_input_grad(net, net.weights(), x, &e);
    o.out = e.unsqueeze(1);
  } else {
    torch::NoGradGuard no_grad;
    o.out = net.forward(x);
  }
  return o;
}

Outputs runtime_outputs(const std::string& path, const torch::Tensor& x, bool energy) {
  Network rt = Network::from_file(path);
  const int n = int(x.size(0));
  Outputs o;
  torch::Tensor xc = x.contiguous();
  if (energy) {
    o.out = torch::empty({n, 1});
    o.grad = torch::empty_like(xc);
    rt.energy_and_input_grad(xc.data_ptr<float>(), n, o.out.data_ptr<float>(),
                             o.grad.data_ptr<float>());
  } else {
    o.out = torch::empty({n, int64_t(rt.outputs())});
    rt.logits(xc.data_ptr<float>(), n, o.out.data_ptr<float>());
  }
  return o;
}

double worst_image_error(const torch::Tensor& a, const torch::Tensor& b) {
  double worst = 0;
  for (int64_t i = 0; i < a.size(0); ++i) worst = std::max(worst, max_relative_error(a[i], b[i]));
  return worst;
}

torch::Tensor random_images(const Shape& s, uint64_t seed) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return torch::rand({kBatch, s.c, s.h, s.w}, gen, torch::kFloat32) * 2.0 - 1.0;
}

// Exports `net` exactly as ebm-export does (effective weights, batch norm folded) to a file.
std::string export_file(const EnergyNetImpl& net, ModelKind kind, DType dtype,
                        const std::string& name, const std::vector<std::string>& labels = {}) {
  const std::string path = test::scratch_dir("parity_" + name) + "/model.safetensors";
  save_model(path, fold_normalization(net.to_model(kind, labels)), dtype);
  return path;
}

struct Errors {
  double out = 0, grad = 0;
};

Errors compare(const EnergyNetImpl& net, const std::string& file, bool energy, uint64_t seed) {
  const torch::Tensor x = random_images(net.architecture().input, seed);
  const Outputs t = torch_outputs(net, x, energy), r = runtime_outputs(file, x, energy);
  Errors e;
  e.out = max_relative_error(r.out, t.out);
  if (energy) e.grad = worst_image_error(r.grad, t.grad);
  return e;
}

// A network holding the weights of a random runtime model: random biases, and batch norm with
// running means around 0 and variances in [0.5, 1.5] (random_model), so folding has work to do.
EnergyNet random_net(const Architecture& arch, uint64_t seed, ModelKind kind = ModelKind::kEnergy) {
  EnergyNet net(arch, seed);
  net->load_model(random_model(arch, seed, kind));
  return net;
}

class PresetParity : public ::testing::TestWithParam<std::string> {};

TEST_P(PresetParity, RuntimeOnTheExportedF32FileMatchesLibTorchEnergiesAndInputGradients) {
  const Architecture arch = load_preset(GetParam()).arch;
  for (uint64_t seed : {1u, 2u}) {
    const EnergyNet net = random_net(arch, seed);
    const Errors e = compare(*net, export_file(*net, ModelKind::kEnergy, DType::kF32, GetParam()),
                             true, seed + 10);
    EXPECT_LE(e.out, 1e-4) << GetParam() << " seed " << seed << ": energies";
    EXPECT_LE(e.grad, 1e-4) << GetParam() << " seed " << seed << ": input gradients";
  }
}

TEST_P(PresetParity, KerasInitialisedNetworkMatchesToo) {
  // The weights a run starts from (Glorot uniform, zero biases, identity batch norm).
  const EnergyNet net(load_preset(GetParam()).arch, 5);
  const Errors e = compare(
      *net, export_file(*net, ModelKind::kEnergy, DType::kF32, GetParam() + "_init"), true, 3);
  EXPECT_LE(e.out, 1e-4);
  EXPECT_LE(e.grad, 1e-4);
}

TEST_P(PresetParity, ClassifierLogitsMatch) {
  const Architecture arch = classifier_architecture(load_preset(GetParam()).arch, 8);
  const EnergyNet net = random_net(arch, 4, ModelKind::kClassifier);
  std::vector<std::string> labels;
  for (int i = 0; i < 8; ++i) labels.push_back("c" + std::to_string(i));
  const std::string file =
      export_file(*net, ModelKind::kClassifier, DType::kF32, GetParam() + "_cls", labels);
  EXPECT_EQ(Network::from_file(file).labels(), labels);
  EXPECT_LE(compare(*net, file, false, 7).out, 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Presets, PresetParity, ::testing::Values("paper", "book", "compact"),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

// Every layer kind, asymmetric padding, batch norm before and after non-linear layers (folded
// where it follows a convolution, an affine layer otherwise), average pooling with padding.
TEST(Parity, BatchNormModelWithNonTrivialRunningStatisticsMatches) {
  const Architecture arch = resolve_architecture({1, 20, 28}, nlohmann::json::parse(R"([
        {"type": "conv2d", "out_channels": 6, "kernel": [5, 3], "stride": 2, "padding": [2, 1, 1, 0]},
        {"type": "batchnorm", "eps": 0.001},
        {"type": "leaky_relu", "slope": 0.2},
        {"type": "conv2d", "out_channels": 8, "kernel": 3, "stride": 1, "padding": "same", "bias": false},
        {"type": "batchnorm"},
        {"type": "swish"},
        {"type": "batchnorm", "eps": 0.01},
        {"type": "avgpool", "kernel": 2, "padding": [1, 0, 0, 1]},
        {"type": "affine"},
        {"type": "flatten"},
        {"type": "dense", "out_features": 12},
        {"type": "swish"},
        {"type": "dense", "out_features": 1}])"));
  const EnergyNet net = random_net(arch, 9);
  // The running statistics really are far from (0, 1), so a folding mistake would show.
  const Model m = net->to_model(ModelKind::kEnergy);
  const Tensor& var = m.tensor("layers.1.running_var");
  EXPECT_GT(*std::max_element(var.data.begin(), var.data.end()) -
                *std::min_element(var.data.begin(), var.data.end()),
            0.3f);
  const Errors e =
      compare(*net, export_file(*net, ModelKind::kEnergy, DType::kF32, "bn"), true, 11);
  EXPECT_LE(e.out, 1e-4);
  EXPECT_LE(e.grad, 1e-4);
}

TEST(Parity, SpectralNormExportsTheNormalisedWeight) {
  const Architecture arch = load_preset("book").arch;
  EnergyNet net(arch, 3, /*spectral_norm=*/true);
  for (int i = 0; i < 30; ++i) net->power_iteration();
  // After enough power iterations every normalised weight matrix has spectral norm ~1.
  const Model m = net->to_model(ModelKind::kEnergy);
  const Tensor& w = m.tensor("layers.0.weight");
  const torch::Tensor mat =
      torch::from_blob(const_cast<float*>(w.data.data()), {w.shape[0], w.numel() / w.shape[0]});
  EXPECT_NEAR(torch::linalg_svdvals(mat)[0].item<double>(), 1.0, 1e-3);
  const Errors e = compare(*net, export_file(*net, ModelKind::kEnergy, DType::kF32, "sn"), true, 5);
  EXPECT_LE(e.out, 1e-4);
  EXPECT_LE(e.grad, 1e-4);
}

// F16 files: the runtime reads exactly the half-rounded weights (so against LibTorch on those
// weights the F32 bound of 1e-4 holds), and against the unrounded weights the error stays within
// a bound derived from half precision. Rounding moves each weight by at most u = 2^-11 relative;
// to first order a layer's output then moves by at most u * sum|w_i x_i|, which is u times a
// cancellation factor k = sum|w_i x_i| / |sum w_i x_i| relative to the output, and L weight layers
// add up: L * k * u. We take k = 8 (the measured errors, printed below, are 0.4 to 3.4 u):
// 8 * 6 * 2^-11 = 2.3e-2 for the six weight layers of each preset.
TEST_P(PresetParity, F16FileWithinTheHalfPrecisionBound) {
  const Architecture arch = load_preset(GetParam()).arch;
  const EnergyNet net = random_net(arch, 21);
  const std::string f16 = export_file(*net, ModelKind::kEnergy, DType::kF16, GetParam() + "_f16");
  int weight_layers = 0;
  for (const LayerSpec& l : arch.layers)
    weight_layers += l.kind == LayerKind::kConv2d || l.kind == LayerKind::kDense;
  const double u = std::ldexp(1.0, -11), bound = 8.0 * weight_layers * u;
  const Errors e = compare(*net, f16, true, 23);
  std::printf("%s F16 vs F32 weights: energies %.3g, gradients %.3g (bound %.3g)\n",
              GetParam().c_str(), e.out, e.grad, bound);
  EXPECT_LE(e.out, bound);
  EXPECT_LE(e.grad, bound);

  // LibTorch on the weights as the F16 file holds them (folded, then rounded) agrees to 1e-4.
  const Model folded = fold_normalization(net->to_model(ModelKind::kEnergy));
  Model rounded = folded;
  for (Tensor& t : rounded.tensors)
    for (float& v : t.data) v = half_to_float(float_to_half(v));
  EnergyNet net16(rounded.arch, 0);
  net16->load_model(rounded);
  const Errors e16 = compare(*net16, f16, true, 23);
  EXPECT_LE(e16.out, 1e-4);
  EXPECT_LE(e16.grad, 1e-4);
}

}  // namespace
}  // namespace ebm::train

namespace ebm::train {
namespace {

// One torch-backend step of each form against the formula, with the same noise drawn from a copy
// of the generator.
TEST(Langevin, TorchBackendStepsFollowBothForms) {
  const EnergyNet net = random_net(load_preset("book").arch, 3);
  const torch::Tensor x = random_images(net->architecture().input, 8);
  for (SamplerForm form : {SamplerForm::kPaper, SamplerForm::kTextbook}) {
    SamplerParams p;
    p.form = form;
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(17);
    at::Generator twin = gen.clone();
    const torch::Tensor got = langevin(*net, x, p, 1, gen, LangevinBackend::kTorch);
    const torch::Tensor z = torch::randn(x.sizes(), twin, torch::kFloat32);
    torch::Tensor want;
    if (form == SamplerForm::kPaper) {
      const torch::Tensor x1 = (x + p.noise * z).clamp(-1, 1);
      const torch::Tensor g =
          energy_input_grad(*net, net->weights(), x1).clamp(-p.grad_clip, p.grad_clip);
      want = (x1 - p.step_size * g).clamp(-1, 1);
    } else {
      const torch::Tensor g = energy_input_grad(*net, net->weights(), x);
      want = (x - 0.5 * p.eps * g + std::sqrt(p.eps) * z).clamp(-1, 1);
    }
    EXPECT_LE((got - want).abs().max().item<double>(), 1e-6) << sampler_form_name(form);
    EXPECT_GT((got - x).abs().max().item<double>(), 1e-3);  // it did move
  }
}

// Without noise the paper form is deterministic, so the two backends must walk the same path.
TEST(Langevin, RuntimeAndTorchBackendsWalkTheSamePathWithoutNoise) {
  const EnergyNet net = random_net(load_preset("paper").arch, 4);
  const torch::Tensor x = random_images(net->architecture().input, 9);
  SamplerParams p;
  p.noise = 0;
  p.step_size = 50;
  p.grad_clip = 1;  // no clipping: the path follows the gradient itself
  at::Generator g1 = at::make_generator<at::CPUGeneratorImpl>(1), g2 = g1.clone();
  const torch::Tensor a = langevin(*net, x, p, 10, g1, LangevinBackend::kTorch);
  const torch::Tensor b = langevin(*net, x, p, 10, g2, LangevinBackend::kRuntime, 2);
  const double moved = (a - x).abs().max().item<double>();
  const double diff = (a - b).abs().max().item<double>();
  std::printf("moved %.3g, backends differ by %.3g\n", moved, diff);
  EXPECT_GT(moved, 1e-3);
  EXPECT_LE(diff, 1e-4 * std::max(moved, 1.0));
}

TEST(Langevin, StopsBeforeTheNextStepWhenAskedAndReportsEachStep) {
  const EnergyNet net = random_net(load_preset("book").arch, 5);
  const torch::Tensor x = random_images(net->architecture().input, 10);
  for (LangevinBackend b : {LangevinBackend::kTorch, LangevinBackend::kRuntime}) {
    std::atomic<bool> stop{false};
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(1);
    std::vector<int> steps;
    const torch::Tensor out =
        langevin(*net, x, SamplerParams{}, 5, gen, b, 1, &stop, [&](int k, const torch::Tensor&) {
          steps.push_back(k);
          if (k == 3) stop = true;
        });
    EXPECT_FALSE(out.defined()) << langevin_backend_name(b);
    EXPECT_EQ(steps, (std::vector<int>{1, 2, 3})) << langevin_backend_name(b);
  }
}

}  // namespace
}  // namespace ebm::train
