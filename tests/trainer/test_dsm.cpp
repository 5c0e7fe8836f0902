// Denoising score matching of a noise-conditional denoiser energy (the unet preset's objective):
// LibTorch and the runtime compute the same energy and input gradient, a short run lowers the
// held-out loss and exports a format-2 model with the annealed sampler, resume is exact (the
// moving average included), and objective and architecture must agree.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <tuple>
#include <vector>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "../expect_error.h"
#include "checkpoint.h"
#include "ebm/error.h"
#include "ebm/network.h"
#include "ebm/sampler.h"
#include "export.h"
#include "metrics_csv.h"
#include "run.h"
#include "trainer.h"
#include "trainer_test_util.h"

namespace ebm::train {
namespace {

using nlohmann::json;
using test::quiet;
using test::scratch_dir;

using test::small_unet_preset;

// What ebm-train makes of the preset: its "train" settings over the defaults.
TrainConfig dsm_config(const std::string& work) {
  const json p = small_unet_preset();
  TrainConfig c;
  json j = c.to_json();
  for (const auto& [k, v] : p["train"].items()) j[k] = v;
  c = TrainConfig::from_json(j);
  c.preset = test::write_preset(work, p);
  c.data = test::bridge_set();
  c.batch = 16;
  c.sample_count = 2;
  c.sample_steps = 20;
  c.threads = 2;
  c.epochs = 100;
  return c;
}

TEST(DenoiserParity, LibTorchAndTheRuntimeGiveTheSameEnergiesAndInputGradients) {
  for (const std::string& preset : {std::string(EBM_TEST_PRESETS_DIR) + "/unet.json",
                                    std::string(EBM_TEST_PRESETS_DIR) + "/unet-wide-fine.json",
                                    std::string()}) {
    const Preset p = preset.empty() ? parse_preset(small_unet_preset(), "small") : load_preset(preset);
    ASSERT_TRUE(p.energy.denoiser);
    EnergyNet net(p.arch, 5, false, p.energy);
    const Shape s = net->image_shape();
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(3);
    net->set_mean(torch::rand({s.c, s.h, s.w}, gen) * 2 - 1);
    {
      // Random weights big enough that F matters next to the mean.
      torch::NoGradGuard no_grad;
      for (torch::Tensor& t : net->parameters()) t.mul_(3.0);
    }
    const Model m = net->to_model(ModelKind::kEnergy);
    const double err = runtime_agreement(*net, m, 4, 11);
    std::printf("%s: worst relative error %.3g\n", p.name.c_str(), err);
    EXPECT_LT(err, 1e-4) << p.name;
  }
}

// swish(x) with its fused derivatives against LibTorch's silu, whose derivatives autograd builds
// from elementwise operations, and against finite differences: the values, the first derivative,
// both gradients of the first derivative (with respect to the incoming gradient and to x, what
// denoising score matching's loss needs) and a third derivative (the differentiable fallback).
TEST(Swish, FusedDerivativesMatchSilusAndFiniteDifferencesToThirdOrder) {
  torch::manual_seed(3);
  // Both tails, zero, and a tensor large enough to be split among threads.
  const torch::Tensor x0 =
      torch::cat({torch::tensor({-40.0, -9.0, -1.0, 0.0, 1e-3, 2.5, 17.0, 60.0}, torch::kDouble),
                  torch::randn({3 * 70000}, torch::kDouble) * 3});
  const torch::Tensor v = torch::randn_like(x0), w = torch::randn_like(x0);
  struct Derivatives {
    torch::Tensor y, d1, d2x, d2g, d3;
  };
  auto derivatives = [&](auto f) {
    const torch::Tensor x = x0.clone().requires_grad_(true), g = w.clone().requires_grad_(true);
    Derivatives d;
    d.y = f(x);
    d.d1 = torch::autograd::grad({d.y}, {x}, {g}, true, true)[0];  // g s1(x), sK: swish's Kth
    const auto second = torch::autograd::grad({(d.d1 * v).sum()}, {x, g}, {}, true, true);
    d.d2x = second[0];                                          // v g s2(x)
    d.d2g = second[1];                                          // v s1(x)
    d.d3 = torch::autograd::grad({(d.d2x * v).sum()}, {x})[0];  // v^2 g s3(x)
    return d;
  };
  const Derivatives ours = derivatives([](const torch::Tensor& x) { return swish(x); });
  const Derivatives silu = derivatives([](const torch::Tensor& x) { return torch::silu(x); });
  const std::vector<std::tuple<torch::Tensor, torch::Tensor, const char*>> pairs = {
      {ours.y, silu.y, "values"},
      {ours.d1, silu.d1, "first"},
      {ours.d2x, silu.d2x, "second, x"},
      {ours.d2g, silu.d2g, "second, g"},
      {ours.d3, silu.d3, "third"}};
  for (const auto& [a, b, what] : pairs) EXPECT_TRUE(torch::allclose(a, b, 1e-11, 1e-12)) << what;

  // Finite differences of each order along every coordinate at once (the function is
  // elementwise), in double.
  const double h = 1e-5;
  auto shifted = [&](double dx) {
    return derivatives([&](const torch::Tensor& x) { return swish(x + dx); });
  };
  const Derivatives up = shifted(h), down = shifted(-h);
  EXPECT_TRUE(torch::allclose((up.y - down.y) / (2 * h) * w, ours.d1, 1e-6, 1e-8));
  EXPECT_TRUE(torch::allclose((up.d1 - down.d1) / (2 * h) * v, ours.d2x, 1e-6, 1e-8));
  EXPECT_TRUE(torch::allclose((up.d2x - down.d2x) / (2 * h) * v, ours.d3, 1e-5, 1e-8));

  // In float32, the trainer's type: within float rounding of the double values above, and no
  // further from them than LibTorch's silu in float.
  const torch::Tensor xf = x0.to(torch::kFloat).requires_grad_(true), gf = w.to(torch::kFloat),
                      vf = v.to(torch::kFloat);
  const auto in_float = [&](auto f) {
    const torch::Tensor d1 = torch::autograd::grad({f(xf)}, {xf}, {gf}, true, true)[0];
    const torch::Tensor d2 = torch::autograd::grad({(d1 * vf).sum()}, {xf})[0];
    return std::pair{(d1.to(torch::kDouble) - silu.d1).abs().max().item<double>(),
                     (d2.to(torch::kDouble) - silu.d2x).abs().max().item<double>()};
  };
  const auto [ours_d1, ours_d2] = in_float([](const torch::Tensor& x) { return swish(x); });
  const auto [silu_d1, silu_d2] = in_float([](const torch::Tensor& x) { return torch::silu(x); });
  std::printf(
      "float32, largest error of the first / second derivative: ours %.3g / %.3g, "
      "silu %.3g / %.3g\n",
      ours_d1, ours_d2, silu_d1, silu_d2);
  EXPECT_LT(ours_d1, 1e-5);
  EXPECT_LT(ours_d2, 1e-5);
  EXPECT_LE(ours_d1, 1.5 * silu_d1);
  EXPECT_LE(ours_d2, 1.5 * silu_d2);
}

// same_conv against LibTorch's conv2d in double: the values, the first derivatives (input,
// weight, bias) and the second derivatives that denoising score matching takes (the input
// gradient differentiated with respect to the weight and the incoming gradient; the weight
// gradient with respect to the input and the incoming gradient), and a third, for square and
// wide kernels, with and without a bias, in NCHW and channels-last memory.
TEST(SameConv, EveryDerivativeToThirdOrderIsLibTorchsConv2d) {
  struct Case {
    int64_t n, c_in, c_out, h, w, kh, kw;
    bool bias, channels_last;
  };
  for (const Case& k :
       {Case{2, 3, 5, 7, 9, 3, 3, true, false}, Case{1, 4, 2, 5, 16, 3, 13, false, true},
        Case{3, 2, 3, 6, 6, 5, 1, true, true}, Case{2, 1, 1, 4, 4, 1, 1, true, false}}) {
    torch::manual_seed(k.c_in * 100 + k.kw);
    const auto opts = torch::TensorOptions().dtype(torch::kDouble);
    torch::Tensor x0 = torch::randn({k.n, k.c_in, k.h, k.w}, opts);
    if (k.channels_last) x0 = x0.contiguous(at::MemoryFormat::ChannelsLast);
    const torch::Tensor w0 = torch::randn({k.c_out, k.c_in, k.kh, k.kw}, opts),
                        b0 = torch::randn({k.c_out}, opts),
                        dy0 = torch::randn({k.n, k.c_out, k.h, k.w}, opts),
                        v = torch::randn_like(x0), vw = torch::randn_like(w0);
    auto derivatives = [&](bool ours) {
      const torch::Tensor x = x0.clone().requires_grad_(true), w = w0.clone().requires_grad_(true),
                          b = b0.clone().requires_grad_(true),
                          dy = dy0.clone().requires_grad_(true);
      const torch::Tensor y = ours ? same_conv(x, w, k.bias ? b : torch::Tensor())
                                   : torch::conv2d(x, w, k.bias ? b : torch::Tensor(), 1,
                                                   {(k.kh - 1) / 2, (k.kw - 1) / 2});
      std::vector<torch::Tensor> out = {y};
      const auto first = torch::autograd::grad({y}, {x, w, b}, {dy}, true, true, !k.bias);
      out.insert(out.end(), first.begin(), first.end() - (k.bias ? 0 : 1));
      // The input gradient is linear in dy and w; the weight gradient in x and dy.
      const auto of_dx = torch::autograd::grad({(first[0] * v).sum()}, {w, dy}, {}, true, true);
      const auto of_dw = torch::autograd::grad({(first[1] * vw).sum()}, {x, dy}, {}, true, true);
      out.insert(out.end(), of_dx.begin(), of_dx.end());
      out.insert(out.end(), of_dw.begin(), of_dw.end());
      out.push_back(torch::autograd::grad({(of_dx[0] * vw).sum()}, {dy})[0]);  // a third
      return out;
    };
    const std::vector<torch::Tensor> ours = derivatives(true), torch_ = derivatives(false);
    ASSERT_EQ(ours.size(), torch_.size());
    for (size_t i = 0; i < ours.size(); ++i)
      EXPECT_TRUE(torch::allclose(ours[i], torch_[i], 1e-10, 1e-10))
          << "derivative " << i << " of the " << k.kh << "x" << k.kw << " case, max difference "
          << (ours[i] - torch_[i]).abs().max().item<double>();
  }
  EXPECT_THROW(same_conv(torch::zeros({1, 1, 4, 4}), torch::zeros({1, 1, 2, 3}), {}), Error);
}

TEST(Dsm, AShortRunLowersTheHeldOutLossAndExportsAnAnnealedDenoiser) {
  const std::string work = scratch_dir("dsm_short");
  TrainConfig c = dsm_config(work);
  c.epochs = 5;  // 115 training images: 7 steps per epoch
  c.ema = 0.9;   // a short run: the average must follow the weights within a few steps
  ASSERT_EQ(run_training(c, quiet(work + "/run")), RunResult::kFinished);
  const MetricsTable val = read_metrics(work + "/run/validation.csv");
  ASSERT_EQ(val.rows.size(), 5u);
  const std::vector<double> loss = val.column("loss");
  std::printf("held-out loss by epoch: %.3f ... %.3f\n", loss.front(), loss.back());
  EXPECT_LT(loss.back(), 0.8 * loss.front());
  for (const char* f : {"curves.png", "epoch_005_samples.png", "epoch_005_chain.png"})
    EXPECT_TRUE(std::filesystem::exists(work + "/run/" + f)) << f;
  EXPECT_FALSE(std::filesystem::exists(work + "/run/epoch_005_buffer.png"));

  ExportOptions opt;
  opt.source = work + "/run/checkpoint.pt";
  const Model m = export_checkpoint(read_checkpoint(opt.source), opt);
  EXPECT_TRUE(m.energy.denoiser);
  EXPECT_EQ(m.image_shape(), (Shape{1, 16, 64}));
  EXPECT_EQ(m.sampler.form, SamplerForm::kAnnealed);
  EXPECT_EQ(m.sampler.levels, 10);
  EXPECT_EQ(m.card["training"]["objective"], "denoising score matching");
  // The mean image is the training images' mean: mostly white background.
  const std::vector<float>& mean = m.tensor(kEnergyMeanTensor).data;
  double avg = 0;
  for (float v : mean) avg += v;
  EXPECT_GT(avg / double(mean.size()), 0.3);
  Network net(m);
  LangevinSampler s(net, m.sampler, 1);
  s.start_uniform(2);
  s.run();
  EXPECT_TRUE(s.finished());
  for (float v : s.images()) ASSERT_TRUE(v >= -1.0f && v <= 1.0f);
}

TEST(Dsm, HalfThenResumeEqualsStraightBitForBitWithTheMovingAverage) {
  const std::string work = scratch_dir("dsm_resume");
  TrainConfig c = dsm_config(work);
  c.max_steps = 10;  // crosses the epoch end at 7
  ASSERT_EQ(run_training(c, quiet(work + "/straight")), RunResult::kStepLimit);
  TrainConfig half = c;
  half.max_steps = 5;
  ASSERT_EQ(run_training(half, quiet(work + "/split")), RunResult::kStepLimit);
  TrainConfig again = read_run_config(work + "/split");
  again.max_steps = 10;
  ASSERT_EQ(run_training(again, quiet(work + "/split", true)), RunResult::kStepLimit);

  auto state = [](const std::string& dir) {
    Trainer tr(read_run_config(dir));
    tr.load(dir + "/checkpoint.pt");
    auto s = tr.net()->state();
    for (auto& [n, t] : tr.model_net()->state()) s.emplace_back("ema." + n, t);
    return s;
  };
  const auto a = state(work + "/straight"), b = state(work + "/split");
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(a.size(), 2 * (8 + 1u));  // 4 convs' weights and biases, the mean; twice
  bool ema_differs = false;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(torch::equal(a[i].second, b[i].second)) << a[i].first;
    if (i < a.size() / 2 && !a[i].first.empty() && a[i].first != kEnergyMeanTensor)
      ema_differs |= !torch::equal(a[i].second, a[i + a.size() / 2].second);
  }
  EXPECT_TRUE(ema_differs) << "the moving average should lag the weights";
  EXPECT_EQ(read_metrics(work + "/straight/metrics.csv").column("loss"),
            read_metrics(work + "/split/metrics.csv").column("loss"));
}

// The small U-Net with half as many filters again (8/16 -> 12/24), the output unchanged.
json wider_small_unet() {
  json p = small_unet_preset();
  for (json& l : p["layers"])
    if (l["type"] == "conv2d" && l["out_channels"] != 4)
      l["out_channels"] = l["out_channels"].get<int>() * 3 / 2;
  return p;
}

// A narrow model with random weights big enough to matter next to its random mean image.
Model random_small_denoiser(uint64_t seed) {
  const Preset p = parse_preset(small_unet_preset(), "small");
  EnergyNet net(p.arch, seed, false, p.energy);
  const Shape s = net->image_shape();
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  net->set_mean(torch::rand({s.c, s.h, s.w}, gen) * 2 - 1);
  {
    torch::NoGradGuard no_grad;
    for (torch::Tensor& t : net->parameters()) t.mul_(3.0);
  }
  return net->to_model(ModelKind::kEnergy);
}

// Energies of a network at four noise levels on fixed random images.
torch::Tensor energies_of(const EnergyNetImpl& net) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(17);
  const Shape s = net.image_shape();
  const torch::Tensor x = torch::rand({4, s.c, s.h, s.w}, gen) * 2 - 1;
  const torch::Tensor sigma = torch::tensor({0.05f, 0.3f, 1.0f, 5.0f});
  return net.denoiser_energy(net.weights(), x, sigma);
}

