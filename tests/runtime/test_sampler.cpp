// The Langevin sampler on a model whose answer is known: a smooth bowl around a chosen image;
// guidance by a classifier on a linear classifier whose pull has a known direction.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>

#include "ebm/error.h"
#include "ebm/reference.h"
#include "ebm/sampler.h"
#include "test_util.h"

namespace ebm {
namespace {

using nlohmann::json;
using test::expect_error;

constexpr int kH = 8, kW = 12, kD = kH * kW;

Model bowl_model(const std::vector<float>& t, float a) { return test::bowl_model(t, kH, kW, a); }

std::vector<float> target_image() { return test::random_inputs(kD, 77, -0.8f, 0.8f); }

double mean_abs_diff(const std::vector<float>& x, const std::vector<float>& t, int chain) {
  double s = 0;
  for (int k = 0; k < kD; ++k) s += std::abs(x[size_t(chain) * kD + k] - t[size_t(k)]);
  return s / kD;
}

TEST(BowlModel, HasItsMinimumAtTheTarget) {
  const std::vector<float> t = target_image();
  Network net(bowl_model(t, 1.0f));
  float e_target, e_other;
  net.energy(t.data(), 1, &e_target);
  std::vector<float> other = t;
  other[5] += 0.3f;
  net.energy(other.data(), 1, &e_other);
  EXPECT_NEAR(e_target, 0.0f, 1e-5);
  EXPECT_NEAR(e_other, 0.3 * std::tanh(0.15), 1e-5);
}

TEST(Sampler, PaperFormLowersTheEnergyAndLandsOnTheMinimum) {
  const std::vector<float> t = target_image();
  // a = 0.3: the clipped step (10 * 0.03 = 0.3) walks towards t, and near it the unclipped step
  // 10 * a^2 u / a ~ (x - t) lands on it; what remains is the 0.005 noise.
  Network net(bowl_model(t, 0.3f));
  SamplerParams p;  // paper form, step 10, noise 0.005, clip 0.03
  p.steps = 60;
  LangevinSampler s(net, p, 42);
  s.start_uniform(4);
  const std::vector<float> e0 = s.energies();
  s.run();
  const std::vector<float> e1 = s.final_energies();
  for (int i = 0; i < 4; ++i) {
    EXPECT_LT(e1[size_t(i)], 0.01f * e0[size_t(i)]) << "chain " << i;
    EXPECT_LT(mean_abs_diff(s.images(), t, i), 0.02) << "chain " << i;
  }
}

TEST(Sampler, TextbookFormLowersTheEnergyAndSettlesAroundTheMinimum) {
  const std::vector<float> t = target_image();
  // a = 20, eps = 0.005: near t the step is x - t -> (1 - eps a^2 / 2)(x - t) + sqrt(eps) z =
  // sqrt(eps) z, so pixels settle at t + N(0, 0.0707^2): mean absolute deviation 0.056.
  Network net(bowl_model(t, 20.0f));
  SamplerParams p;
  p.form = SamplerForm::kTextbook;
  p.eps = 0.005f;
  p.steps = 200;
  LangevinSampler s(net, p, 43);
  s.start_uniform(4);
  const std::vector<float> e0 = s.energies();
  s.run();
  const std::vector<float> e1 = s.final_energies();
  for (int i = 0; i < 4; ++i) {
    EXPECT_LT(e1[size_t(i)], 0.2f * e0[size_t(i)]) << "chain " << i;
    const double dev = mean_abs_diff(s.images(), t, i);
    EXPECT_GT(dev, 0.035) << "noise must keep the chain moving, chain " << i;
    EXPECT_LT(dev, 0.08) << "chain " << i;
  }
}

TEST(Sampler, SameSeedGivesTheSameSamplesAndAnotherSeedDoesNot) {
  const std::vector<float> t = target_image();
  Network net(bowl_model(t, 0.3f));
  SamplerParams p;
  p.steps = 10;
  auto sample = [&](uint64_t seed) {
    LangevinSampler s(net, p, seed);
    s.start_uniform(3);
    s.run();
    return s.images();
  };
  EXPECT_EQ(sample(5), sample(5));
  EXPECT_NE(sample(5), sample(6));
}

TEST(Sampler, AChainDependsOnItsIndexNotOnTheBatchItRunsIn) {
  const std::vector<float> t = target_image();
  Network net(bowl_model(t, 0.3f));
  SamplerParams p;
  p.steps = 20;
  LangevinSampler all(net, p, 9), part(net, p, 9);
  all.start_uniform(4);
  all.run();
  part.start_uniform(2, /*first_chain=*/2);  // chains 2 and 3 alone, as a second worker would
  part.run();
  // Bit for bit, so a grid split across workers is the same grid.
  EXPECT_TRUE(std::equal(part.images().begin(), part.images().end(), all.images().begin() + 2 * kD));
}

TEST(Sampler, StartCellOneIsPlainUniformNoisePerPixel) {
  Network net(bowl_model(target_image(), 0.3f));
  LangevinSampler s(net, SamplerParams{}, 4);
  s.start_uniform(2, /*first_chain=*/3);
  for (int i = 0; i < 2; ++i) {
    Pcg32 rng(4, uint64_t(3 + i));
    for (int k = 0; k < kD; ++k) ASSERT_EQ(s.images()[size_t(i) * kD + k], rng.uniform_pm1());
  }
}

TEST(Sampler, StartCellSmoothsTheStartingNoiseBetweenUniformCellCorners) {
  // 8x12 pixels in cells of 4: corners on a 3x4 grid (rows y = 0, 4, 8; columns x = 0, 4, 8, 12),
  // drawn from the chain's generator row by row; pixel (y, x) interpolates the four corners
  // around it, so it equals the corner value where y and x are multiples of 4, lies between the
  // corners on a cell edge, and moves by at most 2/4 per pixel.
  Network net(bowl_model(target_image(), 0.3f));
  SamplerParams p;
  p.start_cell = 4;
  LangevinSampler s(net, p, 4);
  s.start_uniform(2, /*first_chain=*/3);
  constexpr int gh = 3, gw = 4;
  for (int i = 0; i < 2; ++i) {
    Pcg32 rng(4, uint64_t(3 + i));
    float g[gh][gw];
    for (auto& row : g)
      for (float& v : row) v = rng.uniform_pm1();
    const float* x = s.images().data() + size_t(i) * kD;
    for (int y = 0; y < kH; y += 4)
      for (int c = 0; c < kW; c += 4) EXPECT_EQ(x[y * kW + c], g[y / 4][c / 4]) << y << "," << c;
    // Halfway along the top edge of the first cell, and at the centre of the first cell.
    EXPECT_NEAR(x[2], 0.5f * (g[0][0] + g[0][1]), 1e-6f);
    EXPECT_NEAR(x[2 * kW + 2], 0.25f * (g[0][0] + g[0][1] + g[1][0] + g[1][1]), 1e-6f);
    for (int y = 0; y < kH; ++y)
      for (int c = 0; c < kW; ++c) {
        EXPECT_LE(std::abs(x[y * kW + c]), 1.0f);
        if (c + 1 < kW) {
          EXPECT_LE(std::abs(x[y * kW + c + 1] - x[y * kW + c]), 0.5f + 1e-6f);
        }
        if (y + 1 < kH) {
          EXPECT_LE(std::abs(x[(y + 1) * kW + c] - x[y * kW + c]), 0.5f + 1e-6f);
        }
      }
  }
  // Different chains start differently.
  EXPECT_FALSE(std::equal(s.images().begin(), s.images().begin() + kD, s.images().begin() + kD));
}

TEST(Sampler, ClippingKeepsEveryPixelInRange) {
  // A target outside [-1, 1] pulls pixels against the clip: they must sit at the bound.
  std::vector<float> t(kD, 3.0f);
  for (int k = 0; k < kD / 2; ++k) t[size_t(k)] = -3.0f;
  for (SamplerForm form : {SamplerForm::kPaper, SamplerForm::kTextbook}) {
    Network net(bowl_model(t, form == SamplerForm::kPaper ? 0.3f : 100.0f));
    SamplerParams p;
    p.form = form;
    p.steps = 100;
    LangevinSampler s(net, p, 3);
    s.start_uniform(2);
    s.run(1, [&](const SamplerProgress& sp) {
      for (size_t k = 0; k < size_t(sp.count) * kD; ++k) {
        EXPECT_GE(sp.images[k], -1.0f);
        EXPECT_LE(sp.images[k], 1.0f);
      }
      return true;
    });
    EXPECT_EQ(s.images()[0], -1.0f);
    EXPECT_EQ(s.images()[kD - 1], 1.0f);
  }
}

TEST(Sampler, GradientClipBoundsEachPaperStep) {
  // Far from the minimum the gradient is large; one step moves a pixel by at most
  // step_size * grad_clip plus the noise (5 sigma).
  const std::vector<float> t(kD, 0.9f);
  Network net(bowl_model(t, 50.0f));
  SamplerParams p;
  p.steps = 1;
  p.step_size = 2.0f;
  p.grad_clip = 0.01f;
  LangevinSampler s(net, p, 4);
  std::vector<float> start(kD, -0.5f);
  s.start_from(start.data(), 1);
  s.run();
  for (float v : s.images()) {
    EXPECT_NEAR(v, -0.5f + 0.02f, 5 * 0.005f);
  }
}

TEST(Sampler, CallbackCadenceAndStopping) {
  Network net(bowl_model(target_image(), 0.3f));
  SamplerParams p;
  p.steps = 25;
  LangevinSampler s(net, p, 1);
  s.start_uniform(1);
  std::vector<int> seen;
  s.run(10, [&](const SamplerProgress& sp) {
    seen.push_back(sp.step);
    EXPECT_EQ(sp.total, 25);
    return true;
  });
  EXPECT_EQ(seen, (std::vector<int>{0, 10, 20, 25}));

  // Returning false stops at once; request_stop() stops before the next step.
  s.start_uniform(1);
  EXPECT_EQ(s.run(1, [](const SamplerProgress& sp) { return sp.step < 7; }), 7);
  s.start_uniform(1);
  s.request_stop();
  EXPECT_EQ(s.run(), 0);
  EXPECT_EQ(s.run(), 25);  // the request was consumed

  // Slices: a long chain run in pieces equals one run.
  LangevinSampler whole(net, p, 8), sliced(net, p, 8);
  whole.start_uniform(2);
  whole.run();
  sliced.start_uniform(2);
  while (!sliced.finished()) sliced.run(0, {}, 4);
  EXPECT_EQ(whole.images(), sliced.images());
}

TEST(Sampler, BlendStartsBetweenTwoImages) {
  Network net(bowl_model(target_image(), 0.3f));
  SamplerParams p;
  p.steps = 0;
  LangevinSampler s(net, p, 1);
  const std::vector<float> a(kD, -1.0f), b(kD, 1.0f);
  s.start_blend(a.data(), b.data(), {0.0f, 0.25f, 1.0f});
  EXPECT_EQ(s.count(), 3);
  EXPECT_EQ(s.images()[0], -1.0f);
  EXPECT_EQ(s.images()[kD], -0.5f);
  EXPECT_EQ(s.images()[2 * kD], 1.0f);
  expect_error([&] { s.start_blend(a.data(), b.data(), {1.5f}); }, {"blend weight", "[0, 1]"});
}

// Inpainting under the paper and textbook forms: the kept pixels are reset to the kept image
// after every step, so they end on it exactly, and the bowl pulls the free ones to its target.
TEST(Sampler, KeptPixelsStayTheKeptImageAndTheFreeOnesFollowTheModel) {
  const std::vector<float> t = target_image();
  Network net(bowl_model(t, 0.3f));
  const std::vector<float> keep(kD, 0.9f);
  std::vector<float> mask(kD, 0.0f);
  for (int k = 0; k < kD; k += 3) mask[size_t(k)] = 1.0f;
  for (SamplerForm form : {SamplerForm::kPaper, SamplerForm::kTextbook}) {
    SamplerParams p = default_sampler_params(form);
    p.steps = 60;
    LangevinSampler s(net, p, 42);
    s.set_keep(keep, mask);
    s.start_uniform(3);
    bool held = true;
    s.run(1, [&](const SamplerProgress& pr) {
      for (int i = 0; i < pr.count; ++i)
        for (int k = 0; k < kD; k += 3) held = held && pr.images[size_t(i) * kD + k] == 0.9f;
      return true;
    });
    EXPECT_TRUE(held) << sampler_form_name(form);
    if (form != SamplerForm::kPaper) continue;
    for (int i = 0; i < 3; ++i)
      for (int k = 0; k < kD; ++k) {
        if (k % 3 == 0) continue;
        ASSERT_NEAR(s.images()[size_t(i) * kD + k], t[size_t(k)], 0.05);
      }
  }
}

// A variation of the paper form starts from the blend (1 - s) image + s noise with a share s of
// the steps left: strength 0 is the image itself and no step.
TEST(Sampler, VariationsStartFromANoisedImageWithTheirShareOfTheSteps) {
  Network net(bowl_model(target_image(), 0.3f));
  SamplerParams p;
  p.steps = 40;
  const std::vector<float> image = test::random_inputs(kD, 3, -1.0f, 1.0f);
  LangevinSampler s(net, p, 1);
  s.start_variation(image.data(), 1, 0.0f);
  EXPECT_TRUE(s.finished());
  EXPECT_EQ(s.images(), image);
  s.start_variation(image.data(), 1, 0.25f);
  EXPECT_EQ(s.steps_done(), 30);
  double dist = 0;
  for (int k = 0; k < kD; ++k) dist = std::max(dist, double(std::abs(s.images()[size_t(k)] - image[size_t(k)])));
  EXPECT_GT(dist, 0.0);
  EXPECT_LE(dist, 0.5 + 1e-6);  // |0.25 (u - image)| <= 0.25 * 2
  int calls = 0;
  EXPECT_EQ(s.run(1, [&](const SamplerProgress&) { ++calls; return true; }), 10);
  EXPECT_EQ(calls, 11);  // the start, then each of the ten steps
  s.start_variation(image.data(), 1, 1.0f);
  EXPECT_EQ(s.steps_done(), 0);
}

// --- Guided sampling -------------------------------------------------------------------------

// Logits (v.x, -v.x): label 0 ("up_a") wants x along v, label 1 ("down_b") against it.
Model linear_classifier(const std::vector<float>& v) {
  const json layers = json::parse(R"([{"type":"flatten"},{"type":"dense","out_features":2}])");
  Model m = random_model(resolve_architecture({1, kH, kW}, layers), 1, ModelKind::kClassifier);
  m.labels = {"up_a", "down_b"};
  for (Tensor& tensor : m.tensors) {
    std::fill(tensor.data.begin(), tensor.data.end(), 0.0f);
    if (tensor.name == "layers.1.weight")
      for (int k = 0; k < kD; ++k) {
        tensor.data[size_t(k)] = v[size_t(k)];
        tensor.data[size_t(kD + k)] = -v[size_t(k)];
      }
  }
  return m;
}

// A noise-conditional model with a smooth prior around its mean image: the network passes the
// scaled image through (F = c_in (x - mean)), so D = mean + c_out c_in (x - mean), which shrinks
// x toward the mean at high noise and leaves it nearly as it is at low noise. (A point mass,
// D = mean whatever x, would leave a guide nothing to choose.)
Model smooth_prior_model() {
  const json layers = json::parse(R"([{"type":"conv2d","out_channels":1,"kernel":1}])");
  Model m = test::random_denoiser_model({1, kH, kW}, layers, 9);
  for (Tensor& t : m.tensors) {
    if (t.name == kEnergyMeanTensor) continue;
    std::fill(t.data.begin(), t.data.end(), 0.0f);
    if (t.name == "layers.0.weight") t.data[0] = 1.0f;  // [1, 2, 1, 1]: the image channel
  }
  return m;
}

// Mean over the chains of v . (x - origin) / |v|: how far along v the samples lie.
double mean_projection(const std::vector<float>& x, const std::vector<float>& v,
                       const std::vector<float>& origin) {
  const int n = int(x.size()) / kD;
  double vv = 0, s = 0;
  for (int k = 0; k < kD; ++k) vv += double(v[size_t(k)]) * v[size_t(k)];
  for (int i = 0; i < n; ++i)
    for (int k = 0; k < kD; ++k)
      s += double(v[size_t(k)]) * (x[size_t(i) * kD + k] - origin[size_t(k)]);
  return s / n / std::sqrt(vv);
}

// Under the noise-level forms a blend enters the walk part way down, as a variation of the
// blended image does (a blend at sigma_max, with none of its noise, would be read as noise and
// forgotten): the same chains bit for bit as start_variation of the blends, for both forms, and
// a blend weight outside [0, 1] is refused before anything starts.
TEST(Sampler, UnderTheNoiseLevelFormsABlendRestartsPartWayAsAVariationOfIt) {
  Network net(smooth_prior_model());
  const std::vector<float> a = test::random_inputs(kD, 41, -1.0f, 1.0f),
                           b = test::random_inputs(kD, 42, -1.0f, 1.0f);
  const std::vector<float> t = {0.0f, 0.3f, 1.0f};
  std::vector<float> blends;
  for (float ti : t)
    for (int k = 0; k < kD; ++k) blends.push_back((1.0f - ti) * a[size_t(k)] + ti * b[size_t(k)]);
  for (SamplerForm form : {SamplerForm::kDdim, SamplerForm::kAnnealed}) {
    SamplerParams p = default_sampler_params(form);
    p.steps = 12;
    for (float strength : {0.25f, 0.5f, 1.0f}) {
      LangevinSampler blended(net, p, 3), varied(net, p, 3);
      blended.start_blend(a.data(), b.data(), t, 5, strength);
      varied.start_variation(blends.data(), 3, strength, 5);
      EXPECT_EQ(blended.steps_done(), varied.steps_done()) << "strength " << strength;
      EXPECT_EQ(blended.images(), varied.images()) << "strength " << strength;
      if (strength < 1.0f) {
        EXPECT_GT(blended.steps_done(), 0) << "strength " << strength;
      }
      blended.run();
      varied.run();
      EXPECT_EQ(blended.images(), varied.images()) << "strength " << strength;
    }
    // The default strength is the page's and the CLI's (kDefaultBlendStrength).
    LangevinSampler by_default(net, p, 3), half(net, p, 3);
    by_default.start_blend(a.data(), b.data(), t);
    half.start_variation(blends.data(), 3, kDefaultBlendStrength);
    EXPECT_EQ(by_default.images(), half.images());
    LangevinSampler bad(net, p, 3);
    expect_error([&] { bad.start_blend(a.data(), b.data(), {-0.5f}); }, {"blend weight", "[0, 1]"});
    expect_error([&] { bad.start_blend(a.data(), b.data(), t, 0, 1.5f); }, {"blend strength", "[0, 1]"});
  }
}

TEST(GuideTarget, ParsesFamiliesAndSubtypesIntoADistribution) {
  const std::vector<std::string> labels = {"arch_deck", "arch_through", "beam_girder",
                                           "cable_fan", "cable_harp", "suspension_classic"};
  auto expect = [&](const std::string& spec, const std::vector<float>& want) {
    const std::vector<float> got = parse_guide_target(spec, labels);
    ASSERT_EQ(got.size(), want.size()) << spec;
    for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-6) << spec << " " << labels[i];
  };
  expect("arch:0.5,suspension:0.5", {0.25f, 0.25f, 0, 0, 0, 0.5f});
  expect("arch,suspension", {0.25f, 0.25f, 0, 0, 0, 0.5f});  // shares are normalised
  expect("cable_fan", {0, 0, 0, 1, 0, 0});
  expect("arch:1,cable_fan:3", {0.125f, 0.125f, 0, 0.75f, 0, 0});
  expect("beam:0.3,cable:0.7", {0, 0, 0.3f, 0.35f, 0.35f, 0});
  using test::expect_error;
  expect_error([&] { parse_guide_target("bridge:1", labels); },
               {"unknown guide target 'bridge'", "families arch, beam, cable, suspension",
                "subtypes arch_deck, arch_through"});
  expect_error([&] { parse_guide_target("arch:0", labels); }, {"'arch:0'", "> 0"});
  expect_error([&] { parse_guide_target("arch:-1,beam", labels); }, {"'arch:-1'", "> 0"});
  expect_error([&] { parse_guide_target("arch:half", labels); }, {"'arch:half'", "number"});
  expect_error([&] { parse_guide_target("arch,beam,arch", labels); }, {"'arch' twice"});
  expect_error([&] { parse_guide_target("", labels); }, {"empty guide target"});
  expect_error([&] { parse_guide_target("arch,,beam", labels); }, {"unknown guide target ''"});
}

// The gradient the guided sampler follows is that of E + scale w(sigma) CE: checked against
// finite differences of the double-precision references at every pixel, below the guide's noise
// level (w = 1) and above it (w = (sigma_guide / sigma)^2), on a random denoiser energy and a
// random classifier.
TEST(GuidedSampler, GradientMatchesFiniteDifferencesOfTheGuidedEnergy) {
  const json den = json::parse(R"([{"type":"conv2d","out_channels":3,"kernel":3,"padding":"same"},
      {"type":"swish"},{"type":"conv2d","out_channels":1,"kernel":3,"padding":"same"}])");
  const Model em = test::random_denoiser_model({1, kH, kW}, den, 5);
  const json cls = json::parse(R"([{"type":"conv2d","out_channels":2,"kernel":3,"padding":"same"},
      {"type":"swish"},{"type":"flatten"},{"type":"dense","out_features":3}])");
  Model cm = random_model(resolve_architecture({1, kH, kW}, cls), 6, ModelKind::kClassifier);
  cm.labels = {"a_x", "a_y", "b_z"};
  Network energy(em), classifier(cm);
  const std::vector<float> t = parse_guide_target("a:0.5,b:0.5", cm.labels);
  const float scale = 50.0f, sigma_guide = 1.0f;
  LangevinSampler s(energy, default_sampler_params(SamplerForm::kDdim), 1);
  s.set_guide(classifier, t, scale, sigma_guide);
  const int n = 2;
  const std::vector<float> x = test::random_inputs(size_t(n) * kD, 14);
  const std::vector<double> xd = test::to_double(x);
  for (float sigma : {0.5f, 4.0f}) {
    const double w = scale * std::min(1.0, std::pow(double(sigma_guide) / sigma, 2));
    EXPECT_NEAR(s.guide_weight(sigma), w, 1e-6 * w);
    auto guided = [&](const std::vector<double>& xs, int img) {
      const std::vector<double> e = reference_denoiser_energy(em, xs, n, double(sigma));
      const std::vector<double> l = reference_forward(cm, xs, n);
      const double* li = l.data() + img * 3;
      const double z = std::exp(li[0]) + std::exp(li[1]) + std::exp(li[2]);
      double ce = 0;
      for (int j = 0; j < 3; ++j) ce -= t[size_t(j)] * (li[j] - std::log(z));
      return e[size_t(img)] + w * ce;
    };
    std::vector<float> e(n), g(x.size()), g_plain(x.size());
    s.gradient(x.data(), n, sigma, e.data(), g.data());
    energy.energy_and_input_grad(x.data(), n, e.data(), g_plain.data(), sigma);
    test::expect_central_differences(g, xd, kD, guided, "sigma " + std::to_string(sigma) + ": grad");
    double guide_part = 0;
    for (size_t k = 0; k < x.size(); ++k) guide_part = std::max(guide_part, std::abs(double(g[k]) - g_plain[k]));
    EXPECT_GT(guide_part, 1e-2) << "the guide's term must be large enough to be checked";
  }
}

