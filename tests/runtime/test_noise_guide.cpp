// A noise-conditional classifier (the guide of a noise-level sampler, EnergyForm "scalar" with a
// noise plane): its logits and cross-entropy input gradient against the double-precision
// reference and finite differences at every pixel, its file (format 2, while every clean
// classifier stays format 1 and reads as before), the sigma it needs, and the guided sampler with
// it: full strength at every level, the gradient of E + scale CE(target, f(x, sigma)), same seed
// same samples whatever the threads, and the forms and options it makes no sense with refused.
#include <gtest/gtest.h>

#include <cmath>

#include "ebm/error.h"
#include "ebm/network.h"
#include "ebm/reference.h"
#include "ebm/sampler.h"
#include "test_util.h"

namespace ebm {
namespace {

using nlohmann::json;
using test::expect_error;

constexpr int kH = 8, kW = 12, kD = kH * kW;

const json kClassifierLayers = json::parse(R"([
  {"type":"conv2d","out_channels":3,"kernel":3,"stride":2,"padding":"same"},{"type":"swish"},
  {"type":"flatten"},{"type":"dense","out_features":3}])");

// Random weights, reading the image plus the noise plane.
Model noise_classifier(uint64_t seed, float sigma_data = 0.5f) {
  EnergyForm f;
  f.scalar_noise = true;
  f.sigma_data = sigma_data;
  Model m = random_model(resolve_architecture(layers_input({1, kH, kW}, f), kClassifierLayers), seed,
                         ModelKind::kClassifier);
  m.energy = f;
  m.labels = {"a_x", "a_y", "b_z"};
  return m;
}

// The double-precision definition: logits of [c_in x, log(sigma) / 4], and the cross-entropy.
std::vector<double> reference_logits(const Model& m, const std::vector<double>& x, int n, double sigma) {
  const double sd = m.energy.sigma_data, c_in = 1 / std::sqrt(sigma * sigma + sd * sd);
  std::vector<double> v(size_t(n) * 2 * kD);
  for (int b = 0; b < n; ++b)
    for (int k = 0; k < 2 * kD; ++k)
      v[size_t(b) * 2 * kD + k] = k < kD ? c_in * x[size_t(b) * kD + k] : std::log(sigma) / 4;
  return reference_forward(m, v, n);
}

double reference_ce(const Model& m, const std::vector<double>& x, int n, double sigma,
                    const std::vector<float>& t, int img) {
  const std::vector<double> l = reference_logits(m, x, n, sigma);
  const double* li = l.data() + img * 3;
  const double top = std::max({li[0], li[1], li[2]});
  const double log_z = top + std::log(std::exp(li[0] - top) + std::exp(li[1] - top) + std::exp(li[2] - top));
  double ce = 0;
  for (int j = 0; j < 3; ++j) ce -= t[size_t(j)] * (li[j] - log_z);
  return ce;
}

TEST(NoiseConditionalClassifier, LogitsAndCrossEntropyGradientMatchTheReferenceAtEveryPixel) {
  const Model m = noise_classifier(3);
  Network net(m);
  EXPECT_TRUE(net.noise_conditional());
  EXPECT_EQ(net.input_shape(), (Shape{1, kH, kW}));
  const int n = 2;
  const std::vector<float> x = test::random_inputs(size_t(n) * kD, 21);
  const std::vector<double> xd = test::to_double(x);
  const std::vector<float> t = {0.5f, 0.0f, 0.5f};
  for (float sigma : {0.03f, 0.7f, 12.0f}) {
    std::vector<float> logits(size_t(n) * 3), ce(n), g(x.size());
    net.logits(x.data(), n, logits.data(), sigma);
    const std::vector<double> ref = reference_logits(m, xd, n, sigma);
    for (size_t k = 0; k < ref.size(); ++k) EXPECT_NEAR(logits[k], ref[k], 1e-5 * (1 + std::abs(ref[k])));
    net.cross_entropy_and_input_grad(x.data(), n, t, ce.data(), g.data(), sigma);
    for (int img = 0; img < n; ++img) EXPECT_NEAR(ce[size_t(img)], reference_ce(m, xd, n, sigma, t, img), 1e-5);
    const double largest = test::expect_central_differences(
        g, xd, kD,
        [&](const std::vector<double>& xs, int img) { return reference_ce(m, xs, n, sigma, t, img); },
        "sigma " + std::to_string(sigma) + ": dCE/dx");
    EXPECT_GT(largest, 1e-4) << "sigma " << sigma << ": a gradient this flat would not test anything";
  }
  // An image's results do not depend on the rest of the batch.
  std::vector<float> ce(n), g(x.size()), ce1(1), g1(kD);
  net.cross_entropy_and_input_grad(x.data(), n, t, ce.data(), g.data(), 0.4f);
  net.cross_entropy_and_input_grad(x.data() + kD, 1, t, ce1.data(), g1.data(), 0.4f);
  EXPECT_EQ(ce1[0], ce[1]);
  EXPECT_TRUE(std::equal(g1.begin(), g1.end(), g.begin() + kD));
}

TEST(NoiseConditionalClassifier, NeedsTheNoiseLevel) {
  Network net(noise_classifier(4));
  const std::vector<float> x(kD, 0.5f);
  std::vector<float> out(3), ce(1), g(kD);
  for (float bad : {0.0f, -1.0f, NAN}) {
    expect_error([&] { net.logits(x.data(), 1, out.data(), bad); },
                 {"noise-conditional", "sigma > 0", "clean classifier"});
    expect_error([&] { net.cross_entropy_and_input_grad(x.data(), 1, {1, 0, 0}, ce.data(), g.data(), bad); },
                 {"noise-conditional", "sigma > 0"});
    expect_error([&] { net.features(x.data(), 1, out.data(), bad); }, {"noise-conditional"});
  }
}

TEST(NoiseConditionalClassifierFile, RoundTripsAsFormat2WhileCleanClassifiersStayFormat1) {
  const Model m = noise_classifier(5, 0.6f);
  const std::vector<uint8_t> bytes = serialize_model(m, DType::kF32);
  const TensorFile file = parse_safetensors(bytes.data(), bytes.size());
  EXPECT_EQ(file.metadata.at("ebm.format"), "2");
  const json energy = json::parse(file.metadata.at("ebm.energy"));
  EXPECT_EQ(energy["form"], "scalar");
  EXPECT_EQ(energy["noise_plane"], true);
  EXPECT_EQ(json::parse(file.metadata.at("ebm.input"))["channels"], 1);  // the images, not the plane
  const Model back = parse_model(bytes.data(), bytes.size());
  EXPECT_TRUE(back.energy.scalar_noise);
  EXPECT_FALSE(back.energy.denoiser);
  EXPECT_FLOAT_EQ(back.energy.sigma_data, 0.6f);
  EXPECT_EQ(back.describe()["noise_conditional"], true);
  Network a(m), b(back);
  const std::vector<float> x = test::random_inputs(kD, 8);
  std::vector<float> la(3), lb(3);
  a.logits(x.data(), 1, la.data(), 0.3f);
  b.logits(x.data(), 1, lb.data(), 0.3f);
  EXPECT_EQ(la, lb);

  // A clean classifier: format 1, no "ebm.energy", no "noise_conditional" in its description, no
  // sigma needed (any given is ignored).
  Model clean = random_model(resolve_architecture({1, kH, kW}, kClassifierLayers), 5, ModelKind::kClassifier);
  clean.labels = {"a_x", "a_y", "b_z"};
  const std::vector<uint8_t> cb = serialize_model(clean);
  const TensorFile cf = parse_safetensors(cb.data(), cb.size());
  EXPECT_EQ(cf.metadata.at("ebm.format"), "1");
  EXPECT_EQ(cf.metadata.count("ebm.energy"), 0u);
  const Model cback = parse_model(cb.data(), cb.size());
  EXPECT_FALSE(cback.describe().contains("noise_conditional"));
  Network cn(cback);
  EXPECT_FALSE(cn.noise_conditional());
  std::vector<float> l0(3), l1(3);
  cn.logits(x.data(), 1, l0.data());
  cn.logits(x.data(), 1, l1.data(), 5.0f);
  EXPECT_EQ(l0, l1);
}

TEST(NoiseConditionalClassifierFile, ShippedClassifierStillLoadsAsACleanOne) {
  const Model m = load_model(std::string(EBM_TEST_MODELS_DIR) + "/bridge-classifier.safetensors");
  EXPECT_FALSE(noise_conditional(m.energy));
  EXPECT_FALSE(m.describe().contains("noise_conditional"));
  EXPECT_EQ(m.image_shape(), (Shape{1, 48, 192}));
}

TEST(NoiseConditionalClassifierFile, InconsistentFilesAreRefusedByName) {
  // A noise plane on a scalar energy model: only classifiers have that form.
  Model e = noise_classifier(6);
  e.kind = ModelKind::kEnergy;
  e.labels.clear();
  expect_error([&] { validate_model(e); }, {"noise plane", "classifiers", "denoiser"});
  // A format-2 classifier that says it reads no noise plane.
  const std::vector<uint8_t> bytes = serialize_model(noise_classifier(6));
  TensorFile f = parse_safetensors(bytes.data(), bytes.size());
  f.metadata["ebm.energy"] = R"({"form":"scalar"})";
  const std::vector<uint8_t> edited = serialize_safetensors(f);
  expect_error([&] { parse_model(edited.data(), edited.size()); },
               {"format \"2\"", "noise plane", "\"noise_plane\": true"});
}

// --- The guided sampler with a noise-conditional guide ---------------------------------------

const json kDenoiser = json::parse(R"([{"type":"conv2d","out_channels":3,"kernel":3,"padding":"same"},
    {"type":"swish"},{"type":"conv2d","out_channels":1,"kernel":3,"padding":"same"}])");