// A tensor of the network by its runtime name (an undefined one and a failure if absent).
torch::Tensor state_tensor(const EnergyNetImpl& net, const std::string& name) {
  for (auto& [n, t] : net.state())
    if (n == name) return t;
  ADD_FAILURE() << "no tensor " << name;
  return {};
}

// A network of `preset` that embeds the small model: it must compute what the model did (and
// not by chance: its random initialisation computed something else).
EnergyNet embedded(const json& preset, const Model& narrow) {
  const Preset pn = parse_preset(small_unet_preset(), "small");
  const Preset p = parse_preset(preset, "embedding");
  EnergyNet a(pn.arch, 1, false, pn.energy);
  a->load_model(narrow);
  EnergyNet b(p.arch, 9, false, p.energy);
  const torch::Tensor before = energies_of(*b);
  b->embed_model(narrow);
  const torch::Tensor ea = energies_of(*a), eb = energies_of(*b);
  std::printf("model    %s\nembedded %s\n", c10::str(ea).c_str(), c10::str(eb).c_str());
  EXPECT_TRUE(torch::allclose(eb, ea, 1e-5, 0)) << "the network must compute the model";
  EXPECT_FALSE(torch::allclose(before, ea, 1e-2, 0)) << "a vacuous check: random init agreed";
  return b;
}