// On the denoised estimate, the guide's term is the classifier's gradient at
// D = clip(x - sigma^2 dE/dx), added to dE/dx: checked against the network's own answers.
TEST(GuidedSampler, OnTheDenoisedEstimateTheClassifierReadsD) {
  const json den = json::parse(R"([{"type":"conv2d","out_channels":3,"kernel":3,"padding":"same"},
      {"type":"swish"},{"type":"conv2d","out_channels":1,"kernel":3,"padding":"same"}])");
  Network energy(test::random_denoiser_model({1, kH, kW}, den, 5));
  const std::vector<float> v = test::random_inputs(kD, 31, -1.0f, 1.0f);
  Network classifier(linear_classifier(v));
  LangevinSampler s(energy, default_sampler_params(SamplerForm::kDdim), 1);
  s.set_guide(classifier, {0.3f, 0.7f}, 5.0f, 1.0f, true);
  const int n = 2;
  const std::vector<float> x = test::random_inputs(size_t(n) * kD, 14);
  for (float sigma : {0.3f, 2.0f}) {
    std::vector<float> e(n), g(x.size()), ge(x.size()), gc(x.size()), ce(n), d(x.size());
    s.gradient(x.data(), n, sigma, e.data(), g.data());
    energy.energy_and_input_grad(x.data(), n, e.data(), ge.data(), sigma);
    for (size_t k = 0; k < x.size(); ++k) d[k] = std::clamp(x[k] - sigma * sigma * ge[k], -1.0f, 1.0f);
    classifier.cross_entropy_and_input_grad(d.data(), n, {0.3f, 0.7f}, ce.data(), gc.data());
    const float w = s.guide_weight(sigma);
    for (size_t k = 0; k < x.size(); ++k) ASSERT_NEAR(g[k], ge[k] + w * gc[k], 1e-5 * (1 + std::abs(g[k])));
  }
  LangevinSampler paper(energy, SamplerParams{}, 1);
  expect_error([&] { paper.set_guide(classifier, {1, 0}, 1.0f, 1.0f, true); },
               {"denoised", "noise-level", "paper"});
}