// The gradient is that of E(x, sigma) + scale CE(target, f(x, sigma)) at every level: full
// strength (w = 1) even far above the clean classifier's guide level.
TEST(NoiseGuidedSampler, GradientMatchesFiniteDifferencesAtFullStrengthOnEveryLevel) {
  const Model em = test::random_denoiser_model({1, kH, kW}, kDenoiser, 5);
  const Model cm = noise_classifier(7);
  Network energy(em), classifier(cm);
  const std::vector<float> t = parse_guide_target("a:0.5,b:0.5", cm.labels);
  const float scale = 50.0f;
  LangevinSampler s(energy, default_sampler_params(SamplerForm::kDdim), 1);
  s.set_guide(classifier, t, scale);  // the default guide level: unused by a noise-aware guide
  const int n = 2;
  const std::vector<float> x = test::random_inputs(size_t(n) * kD, 14);
  const std::vector<double> xd = test::to_double(x);
  for (float sigma : {0.05f, 4.0f, 40.0f}) {
    EXPECT_EQ(s.guide_weight(sigma), scale);
    auto guided = [&](const std::vector<double>& xs, int img) {
      return reference_denoiser_energy(em, xs, n, double(sigma))[size_t(img)] +
             scale * reference_ce(cm, xs, n, sigma, t, img);
    };
    std::vector<float> e(n), g(x.size()), g_plain(x.size());
    s.gradient(x.data(), n, sigma, e.data(), g.data());
    energy.energy_and_input_grad(x.data(), n, e.data(), g_plain.data(), sigma);
    test::expect_central_differences(g, xd, kD, guided, "sigma " + std::to_string(sigma) + ": grad");
    double guide_part = 0;
    for (size_t k = 0; k < x.size(); ++k) guide_part = std::max(guide_part, std::abs(double(g[k]) - g_plain[k]));
    EXPECT_GT(guide_part, 1e-3) << "sigma " << sigma << ": the guide's term must be large enough to be checked";
  }
}