TEST(InitFrom, AWiderNetworkComputesWhatTheModelDidAndItsNewChannelsLearn) {
  const Model narrow = random_small_denoiser(5);
  const Preset pn = parse_preset(small_unet_preset(), "small");
  EnergyNet b = embedded(wider_small_unet(), narrow);

  // Layer 5 (conv, 16 -> 8 channels in the model, 24 -> 12 here): the weights from the new
  // inputs into the model's outputs start at 0 but receive a gradient, so they learn.
  const torch::Tensor w = state_tensor(*b, tensor_name(5, "weight"));
  ASSERT_TRUE(w.defined());
  ASSERT_EQ(w.sizes(), (std::vector<int64_t>{12, 24, 3, 3}));
  const torch::Tensor block = w.narrow(0, 0, 8).narrow(1, 16, 8);
  EXPECT_EQ(block.abs().max().item<float>(), 0.0f);
  EXPECT_GT(w.narrow(0, 8, 4).abs().max().item<float>(), 0.0f) << "new outputs keep their init";
  energies_of(*b).sum().backward();
  EXPECT_GT(w.grad().narrow(0, 0, 8).narrow(1, 16, 8).abs().max().item<float>(), 0.0f);

  // What does not fit is named: more channels than the network, another kernel, another form.
  const Model wide = b->to_model(ModelKind::kEnergy);
  EnergyNet a(pn.arch, 1, false, pn.energy);
  test::expect_error([&] { a->embed_model(wide); }, {"layer 1 (conv2d) outputs 12x8x32 in the model"});
  json k = small_unet_preset();
  k["layers"][5]["kernel"] = 5;
  const Preset pk = parse_preset(k, "k5");
  EnergyNet c(pk.arch, 1, false, pk.energy);
  test::expect_error([&] { c->embed_model(narrow); }, {"layer 5 (conv2d) has other settings"});
  json f = small_unet_preset();
  f["energy"]["sigma_data"] = 0.5;
  const Preset pf = parse_preset(f, "f");
  EnergyNet d(pf.arch, 1, false, pf.energy);
  test::expect_error([&] { d->embed_model(narrow); }, {"energy form"});
}