// Guidance toward label 0 of the linear classifier moves the samples along v under every form
// (the bowl for the paper and textbook forms, the smooth prior for the noise-level ones);
// scale 0 and clear_guide give the unguided samples bit for bit.
TEST(GuidedSampler, MovesTheSamplesTowardTheTargetClassUnderEveryForm) {
  const std::vector<float> t = target_image();
  const std::vector<float> v = test::random_inputs(kD, 31, -1.0f, 1.0f);
  Network bowl(bowl_model(t, 0.3f)), point(smooth_prior_model()), classifier(linear_classifier(v));
  const std::vector<float>& mean = point.mean_image();
  for (SamplerForm form : {SamplerForm::kPaper, SamplerForm::kTextbook, SamplerForm::kAnnealed,
                           SamplerForm::kDdim}) {
    const bool levels = walks_noise_levels(form);
    const Network& net = levels ? point : bowl;
    const std::vector<float>& origin = levels ? mean : t;
    SamplerParams p = default_sampler_params(form);
    p.steps = levels ? 20 : 60;
    if (levels) p.sigma_max = 5.0f;
    auto samples = [&](float scale, const std::vector<float>& target) {
      LangevinSampler s(net, p, 3);
      if (scale >= 0) s.set_guide(classifier, target, scale);
      s.start_uniform(16);
      s.run();
      return s.images();
    };
    const std::vector<float> plain = samples(-1, {}), up = samples(2.0f, {1, 0}),
                             down = samples(2.0f, {0, 1});
    const double p0 = mean_projection(plain, v, origin), pu = mean_projection(up, v, origin),
                 pd = mean_projection(down, v, origin);
    EXPECT_GT(pu, p0 + 0.05) << sampler_form_name(form);
    EXPECT_LT(pd, p0 - 0.05) << sampler_form_name(form);
    EXPECT_EQ(samples(0.0f, {1, 0}), plain) << sampler_form_name(form);
    if (levels) {  // the guide on the denoised estimate pulls the same way
      LangevinSampler g(net, p, 3);
      g.set_guide(classifier, {1, 0}, 2.0f, kDefaultGuideSigma, true);
      g.start_uniform(16);
      g.run();
      EXPECT_GT(mean_projection(g.images(), v, origin), p0 + 0.05) << sampler_form_name(form);
    }
    LangevinSampler s(net, p, 3);
    s.set_guide(classifier, {1, 0}, 2.0f);
    s.clear_guide();
    s.start_uniform(16);
    s.run();
    EXPECT_EQ(s.images(), plain) << sampler_form_name(form);
  }
}