TEST(NoiseGuidedSampler, SameSeedSameSamplesWhateverTheThreadsAndTheGuideMatters) {
  Network energy(test::random_denoiser_model({1, kH, kW}, kDenoiser, 12));
  Network classifier(noise_classifier(8));
  SamplerParams p = default_sampler_params(SamplerForm::kDdim);
  p.steps = 8;
  p.eta = 0.5f;
  auto samples = [&](int threads, float scale, int slice) {
    LangevinSampler s(energy, p, 3, threads);
    if (scale > 0) s.set_guide(classifier, {0.0f, 0.0f, 1.0f}, scale);
    s.start_uniform(5);
    while (!s.finished()) s.run(0, {}, slice);
    return s.images();
  };
  const std::vector<float> one = samples(1, 200.0f, 100);
  EXPECT_EQ(one, samples(2, 200.0f, 3));
  EXPECT_EQ(one, samples(3, 200.0f, 1));
  EXPECT_NE(one, samples(1, 0.0f, 100));
}

TEST(NoiseGuidedSampler, RefusesFormsWithoutNoiseLevelsAndTheDenoisedEstimate) {
  Network classifier(noise_classifier(9));
  const std::vector<float> t = {1, 0, 0};
  Network bowl(test::bowl_model(test::random_inputs(kD, 77, -0.8f, 0.8f), kH, kW, 0.3f));
  for (SamplerForm form : {SamplerForm::kPaper, SamplerForm::kTextbook}) {
    LangevinSampler s(bowl, default_sampler_params(form), 1);
    expect_error([&] { s.set_guide(classifier, t, 10.0f); },
                 {"noise-conditional", "noise-level sampler form", sampler_form_name(form),
                  "clean classifier"});
  }
  Network energy(test::random_denoiser_model({1, kH, kW}, kDenoiser, 5));
  LangevinSampler s(energy, default_sampler_params(SamplerForm::kAnnealed), 1);
  expect_error([&] { s.set_guide(classifier, t, 10.0f, 1.0f, true); },
               {"denoised", "noise-conditional", "--guide-denoised"});
  s.set_guide(classifier, t, 10.0f);  // the annealed form walks noise levels too
  EXPECT_TRUE(s.guided());
}

}  // namespace
}  // namespace ebm