TEST(InitFrom, ARunStartsFromTheModelWithItsMeanImage) {
  const std::string work = scratch_dir("dsm_init_from");
  Model narrow = random_small_denoiser(7);
  narrow.card["training"] = {{"seed", 5}};  // its split: another tenth held out than --seed 1's
  save_model(work + "/narrow.safetensors", narrow, DType::kF32);
  TrainConfig c = dsm_config(work);
  ASSERT_EQ(c.seed, 1u);
  c.preset = test::write_preset(work, wider_small_unet());
  c.init_from = work + "/narrow.safetensors";
  c.lr = 1e-12;  // one step that moves nothing measurable
  c.max_steps = 1;
  ASSERT_EQ(run_training(c, quiet(work + "/run")), RunResult::kStepLimit);
  Trainer tr(read_run_config(work + "/run"));
  EXPECT_EQ(tr.config().init_from, c.init_from);
  tr.load(work + "/run/checkpoint.pt");
  const Preset pn = parse_preset(small_unet_preset(), "small");
  EnergyNet a(pn.arch, 1, false, pn.energy);
  a->load_model(narrow);
  EXPECT_TRUE(torch::allclose(energies_of(*tr.model_net()), energies_of(*a), 1e-5, 0));
  const std::string log = test::read_text(work + "/run/log.txt");
  EXPECT_NE(log.find("starting from the weights of"), std::string::npos);
  EXPECT_NE(log.find("held out its images with --seed 5; this run (--seed 1) holds out others"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("pass --seed 5 to keep its held-out set"), std::string::npos);

  c.seed = 5;  // the same split: nothing to say
  ASSERT_EQ(run_training(c, quiet(work + "/run3")), RunResult::kStepLimit);
  EXPECT_EQ(test::read_text(work + "/run3/log.txt").find("held out its images"), std::string::npos);

  c.init_from = work + "/missing.safetensors";
  test::expect_error([&] { run_training(c, quiet(work + "/run2")); }, {"missing.safetensors"});
}

// The small U-Net followed by a full-resolution refinement summed onto its output, as the
// unet-wide-fine preset follows unet-wide: layers 11.. are new.
json deeper_small_unet() {
  json p = small_unet_preset();
  json& l = p["layers"];
  l[8]["id"] = "features";  // the swish before the last convolution (8 channels at 8x32)
  l[10]["id"] = "trunk";    // the model's output
  for (const char* t : {
           R"({"type": "conv2d", "out_channels": 6, "kernel": 3, "padding": "same", "from": "input", "id": "fine_in"})",
           R"({"type": "depth_to_space", "factor": 2, "from": "features"})",
           R"({"type": "conv2d", "out_channels": 6, "kernel": 3, "padding": "same"})",
           R"({"type": "add", "skip": "fine_in"})", R"({"type": "swish"})",
           R"({"type": "conv2d", "out_channels": 1, "kernel": 3, "padding": "same"})",
           R"({"type": "add", "skip": "trunk"})"})
    l.push_back(json::parse(t));
  return p;
}

TEST(InitFrom, ADeeperNetworkComputesWhatTheModelDidAndItsRefinementLearns) {
  const Model narrow = random_small_denoiser(5);
  ASSERT_EQ(parse_preset(deeper_small_unet(), "deeper").arch.layers.size(), 18u);
  EnergyNet b = embedded(deeper_small_unet(), narrow);
  // The convolution summed in (layer 16) starts at zero; the ones before it keep their init and
  // reach the output through it once it has learnt: it gets a gradient at once.
  const torch::Tensor last = state_tensor(*b, tensor_name(16, "weight"));
  EXPECT_EQ(last.abs().max().item<float>(), 0.0f);
  EXPECT_GT(state_tensor(*b, tensor_name(11, "weight")).abs().max().item<float>(), 0.0f);
  energies_of(*b).sum().backward();
  EXPECT_GT(last.grad().abs().max().item<float>(), 0.0f);

  // The closing adds may sum only the model's output, once, and new convolutions.
  json p = deeper_small_unet();
  p["layers"].erase(17);  // the network ends in the refinement's convolution
  const Preset p1 = parse_preset(p, "no-add");
  EnergyNet c(p1.arch, 1, false, p1.energy);
  test::expect_error([&] { c->embed_model(narrow); },
                     {"the network's last layer is conv2d, not an add", "layer 10"});
  p = deeper_small_unet();
  p["layers"].insert(p["layers"].begin() + 17, json::parse(R"({"type": "swish"})"));
  const Preset p2 = parse_preset(p, "swish");
  EnergyNet d(p2.arch, 1, false, p2.energy);
  test::expect_error([&] { d->embed_model(narrow); },
                     {"closing adds sum layer 17 (swish)", "new convolution or dense layers"});
  p = deeper_small_unet();
  p["layers"].push_back(json::parse(R"({"type": "add", "skip": "trunk"})"));
  const Preset p3 = parse_preset(p, "twice");
  EnergyNet e(p3.arch, 1, false, p3.energy);
  test::expect_error([&] { e->embed_model(narrow); }, {"(layer 10) 2 times, not once"});
}

TEST(FreezeLayers, OnlyTheLaterLayersTrainAndAResumeKeepsThemFrozen) {
  const std::string work = scratch_dir("dsm_freeze");
  const Model narrow = random_small_denoiser(7);
  save_model(work + "/narrow.safetensors", narrow, DType::kF32);
  TrainConfig c = dsm_config(work);
  c.preset = test::write_preset(work, deeper_small_unet());
  c.init_from = work + "/narrow.safetensors";
  c.freeze_layers = 11;
  c.max_steps = 3;
  ASSERT_EQ(run_training(c, quiet(work + "/run")), RunResult::kStepLimit);
  TrainConfig again = read_run_config(work + "/run");
  EXPECT_EQ(again.freeze_layers, 11);
  again.max_steps = 6;
  ASSERT_EQ(run_training(again, quiet(work + "/run", true)), RunResult::kStepLimit);
  Trainer tr(read_run_config(work + "/run"));
  tr.load(work + "/run/checkpoint.pt");
  EXPECT_EQ(tr.counters().step, 6);
  // Bit for bit the model's weights in the first 11 layers, in the network and its average.
  const Preset pn = parse_preset(small_unet_preset(), "small");
  EnergyNet model(pn.arch, 1, false, pn.energy);
  model->load_model(narrow);
  for (const EnergyNetImpl* net : std::vector<const EnergyNetImpl*>{&*tr.net(), &*tr.model_net()}) {
    for (size_t i = 0; i < 11; ++i)
      for (const TensorRef& ref : narrow.arch.layers[i].tensors)
        EXPECT_TRUE(torch::equal(state_tensor(*net, ref.name), state_tensor(*model, ref.name)))
            << ref.name;
    EXPECT_GT(state_tensor(*net, tensor_name(16, "weight")).abs().max().item<float>(), 0.0f)
        << "the refinement learnt nothing";
  }
  // The card says what the run started from and what it kept.
  ExportOptions opt;
  opt.source = work + "/run/checkpoint.pt";
  const Model exported = export_checkpoint(read_checkpoint(opt.source), opt);
  EXPECT_EQ(exported.card["training"]["started_from"], c.init_from);
  EXPECT_EQ(exported.card["training"]["frozen_layers"], 11);

  // Without freezing, the same steps move the early layers too.
  TrainConfig all = c;
  all.freeze_layers = 0;
  ASSERT_EQ(run_training(all, quiet(work + "/all")), RunResult::kStepLimit);
  Trainer ta(read_run_config(work + "/all"));
  ta.load(work + "/all/checkpoint.pt");
  EXPECT_FALSE(torch::equal(state_tensor(*ta.net(), tensor_name(1, "weight")),
                            state_tensor(*tr.net(), tensor_name(1, "weight"))));

  c.freeze_layers = 18;
  test::expect_error([&] { run_training(c, quiet(work + "/bad")); },
                     {"--freeze-layers 18", "18 layers, so at most 17"});
  c.freeze_layers = 17;  // layer 17 is an add: nothing left to train
  test::expect_error([&] { run_training(c, quiet(work + "/bad2")); }, {"leaves no weights to train"});
  // What would still move while "kept" is refused: batch-norm statistics, spectral norms.
  TrainConfig bn;
  bn.architecture = {{"input", {{"channels", 1}, {"height", 8}, {"width", 8}}},
                     {"layers", json::parse(R"([{"type": "conv2d", "out_channels": 2, "kernel": 3},
                                                {"type": "batchnorm"}, {"type": "swish"}, {"type": "flatten"},
                                                {"type": "dense", "out_features": 1}])")}};
  bn.freeze_layers = 3;
  test::expect_error([&] { Trainer t(bn); }, {"layer 1 is a batch norm", "at most 1"});
  bn.freeze_layers = 1;
  EXPECT_NO_THROW(Trainer t(bn));
  bn.spectral_norm = true;
  test::expect_error([&] { Trainer t(bn); }, {"--freeze-layers with --spectral-norm"});
}

TEST(LearningRate, FallsAlongAHalfCosineOverTheLastEpochsAfterRollbacks) {
  TrainConfig c;
  c.lr = 1e-3;
  c.epochs = 10;
  EXPECT_EQ(scheduled_lr(c, 95, 10, 0), 1e-3);  // no decay: constant
  EXPECT_DOUBLE_EQ(scheduled_lr(c, 95, 10, 2), 1e-3 * 0.25);
  c.lr_decay_epochs = 4;  // steps 60..100
  EXPECT_EQ(scheduled_lr(c, 0, 10, 0), 1e-3);
  EXPECT_EQ(scheduled_lr(c, 60, 10, 0), 1e-3);
  EXPECT_NEAR(scheduled_lr(c, 80, 10, 0), 0.5e-3, 1e-12);
  EXPECT_NEAR(scheduled_lr(c, 70, 10, 0), 1e-3 * 0.5 * (1 + std::cos(M_PI / 4)), 1e-12);
  EXPECT_NEAR(scheduled_lr(c, 80, 10, 1), 0.25e-3, 1e-12);
  EXPECT_EQ(scheduled_lr(c, 100, 10, 0), 0);
  c.lr_decay_epochs = 40;  // longer than the run: decays from the first step
  EXPECT_LT(scheduled_lr(c, 1, 10, 0), 1e-3);
  EXPECT_NEAR(scheduled_lr(c, 50, 10, 0), 0.5e-3, 1e-12);
}

TEST(Dsm, ALearningRateDecayResumesBitForBitAndIsWhatTheStepsUsed) {
  const std::string work = scratch_dir("dsm_decay");
  TrainConfig c = dsm_config(work);
  c.epochs = 2;  // 7 steps per epoch: the decay covers steps 7..14
  c.lr_decay_epochs = 1;
  c.max_steps = 12;
  ASSERT_EQ(run_training(c, quiet(work + "/straight")), RunResult::kStepLimit);
  TrainConfig half = c;
  half.max_steps = 9;  // inside the decay
  ASSERT_EQ(run_training(half, quiet(work + "/split")), RunResult::kStepLimit);
  TrainConfig again = read_run_config(work + "/split");
  EXPECT_EQ(again.lr_decay_epochs, 1);
  again.max_steps = 12;
  ASSERT_EQ(run_training(again, quiet(work + "/split", true)), RunResult::kStepLimit);
  const MetricsTable a = read_metrics(work + "/straight/metrics.csv");
  const MetricsTable b = read_metrics(work + "/split/metrics.csv");
  EXPECT_EQ(a.column("loss"), b.column("loss"));
  const std::vector<double> lr = a.column("lr"), step = a.column("step");
  ASSERT_EQ(lr.size(), 12u);
  for (size_t i = 0; i < lr.size(); ++i)
    EXPECT_NEAR(lr[i], scheduled_lr(c, int64_t(step[i]) - 1, 7, 0), 1e-6 * c.lr) << "row " << i;
  EXPECT_EQ(lr[0], c.lr);
  EXPECT_LT(lr[11], 0.5 * c.lr);
  Trainer ta(read_run_config(work + "/straight")), tb(read_run_config(work + "/split"));
  ta.load(work + "/straight/checkpoint.pt");
  tb.load(work + "/split/checkpoint.pt");
  const auto sa = ta.model_net()->state(), sb = tb.model_net()->state();
  ASSERT_EQ(sa.size(), sb.size());
  for (size_t i = 0; i < sa.size(); ++i) EXPECT_TRUE(torch::equal(sa[i].second, sb[i].second)) << sa[i].first;
}

TEST(Dsm, ObjectiveAndArchitectureMustAgree) {
  const std::string work = scratch_dir("dsm_mismatch");
  TrainConfig c = dsm_config(work);
  c.objective = Objective::kContrastiveDivergence;
  test::expect_error([&] { run_training(c, quiet(work + "/a")); },
                     {"denoiser energy", "denoising score matching", "--objective dsm"});
  TrainConfig d = dsm_config(work);
  std::filesystem::create_directories(work + "/p");
  d.preset = test::write_preset(work + "/p", test::small_preset(64, 16));
  test::expect_error([&] { run_training(d, quiet(work + "/b")); },
                     {"needs a denoiser energy", "--objective cd"});
  d.objective = Objective::kContrastiveDivergence;
  d.stroke_weight = 2;
  test::expect_error([&] { run_training(d, quiet(work + "/c")); },
                     {"--stroke-weight", "denoising score matching", "drop --stroke-weight"});
}

TEST(Dsm, StrokeWeightsMarkEachDarkPixelAndItsEightNeighboursInItsOwnImageAndChannel) {
  // Two images of two channels, white (+1) but for one dark pixel each, at a corner of image 0's
  // first channel and in the middle of image 1's second one.
  torch::Tensor x = torch::ones({2, 2, 5, 6});
  x[0][0][0][0] = -0.5f;
  x[1][1][2][3] = -1.0f;
  const torch::Tensor w = stroke_weights(x, 3.0);
  ASSERT_EQ(w.sizes(), x.sizes());
  for (int b = 0; b < 2; ++b)
    for (int c = 0; c < 2; ++c)
      for (int i = 0; i < 5; ++i)
        for (int j = 0; j < 6; ++j) {
          const bool near = (b == 0 && c == 0 && i <= 1 && j <= 1) ||
                            (b == 1 && c == 1 && std::abs(i - 2) <= 1 && std::abs(j - 3) <= 1);
          EXPECT_FLOAT_EQ(w[b][c][i][j].item<float>(), near ? 4.0f : 1.0f)
              << "image " << b << " channel " << c << " pixel " << i << "," << j;
        }
  // A pixel at exactly 0 is not dark (the evaluation's threshold: x < 0).
  EXPECT_FLOAT_EQ(stroke_weights(torch::zeros({1, 1, 3, 3}), 3.0).max().item<float>(), 1.0f);
}

TEST(Dsm, AStrokeWeightChangesTheStepsAndTravelsInTheConfigAndTheCard) {
  const std::string work = scratch_dir("dsm_stroke");
  TrainConfig plain = dsm_config(work);
  plain.epochs = 1;
  plain.limit = 64;
  TrainConfig stroke = plain;
  stroke.stroke_weight = 4;
  EXPECT_EQ(TrainConfig::from_json(stroke.to_json()).stroke_weight, 4.0);
  ASSERT_EQ(run_training(plain, quiet(work + "/plain")), RunResult::kFinished);
  ASSERT_EQ(run_training(stroke, quiet(work + "/stroke")), RunResult::kFinished);
  // The same data, seed and draws: only the loss's weights differ, so the first step's loss does.
  const std::vector<double> a = read_metrics(work + "/plain/metrics.csv").column("loss");
  const std::vector<double> b = read_metrics(work + "/stroke/metrics.csv").column("loss");
  ASSERT_FALSE(a.empty());
  ASSERT_FALSE(b.empty());
  EXPECT_NE(a.front(), b.front());
  auto card = [&](const std::string& run) {
    ExportOptions opt;
    opt.source = work + "/" + run + "/checkpoint.pt";
    return export_checkpoint(read_checkpoint(opt.source), opt).card;
  };
  const json with = card("stroke");
  EXPECT_EQ(with["training"]["stroke_weight"], 4.0) << with.dump();
  EXPECT_FALSE(card("plain")["training"].contains("stroke_weight"));
}

TEST(Dsm, ALossFarAboveItsRunningMeanIsADivergenceAndTheMeanTravelsInTheCheckpoint) {
  const std::string work = scratch_dir("dsm_spike");
  TrainConfig c = dsm_config(work);
  const Preset p = load_preset(c.preset);
  c.architecture = architecture_json(p.arch, p.energy);
  Trainer tr(c);
  const Shape s = tr.net()->image_shape();
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(9);
  const torch::Tensor real = torch::rand({16, s.c, s.h, s.w}, gen) * 2 - 1;
  const torch::Tensor none = torch::zeros({16}, torch::kLong);
  for (int i = 0; i < 8; ++i) {
    const std::optional<StepMetrics> m = tr.step(real, none);
    ASSERT_TRUE(m && m->healthy) << "step " << i;
  }
  tr.save(work + "/before.pt");
  // The step after the weights are blown up 4x.
  auto blown_up_step = [&](Trainer& t) {
    {
      torch::NoGradGuard no_grad;
      for (torch::Tensor& w : t.net()->parameters()) w.mul_(4.0);
    }
    return t.step(real, none);
  };
  // A trainer of `cfg` resumed from before.pt.
  auto resumed = [&](const TrainConfig& cfg) {
    auto t = std::make_unique<Trainer>(cfg);
    t->load(work + "/before.pt");
    return t;
  };
  const std::optional<StepMetrics> bad = blown_up_step(tr);
  ASSERT_TRUE(bad);
  std::printf("loss after the blow-up: %g\n", bad->loss);
  EXPECT_TRUE(std::isfinite(bad->loss));
  EXPECT_FALSE(bad->healthy);
  EXPECT_NE(bad->diagnosis.find("times the running mean"), std::string::npos) << bad->diagnosis;
  EXPECT_NE(bad->diagnosis.find("--max-loss-ratio 10"), std::string::npos) << bad->diagnosis;

  // The running mean is in the checkpoint: a resumed trainer catches the same step.
  const std::optional<StepMetrics> bad_again = blown_up_step(*resumed(c));
  ASSERT_TRUE(bad_again);
  EXPECT_FALSE(bad_again->healthy);
  EXPECT_EQ(bad_again->loss, bad->loss);

  // Switched off, the same step passes (its loss is finite).
  TrainConfig off = c;
  off.max_loss_ratio = 0;
  const std::optional<StepMetrics> passed = blown_up_step(*resumed(off));
  ASSERT_TRUE(passed);
  EXPECT_EQ(passed->loss, bad->loss);
  EXPECT_TRUE(passed->healthy);
}

TEST(Device, NamesAreCheckedAndAGpuRunNeedsACudaLibTorchAndAnObjectiveThatTrainsThere) {
  const std::string work = scratch_dir("dsm_device");
  TrainConfig c = dsm_config(work);
  c.device = "gpu";
  test::expect_error([&] { run_training(c, quiet(work + "/a")); },
                     {"--device 'gpu'", "cpu, cuda or cuda:N"});
  TrainConfig cd = c;
  cd.objective = Objective::kContrastiveDivergence;
  cd.device = "cuda";
  test::expect_error([&] { training_device(cd); }, {"contrastive divergence", "--device cpu"});
  c.device = "cuda";
  if (!torch::cuda::is_available()) {
    test::expect_error([&] { run_training(c, quiet(work + "/b")); },
                       {"--device cuda", "sees no CUDA device", "CMAKE_PREFIX_PATH"});
  } else {
    c.device = "cuda:" + std::to_string(torch::cuda::device_count());
    test::expect_error([&] { training_device(c); }, {"CUDA device", "cuda:0 to"});
  }
  EXPECT_FALSE(std::filesystem::exists(work + "/b/checkpoint.pt"));
  // The device travels in run.json, so a resumed run knows where it trained.
  c.device = "cuda:0";
  EXPECT_EQ(TrainConfig::from_json(c.to_json()).device, "cuda:0");
  EXPECT_EQ(TrainConfig().device, "cpu");
  EXPECT_TRUE(training_device(TrainConfig()).is_cpu());
}

#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__)
// keep_freed_memory (trainer.h): a step's large activations come from the heap, not from fresh
// mappings, and what a step frees stays there for the next one instead of going back to the
// kernel (whose fresh pages are what made a step slow).
TEST(Memory, FreedActivationsStayInTheHeapForTheNextStep) {
  ASSERT_TRUE(keep_freed_memory());  // what every Trainer calls, once per process
  const size_t bytes = size_t(16) << 20;  // a large activation, under the 32 MiB threshold
  const size_t mapped = mallinfo2().hblkhd;
  char* block = static_cast<char*>(std::malloc(bytes));
  ASSERT_NE(block, nullptr);
  std::memset(block, 1, bytes);
  EXPECT_EQ(mallinfo2().hblkhd, mapped) << "a 16 MiB block was mapped, not taken from the heap";
  std::free(block);
  EXPECT_GE(mallinfo2().fordblks, bytes) << "the freed block went back to the kernel";
}
#endif

}  // namespace
}  // namespace ebm::train