// The guide keeps every guarantee: the same samples whatever the thread count (each group has
// its own classifier workspace), with kept pixels and from a variation start too; kept pixels
// stay the kept image.
TEST(GuidedSampler, ThreadsKeptPixelsAndVariationsKeepTheirGuarantees) {
  const std::vector<float> v = test::random_inputs(kD, 31, -1.0f, 1.0f);
  Network point(smooth_prior_model()), classifier(linear_classifier(v));
  SamplerParams p = default_sampler_params(SamplerForm::kDdim);
  p.steps = 8;
  p.eta = 1.0f;
  std::vector<float> mask(kD, 0.0f);
  for (int k = 0; k < kD; k += 4) mask[size_t(k)] = 1.0f;
  const std::vector<float> keep = test::random_inputs(kD, 8, -0.9f, 0.9f);
  for (int mode = 0; mode < 3; ++mode) {
    auto run = [&](int threads) {
      LangevinSampler s(point, p, 5, threads);
      s.set_guide(classifier, {0.7f, 0.3f}, 1.5f, 1.0f, mode == 2);
      if (mode == 1) s.set_keep(keep, mask);
      if (mode == 2) {
        std::vector<float> images;
        for (int i = 0; i < 7; ++i) images.insert(images.end(), keep.begin(), keep.end());
        s.start_variation(images.data(), 7, 0.5f);
      } else {
        s.start_uniform(7);
      }
      s.run();
      return s.images();
    };
    const std::vector<float> one = run(1), three = run(3);
    EXPECT_EQ(one, three) << "mode " << mode;
    if (mode != 1) continue;
    for (int i = 0; i < 7; ++i)
      for (int k = 0; k < kD; k += 4) ASSERT_EQ(one[size_t(i) * kD + k], keep[size_t(k)]);
  }
}

TEST(GuidedSampler, RefusesAWrongGuide) {
  const std::vector<float> v = test::random_inputs(kD, 31, -1.0f, 1.0f);
  Network bowl(bowl_model(target_image(), 0.3f)), classifier(linear_classifier(v));
  LangevinSampler s(bowl, SamplerParams{}, 1);
  const json layers = json::parse(R"([{"type":"flatten"},{"type":"dense","out_features":2}])");
  Network small(random_model(resolve_architecture({1, 4, 4}, layers), 1, ModelKind::kClassifier));
  expect_error([&] { s.set_guide(small, {1, 0}, 1.0f); }, {"takes 1x4x4", "makes 1x8x12"});
  expect_error([&] { s.set_guide(bowl, {1}, 1.0f); }, {"must be a classifier"});
  expect_error([&] { s.set_guide(classifier, {1, 0, 0}, 1.0f); }, {"3 values", "2 labels"});
  expect_error([&] { s.set_guide(classifier, {0.6f, 0.6f}, 1.0f); }, {"sums to 1.2"});
  expect_error([&] { s.set_guide(classifier, {1, 0}, -1.0f); }, {"scale", ">= 0"});
  expect_error([&] { s.set_guide(classifier, {1, 0}, 1.0f, 0.0f); }, {"noise level", "> 0"});
  EXPECT_FALSE(s.guided());
}

TEST(Sampler, RefusesClassifiersAndEmptyStarts) {
  const json layers = json::parse(R"([{"type":"flatten"},{"type":"dense","out_features":2}])");
  Model c = random_model(resolve_architecture({1, 2, 2}, layers), 1, ModelKind::kClassifier);
  Network classifier(c);
  expect_error([&] { LangevinSampler(classifier, SamplerParams{}, 1); }, {"energy model"});
  Network net(bowl_model(target_image(), 0.3f));
  LangevinSampler s(net, SamplerParams{}, 1);
  expect_error([&] { s.step(); }, {"no chains"});
  expect_error([&] { s.start_uniform(0); }, {"at least 1"});
}

}  // namespace
}  // namespace ebm

namespace ebm {
namespace {

TEST(Sampler, ThreadsSplitTheChainsWithoutChangingABit) {
  const std::vector<float> t = target_image();
  Network net(bowl_model(t, 0.3f));
  SamplerParams p;
  p.steps = 15;
  LangevinSampler one(net, p, 21, 1), three(net, p, 21, 3);
  one.start_uniform(7);
  three.start_uniform(7);
  one.run();
  three.run();
  EXPECT_EQ(one.images(), three.images());
  EXPECT_EQ(one.final_energies(), three.final_energies());
}

TEST(ThreadPool, RunsEveryTaskOnceAndRethrowsTheFirstError) {
  ThreadPool pool(3);
  EXPECT_EQ(pool.size(), 3);
  for (int round = 0; round < 50; ++round) {
    std::vector<std::atomic<int>> hits(17);
    pool.run(17, [&](int i) { ++hits[size_t(i)]; });
    for (auto& h : hits) ASSERT_EQ(h.load(), 1);
  }
  EXPECT_THROW(pool.run(5, [](int i) { if (i == 3) throw Error("task 3 failed"); }), Error);
  std::atomic<int> after{0};
  pool.run(4, [&](int) { ++after; });  // still usable after an error
  EXPECT_EQ(after.load(), 4);
}

}  // namespace
}  // namespace ebm

namespace ebm {
namespace {

// The sampler runs each thread's chains in slices to bound its workspaces: the shipped bridge
// model (a U-Net graph, noise-conditional, ddim) and the paper network (a chain) give the same
// samples bit for bit whatever the slice, and the automatic slice keeps the workspace in budget.
TEST(Sampler, SlicesOfChainsBoundTheWorkspaceWithoutChangingABit) {
  const std::string dir = EBM_TEST_MODELS_DIR;
  const Model paper = random_model(load_preset(dir + "/presets/paper.json").arch, 3);
  for (const Model& m : {load_model(dir + "/bridges.safetensors"), paper}) {
    Network net(m);
    SamplerParams p = net.sampler();
    // Few steps (a split schedule, the shipped model's, needs 2 levels from its split down).
    p.steps = p.form == SamplerForm::kDdim ? std::max(3, p.split_levels + 2) : 4;
    // Per thread, for k chains: the model's workspace and, under autoguidance (the shipped bridge
    // model carries a weaker network; its last level is below autoguide_sigma_max), the weaker one's.
    const Network* weak = p.autoguide != 1.0f ? net.autoguide() : nullptr;
    auto bytes = [&](int k) { return net.workspace_bytes(k) + (weak ? weak->workspace_bytes(k) : 0); };
    std::vector<std::vector<float>> images;
    for (int slice : {0, 1, 2, 5}) {
      LangevinSampler s(net, p, 9, 2);  // two threads: chains 0-2 and 3-4, then slices of those
      s.set_max_batch(slice);
      if (slice == 0) {
        // The most chains whose workspaces fit the budget (at least one, at most
        // kSliceMostChains): not fewer, since a layer's scratch is needed once however many
        // chains share it.
        const int auto_slice = s.slice_size();
        EXPECT_GE(auto_slice, 1);
        EXPECT_LE(auto_slice, LangevinSampler::kSliceMostChains);
        EXPECT_TRUE(auto_slice == 1 || bytes(auto_slice) <= LangevinSampler::kSliceBudgetBytes)
            << auto_slice;
        if (auto_slice < LangevinSampler::kSliceMostChains) {
          EXPECT_GT(bytes(auto_slice + 1), LangevinSampler::kSliceBudgetBytes) << auto_slice;
        }
      } else {
        EXPECT_EQ(s.slice_size(), slice);
      }
      s.start_uniform(5);
      s.run();
      // Two threads, each sized for its slice (or its 3 and 2 chains when the slice is larger).
      const int biggest = std::min(s.slice_size(), 3);
      EXPECT_LE(s.workspace_bytes(), 2 * bytes(biggest)) << "slice " << slice;
      EXPECT_GE(s.workspace_bytes(), bytes(biggest)) << "slice " << slice;
      images.push_back(s.images());
      for (size_t k = 1; k < images.size(); ++k)
        ASSERT_EQ(images[k], images[0]) << net.architecture().layers.size() << " layers, slice " << slice;
    }
    // The workspace grows with the batch: what slicing saves.
    EXPECT_GT(net.workspace_bytes(32), 16 * net.workspace_bytes(1));
  }
  // The paper network at 8 chains: one slice (their workspace is 14.7 MiB, within even wasm's
  // 16 MiB), where dividing that budget by one chain's whole workspace, its layers' scratch
  // included, gave 7 and 1.
  Network paper_net(paper);
  LangevinSampler eight(paper_net, paper_net.sampler(), 1);
  EXPECT_GE(eight.slice_size(), 8);
  // Natively no more than 8 whatever the budget holds (32 of them hold 53 MiB, within 64).
  if (LangevinSampler::kSliceMostChains == 8) {
    EXPECT_EQ(eight.slice_size(), 8);
    EXPECT_LE(paper_net.workspace_bytes(32), LangevinSampler::kSliceBudgetBytes);
  }
  LangevinSampler s(paper_net, paper_net.sampler(), 1);
  expect_error([&] { s.set_max_batch(-1); }, {"slice size", ">= 0", "-1"});
}

}  // namespace
}  // namespace ebm
