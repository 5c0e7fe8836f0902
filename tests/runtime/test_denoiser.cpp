// Noise-conditional denoiser energies and what they are built from: the graph layers (from,
// add, upsample, space_to_depth, depth_to_space) against the double-precision reference and
// finite differences, the format-2 model file and its refusals, and the annealed sampler.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>

#include "ebm/error.h"
#include "ebm/layers.h"
#include "ebm/network.h"
#include "ebm/reference.h"
#include "ebm/sampler.h"
#include "test_util.h"

namespace ebm {
namespace {

using nlohmann::json;
using test::expect_error;

// A small U-Net with every graph layer: image 1x8x12 plus the noise plane -> 8x4x6 -> 6x2x3 ->
// back up, with two skips (one from the space_to_depth output) and a "from" that re-reads it.
const json kSmallUnet = json::parse(R"([
  {"type":"space_to_depth","factor":2,"id":"s0"},
  {"type":"conv2d","out_channels":5,"kernel":3,"padding":"same"},
  {"type":"swish","id":"s1"},
  {"type":"conv2d","out_channels":6,"kernel":3,"stride":2,"padding":[1,1]},
  {"type":"swish"},
  {"type":"conv2d","out_channels":5,"kernel":3,"padding":"same"},
  {"type":"upsample","factor":2},
  {"type":"add","skip":"s1"},
  {"type":"swish"},
  {"type":"conv2d","out_channels":8,"kernel":3,"padding":"same"},
  {"type":"add","skip":"s0"},
  {"type":"leaky_relu","slope":0.1},
  {"type":"conv2d","out_channels":4,"kernel":1},
  {"type":"depth_to_space","factor":2}
])");

constexpr Shape kImage{1, 8, 12};

TEST(GraphLayers, ShapesFollowFactorsAndNamesResolveToEarlierLayers) {
  const Architecture a = resolve_architecture(layers_input(kImage, EnergyForm{true, 0.6f, true}), kSmallUnet);
  EXPECT_EQ(a.input, (Shape{2, 8, 12}));
  EXPECT_EQ(a.layers[0].out, (Shape{8, 4, 6}));
  EXPECT_EQ(a.layers[3].out, (Shape{6, 2, 3}));
  EXPECT_EQ(a.layers[6].out, (Shape{5, 4, 6}));
  EXPECT_EQ(a.layers[7].skip, 2);
  EXPECT_EQ(a.layers[10].skip, 0);
  EXPECT_EQ(a.output(), (Shape{1, 8, 12}));
  EXPECT_TRUE(a.is_graph());
  EXPECT_FALSE(load_preset(std::string(EBM_TEST_MODELS_DIR) + "/presets/paper.json").arch.is_graph());
  // The explicit form names the same edges and resolves to the same graph.
  const Architecture again = resolve_architecture(a.input, a.layers_json());
  EXPECT_EQ(again.layers_json(), a.layers_json());
  // "from" reads an earlier layer instead of the previous one.
  const Architecture f = resolve_architecture({1, 4, 4}, json::parse(R"([
    {"type":"swish","id":"a"},{"type":"upsample"},{"type":"swish","from":"a"},{"type":"add","skip":"input"}])"));
  EXPECT_EQ(f.layers[2].from, 0);
  EXPECT_EQ(f.layers[2].in, (Shape{1, 4, 4}));
  EXPECT_EQ(f.layers[3].skip, kNetworkInput);
}

TEST(GraphLayers, BadGraphsAreRefusedWithTheLayerAndTheReason) {
  auto bad = [](const char* layers, std::vector<std::string> words) {
    expect_error([&] { resolve_architecture({1, 8, 12}, json::parse(layers)); }, words);
  };
  bad(R"([{"type":"swish","from":"later"},{"type":"swish","id":"later"}])", {"layer 0", "\"later\"", "earlier"});
  bad(R"([{"type":"swish","id":"a"},{"type":"swish","id":"a"}])", {"layer 1", "used twice"});
  bad(R"([{"type":"swish","id":"input"}])", {"layer 0", "reserved"});
  bad(R"([{"type":"swish","id":""}])", {"layer 0", "\"id\""});
  bad(R"([{"type":"add"}])", {"layer 0 (add)", "missing \"skip\""});
  bad(R"([{"type":"add","skip":3}])", {"layer 0", "\"skip\"", "must name"});
  bad(R"([{"type":"swish","id":"a"},{"type":"upsample"},{"type":"add","skip":"a"}])",
      {"layer 2 (add)", "1x8x12", "1x16x24", "must match"});
  bad(R"([{"type":"space_to_depth","factor":5}])", {"layer 0 (space_to_depth)", "not divisible"});
  bad(R"([{"type":"depth_to_space"}])", {"layer 0 (depth_to_space)", "not divisible by 4"});
  bad(R"([{"type":"upsample","factor":0}])", {"layer 0 (upsample)", "\"factor\""});
  bad(R"([{"type":"upsample","factor":17}])", {"layer 0 (upsample)", "\"factor\""});
  bad(R"([{"type":"upsample","factor":16},{"type":"upsample","factor":16},{"type":"upsample","factor":16}])",
      {"layer 2 (upsample)", "outside the supported range"});
  bad(R"([{"type":"swish","skip":"input"}])", {"layer 0 (swish)", "unknown key \"skip\""});
}

TEST(GraphLayers, RearrangementsMatchPyTorchPixelShuffleOrder) {
  // pixel_unshuffle: out[c*4 + a*2 + b][i][j] = in[c][2i + a][2j + b].
  const Architecture a = resolve_architecture({1, 2, 4}, json::parse(R"([{"type":"space_to_depth"}])"));
  const Model m = random_model(a, 1);
  std::vector<float> x(8);
  for (int k = 0; k < 8; ++k) x[size_t(k)] = float(k);  // row 0: 0 1 2 3, row 1: 4 5 6 7
  const std::vector<float> y = reference_layer_forward(a.layers[0], m, x, 1);
  EXPECT_EQ(y, (std::vector<float>{0, 2, 1, 3, 4, 6, 5, 7}));
  // depth_to_space undoes it, in the reference and in the runtime's layers.
  const Architecture b = resolve_architecture({1, 2, 4}, json::parse(R"([{"type":"space_to_depth"},{"type":"depth_to_space"}])"));
  const Model mb = random_model(b, 1);
  EXPECT_EQ(reference_forward(mb, x, 1), x);
}

// One layer of `a` (its only one) run by the runtime on n = 2 random images, forward (y) and
// backward from a random dy (dx); seeds from `seed`.
struct LayerRun {
  std::vector<float> x, dy, y, dx;
};
LayerRun run_only_layer(const Architecture& a, const Model& m, uint64_t seed) {
  const LayerSpec& s = a.layers[0];
  const auto layer = make_layer(s, m);
  const int n = 2;
  LayerRun r;
  r.x = test::random_inputs(size_t(n) * s.in.size(), seed);
  r.dy = test::random_inputs(size_t(n) * s.out.size(), seed + 1);
  r.y.resize(r.dy.size());
  r.dx.resize(r.x.size());
  layer->forward(r.x.data(), r.y.data(), n, nullptr);
  layer->backward_input(r.x.data(), r.y.data(), r.dy.data(), r.dx.data(), n, nullptr);
  return r;
}

// The runtime's rearrangements move every value where the reference does, forward, and their
// gradients move it back (the other rearrangement's forward pass), on rows whose coarse width is
// all scalar tail (6), whole vectors (32) and vectors plus a tail (35): f = 2 goes a row at a
// time through stride-2 lanes.
TEST(GraphLayers, RearrangementsMoveEveryValueWhateverTheRowWidth) {
  for (int w : {12, 64, 70}) {
    for (const char* kind : {"space_to_depth", "depth_to_space"}) {
      SCOPED_TRACE(testing::Message() << kind << ", width " << w);
      const bool down = std::string(kind) == "space_to_depth";
      const Shape in = down ? Shape{3, 6, w} : Shape{12, 3, w / 2};
      const Architecture a = resolve_architecture(in, json::parse(std::string(R"([{"type":")") + kind + R"("}])"));
      const Architecture inverse = resolve_architecture(
          a.layers[0].out, json::parse(down ? R"([{"type":"depth_to_space"}])" : R"([{"type":"space_to_depth"}])"));
      const Model m = random_model(a, 1), mi = random_model(inverse, 1);
      const LayerRun r = run_only_layer(a, m, 21);
      EXPECT_EQ(r.y, reference_layer_forward(a.layers[0], m, r.x, 2));
      EXPECT_EQ(r.dx, reference_layer_forward(inverse.layers[0], mi, r.dy, 2));
    }
  }
}

// Upsampling by 2 (a row a vector at a time) copies each value to its 2 x 2 block, as the
// reference does, and its gradient sums each block's four values in the scalar loop's order
// (row by row, left to right, from 0), to the bit; coarse rows of 6, 32 and 35 values.
TEST(GraphLayers, UpsamplingCopiesAndItsGradientSumsWhateverTheRowWidth) {
  for (int w : {6, 32, 35}) {
    SCOPED_TRACE(testing::Message() << "width " << w);
    const Shape in{3, 4, w};
    const Architecture a = resolve_architecture(in, json::parse(R"([{"type":"upsample"}])"));
    const Model m = random_model(a, 1);
    const LayerRun r = run_only_layer(a, m, 23);
    EXPECT_EQ(r.y, reference_layer_forward(a.layers[0], m, r.x, 2));
    const int wo = 2 * w;
    for (int bc = 0; bc < 2 * in.c; ++bc)
      for (int i = 0; i < in.h; ++i)
        for (int j = 0; j < w; ++j) {
          const float* d = r.dy.data() + size_t(bc) * (2 * in.h) * wo + size_t(2 * i) * wo + 2 * j;
          const float want = (((0.0f + d[0]) + d[1]) + d[wo]) + d[wo + 1];
          const float got = r.dx[(size_t(bc) * in.h + i) * w + j];
          ASSERT_EQ(std::memcmp(&got, &want, sizeof(float)), 0) << "dx at " << bc << ", " << i << ", " << j;
        }
  }
}

// The runtime's E(x, sigma) of `m` against the double-precision reference, and its dE/dx against
// the reference's finite differences at every pixel, at each noise level in `sigmas`.
void expect_energy_matches_reference(const Model& m, const std::vector<float>& sigmas) {
  Network net(m);
  ASSERT_TRUE(net.noise_conditional());
  EXPECT_EQ(net.input_shape(), kImage);
  const int n = 2;
  const size_t d = size_t(kImage.size());
  const std::vector<float> x = test::random_inputs(n * d, 5);
  const std::vector<double> xd = test::to_double(x);
  for (float sigma : sigmas) {
    std::vector<float> e(n), g(x.size()), e_only(n);
    net.energy_and_input_grad(x.data(), n, e.data(), g.data(), sigma);
    net.energy(x.data(), n, e_only.data(), sigma);
    const std::vector<double> ref = reference_denoiser_energy(m, xd, n, double(sigma));
    for (int i = 0; i < n; ++i) {
      EXPECT_NEAR(e[size_t(i)], ref[size_t(i)], 1e-5 * (1 + std::abs(ref[size_t(i)]))) << "sigma " << sigma;
      EXPECT_EQ(e[size_t(i)], e_only[size_t(i)]);
    }
    const double h = 1e-5;
    int shown = 0;
    for (size_t k = 0; k < x.size(); ++k) {
      std::vector<double> xp = xd, xm = xd;
      xp[k] += h;
      xm[k] -= h;
      const size_t img = k / d;
      const double fd = (reference_denoiser_energy(m, xp, n, double(sigma))[img] -
                         reference_denoiser_energy(m, xm, n, double(sigma))[img]) / (2 * h);
      if (std::abs(g[k] - fd) > 2e-4 * std::max(1.0, std::abs(fd)) && shown++ < 5)
        ADD_FAILURE() << "sigma " << sigma << ": dE/dx[" << k << "] = " << g[k] << ", finite difference " << fd;
    }
  }
}

TEST(Denoiser, EnergyMatchesTheReferenceAndItsGradientMatchesFiniteDifferencesAtEveryPixel) {
  expect_energy_matches_reference(test::random_denoiser_model(kImage, kSmallUnet, 3), {0.05f, 0.7f, 4.0f});
}

// kSmallUnet, then a refinement of the input summed onto its output up to sigma 1.5 only.
json gated_unet() {
  json layers = kSmallUnet;
  layers.back()["id"] = "trunk";
  for (const char* l : {R"({"type":"conv2d","out_channels":3,"kernel":3,"padding":"same","from":"input"})",
                        R"({"type":"swish"})",
                        R"({"type":"conv2d","out_channels":1,"kernel":3,"padding":"same"})",
                        R"({"type":"add","skip":"trunk","sigma_max":1.5})"})
    layers.push_back(json::parse(l));
  return layers;
}

TEST(GatedAdd, MatchesTheReferenceOnBothSidesOfItsNoiseLevel) {
  expect_energy_matches_reference(test::random_denoiser_model(kImage, gated_unet(), 3),
                                  {0.05f, 1.5f, 1.6f, 4.0f});
}

TEST(GatedAdd, AboveItsNoiseLevelTheBranchIsNotComputedBelowItCounts) {
  const Model m = test::random_denoiser_model(kImage, gated_unet(), 4);
  Model changed = m;  // the refinement's first convolution doubled
  const size_t first = kSmallUnet.size();
  for (Tensor& t : changed.tensors)
    if (t.name == changed.arch.layers[first].tensor("weight")->name)
      for (float& v : t.data) v *= 2.0f;
  Network a(m), b(changed);
  const size_t d = size_t(kImage.size());
  const std::vector<float> x = test::random_inputs(2 * d, 9);
  for (float sigma : {1.0f, 1.5f, 1.51f, 80.0f}) {
    std::vector<float> ea(2), eb(2), ga(2 * d), gb(2 * d);
    a.energy_and_input_grad(x.data(), 2, ea.data(), ga.data(), sigma);
    b.energy_and_input_grad(x.data(), 2, eb.data(), gb.data(), sigma);
    if (sigma > 1.5f) {
      EXPECT_EQ(ea, eb) << "sigma " << sigma << ": the gated branch still counts";
      EXPECT_EQ(ga, gb) << "sigma " << sigma;
    } else {
      EXPECT_NE(ea, eb) << "sigma " << sigma << ": the branch should count at or below its level";
    }
  }
  // The gate survives the file.
  const std::vector<uint8_t> bytes = serialize_model(m, DType::kF32);
  const Model back = parse_model(bytes.data(), bytes.size());
  EXPECT_EQ(back.arch.layers.back().sigma_max, 1.5f);
  EXPECT_EQ(back.arch.layers_json(), m.arch.layers_json());
}

TEST(GatedAdd, BadGatesAreRefusedByName) {
  auto bad = [](const char* gate, std::vector<std::string> words) {
    json layers = gated_unet();
    layers.back()["sigma_max"] = json::parse(gate);
    expect_error([&] { test::random_denoiser_model(kImage, layers, 1); }, words);
  };
  bad("0", {"(add)", "\"sigma_max\"", "> 0"});
  bad("-2", {"(add)", "\"sigma_max\"", "> 0"});
  bad("\"high\"", {"(add)", "\"sigma_max\"", "got \"high\""});
  bad("1e9", {"(add)", "\"sigma_max\""});
  expect_error([] { resolve_architecture({1, 8, 12}, json::parse(R"([{"type":"swish","sigma_max":2}])")); },
               {"layer 0 (swish)", "unknown key \"sigma_max\""});
  // Only a denoiser has a noise level to gate by.
  expect_error(
      [] {
        validate_model(random_model(
            resolve_architecture({1, 4, 4}, json::parse(R"([{"type":"swish","id":"a"},{"type":"swish"},
              {"type":"add","skip":"a","sigma_max":2},{"type":"flatten"},{"type":"dense","out_features":1}])")),
            2));
      },
      {"layer 2 (add)", "sigma_max", "denoiser"});
}

TEST(Denoiser, AnImagesEnergyAndGradientDoNotDependOnTheRestOfTheBatch) {
  Network net(test::random_denoiser_model(kImage, kSmallUnet, 4));
  const size_t d = size_t(kImage.size());
  const std::vector<float> x = test::random_inputs(3 * d, 6);
  std::vector<float> e3(3), g3(3 * d), e1(1), g1(d);
  net.energy_and_input_grad(x.data(), 3, e3.data(), g3.data(), 0.3f);
  net.energy_and_input_grad(x.data() + d, 1, e1.data(), g1.data(), 0.3f);
  EXPECT_EQ(e1[0], e3[1]);
  for (size_t k = 0; k < d; ++k) ASSERT_EQ(g1[k], g3[d + k]) << k;
}

TEST(Denoiser, NoiseLevelIsRequiredAndMustBePositive) {
  Network net(test::random_denoiser_model(kImage, kSmallUnet, 4));
  std::vector<float> x(size_t(kImage.size()), 0.0f), e(1), g(x.size());
  expect_error([&] { net.energy(x.data(), 1, e.data()); }, {"noise-conditional", "sigma > 0"});
  expect_error([&] { net.energy_and_input_grad(x.data(), 1, e.data(), g.data(), -1.0f); }, {"sigma > 0"});
  expect_error([&] { net.energy(x.data(), 1, e.data(), NAN); }, {"sigma > 0"});
}

TEST(DenoiserFile, RoundTripsAsFormat2WhileScalarModelsStayFormat1) {
  const Model m = test::random_denoiser_model(kImage, kSmallUnet, 8, 0.45f);
  const std::vector<uint8_t> bytes = serialize_model(m, DType::kF32);
  const TensorFile f = parse_safetensors(bytes.data(), bytes.size());
  EXPECT_EQ(f.metadata.at("ebm.format"), "2");
  EXPECT_EQ(json::parse(f.metadata.at("ebm.input")), json::parse(R"({"channels":1,"height":8,"width":12})"));
  EXPECT_EQ(json::parse(f.metadata.at("ebm.energy"))["form"], "denoiser");
  const Model r = parse_model(bytes.data(), bytes.size());
  EXPECT_TRUE(r.energy.denoiser);
  EXPECT_FLOAT_EQ(r.energy.sigma_data, 0.45f);
  EXPECT_EQ(r.arch.input, (Shape{2, 8, 12}));
  EXPECT_EQ(r.arch.layers_json(), m.arch.layers_json());
  EXPECT_EQ(r.tensor(kEnergyMeanTensor).data, m.tensor(kEnergyMeanTensor).data);
  std::vector<float> x = test::random_inputs(size_t(kImage.size()), 2), ea(1), eb(1);
  Network(m).energy(x.data(), 1, ea.data(), 0.2f);
  Network(r).energy(x.data(), 1, eb.data(), 0.2f);
  EXPECT_EQ(ea[0], eb[0]);

  const Model scalar = random_model(load_preset(std::string(EBM_TEST_MODELS_DIR) + "/presets/book.json").arch, 1);
  const std::vector<uint8_t> sb = serialize_model(scalar);
  const TensorFile sf = parse_safetensors(sb.data(), sb.size());
  EXPECT_EQ(sf.metadata.at("ebm.format"), "1");
  EXPECT_EQ(sf.metadata.count("ebm.energy"), 0u);
}

// The file `bytes` with `edit` applied to its header and tensors, written again.
std::vector<uint8_t> edited_file(const std::vector<uint8_t>& bytes,
                                 const std::function<void(TensorFile&)>& edit) {
  TensorFile f = parse_safetensors(bytes.data(), bytes.size());
  edit(f);
  return serialize_safetensors(f);
}

void refused(const std::vector<uint8_t>& bytes, std::vector<std::string> words) {
  expect_error([&] { parse_model(bytes.data(), bytes.size()); }, words);
}

TEST(DenoiserFile, EveryInconsistentFileIsRefusedByName) {
  const Model m = test::random_denoiser_model(kImage, kSmallUnet, 8);
  const std::vector<uint8_t> good = serialize_model(m, DType::kF32);
  auto edited = [&](const std::function<void(TensorFile&)>& edit) { return edited_file(good, edit); };
  refused(edited([](TensorFile& f) { f.metadata.erase("ebm.energy"); }), {"ebm.energy", "format 2"});
  refused(edited([](TensorFile& f) { f.metadata["ebm.format"] = "1"; }), {"ebm.energy", "needs format \"2\""});
  refused(edited([](TensorFile& f) { f.metadata["ebm.format"] = "4"; }), {"version \"4\"", "not supported"});
  refused(edited([](TensorFile& f) { f.metadata["ebm.format"] = "3"; }), {"format \"3\"", "ebm.autoguide", "has none"});
  refused(edited([](TensorFile& f) { f.metadata["ebm.energy"] = R"({"form":"scalar"})"; }), {"format \"2\"", "denoiser"});
  refused(edited([](TensorFile& f) { f.metadata["ebm.energy"] = R"({"form":"quadratic"})"; }), {"\"form\"", "denoiser"});
  refused(edited([](TensorFile& f) { f.metadata["ebm.energy"] = R"({"form":"denoiser","sigma_data":0})"; }), {"sigma_data"});
  refused(edited([](TensorFile& f) { f.metadata["ebm.energy"] = R"({"form":"denoiser","noise_plane":1})"; }), {"noise_plane"});
  refused(edited([](TensorFile& f) { f.metadata["ebm.energy"] = R"({"form":"denoiser","skip":true})"; }), {"unknown key \"skip\""});
  refused(edited([](TensorFile& f) { f.metadata["ebm.energy"] = "[]"; }), {"ebm.energy", "JSON object"});
  refused(edited([](TensorFile& f) {
            f.tensors.erase(std::remove_if(f.tensors.begin(), f.tensors.end(),
                                           [](const Tensor& t) { return t.name == kEnergyMeanTensor; }),
                            f.tensors.end());
          }),
          {"energy.mean"});
  Model poisoned = m;
  for (Tensor& t : poisoned.tensors)
    if (t.name == kEnergyMeanTensor) t.data[3] = NAN;
  expect_error([&] { validate_model(poisoned); }, {"energy.mean", "non-finite"});
  // Without the noise plane the layers would read one channel, not the two they were made for.
  refused(edited([](TensorFile& f) { f.metadata["ebm.energy"] = R"({"form":"denoiser","noise_plane":false})"; }),
          {"layer 1 (conv2d)", "\"in_channels\" is 8", "gives 4"});
  // A denoiser must give back the image's shape.
  Model flat = test::random_denoiser_model(kImage, json::parse(R"([{"type":"flatten"},{"type":"dense","out_features":1}])"), 2);
  expect_error([&] { validate_model(flat); }, {"denoiser", "image shape 1x8x12", "1x1x1"});
}

// With F = 0 the energy is |x - mean|^2 / (2 sigma^2): all the data is the mean image, and the
// annealed sampler must end there whatever the noise it started from.
// The samples of `chains` chains from uniform noise on `threads` threads, run in one go or, with
// `slice` > 0, in slices of that many steps (as the page runs it).
std::vector<float> uniform_samples(const Network& net, const SamplerParams& p, uint64_t seed,
                                   int chains, int threads, int slice = 0) {
  LangevinSampler s(net, p, seed, threads);
  s.start_uniform(chains);
  if (slice == 0) s.run();
  while (!s.finished()) s.run(0, {}, slice);
  return s.images();
}

// The noise level each step of one chain walks (the progress after steps 1, 2, ...).
std::vector<float> walked_sigmas(const Network& net, const SamplerParams& p) {
  LangevinSampler s(net, p, 7);
  s.start_uniform(1);
  std::vector<float> sigmas;
  s.run(1, [&](const SamplerProgress& pr) {
    if (pr.step > 0) sigmas.push_back(pr.sigma);
    return true;
  });
  return sigmas;
}

TEST(AnnealedSampler, EndsAtTheOnlyImageAPointMassModelKnows) {
  Model m = test::random_denoiser_model(kImage, kSmallUnet, 9);
  for (Tensor& t : m.tensors)
    if (t.name != kEnergyMeanTensor) std::fill(t.data.begin(), t.data.end(), 0.0f);
  Network net(m);
  SamplerParams p = default_sampler_params(SamplerForm::kAnnealed);
  p.steps = 40;
  p.levels = 10;
  p.sigma_max = 5;
  p.sigma_min = 0.01f;
  LangevinSampler s(net, p, 7);
  s.start_uniform(3);
  s.run();
  ASSERT_TRUE(s.finished());
  const std::vector<float>& mean = m.tensor(kEnergyMeanTensor).data;
  for (int i = 0; i < 3; ++i)
    for (size_t k = 0; k < mean.size(); ++k)
      ASSERT_NEAR(s.images()[size_t(i) * mean.size() + k], std::clamp(mean[k], -1.0f, 1.0f), 1e-4);
}

// The same point-mass model under the ddim form: with eta = 0 the first step already lands on
// the mean (D = mean whatever x), and every later step stays there; with eta = 1 noise is added
// between the levels and the last step still ends on the mean.
TEST(DdimSampler, EndsAtTheOnlyImageAPointMassModelKnowsWithAndWithoutFreshNoise) {
  Model m = test::random_denoiser_model(kImage, kSmallUnet, 9);
  for (Tensor& t : m.tensors)
    if (t.name != kEnergyMeanTensor) std::fill(t.data.begin(), t.data.end(), 0.0f);
  Network net(m);
  const std::vector<float>& mean = m.tensor(kEnergyMeanTensor).data;
  for (float eta : {0.0f, 1.0f}) {
    SamplerParams p = default_sampler_params(SamplerForm::kDdim);
    p.steps = 6;
    p.sigma_max = 5;
    p.sigma_min = 0.05f;
    p.eta = eta;
    LangevinSampler s(net, p, 7);
    s.start_uniform(2);
    std::vector<float> sigmas;
    s.run(1, [&](const SamplerProgress& pr) {
      sigmas.push_back(pr.sigma);
      EXPECT_EQ(pr.levels, 6);
      return true;
    });
    // One level per step, geometric from 5 to 0.05: 5, 2.0, 0.79, 0.32, 0.13, 0.05.
    ASSERT_EQ(sigmas.size(), 7u);
    EXPECT_FLOAT_EQ(sigmas[1], 5.0f);
    EXPECT_NEAR(sigmas[2], 5.0f * std::pow(0.01f, 0.2f), 1e-5);
    EXPECT_FLOAT_EQ(sigmas[6], 0.05f);
    for (size_t k = 0; k < 2 * mean.size(); ++k)
      ASSERT_NEAR(s.images()[k], std::clamp(mean[k % mean.size()], -1.0f, 1.0f), 1e-4) << "eta " << eta;
  }
  // Settings: eta within [0, 1]; the ddim JSON names its own keys.
  expect_error([] { parse_sampler_params(json::parse(R"({"form":"ddim","eta":1.5})")); }, {"eta"});
  const SamplerParams d = parse_sampler_params(json::parse(R"({"form":"ddim","eta":0.5})"));
  EXPECT_EQ(d.form, SamplerForm::kDdim);
  EXPECT_EQ(sampler_params_json(d), json::parse(R"({"form":"ddim","steps":50,"sigma_max":10.0,"sigma_min":0.01,"eta":0.5})"));
}

// rho spaces the levels evenly in sigma^(1/rho) (Karras et al. 2022) instead of log sigma: the
// same ends, smaller steps at the top, bigger ones at the bottom; both walked forms; JSON and
// validation. A geometric model file's JSON has no "rho" (format-1 files stay as they were).
TEST(DdimSampler, RhoSpacesTheLevelsEvenlyInSigmaToTheOneOverRho) {
  Network net(test::random_denoiser_model(kImage, kSmallUnet, 13));
  const auto walk = [&](const SamplerParams& p) { return walked_sigmas(net, p); };
  SamplerParams p = default_sampler_params(SamplerForm::kDdim);
  p.steps = 5;
  p.sigma_max = 81;
  p.sigma_min = 1;
  p.rho = 2;
  // sqrt(sigma) evenly from 9 to 1: 9, 7, 5, 3, 1; sigma = 81, 49, 25, 9, 1.
  std::vector<float> sigmas = walk(p);
  ASSERT_EQ(sigmas.size(), 5u);
  const float want[] = {81, 49, 25, 9, 1};
  for (int k = 0; k < 5; ++k) EXPECT_NEAR(sigmas[size_t(k)], want[k], 1e-4f * want[k]) << k;
  EXPECT_EQ(sigmas[0], 81.0f);
  EXPECT_EQ(sigmas[4], 1.0f);
  // A large rho approaches the geometric spacing (81, 27, 9, 3, 1): the middle level is 25 at
  // rho = 2, 9.22 at rho = 100.
  p.rho = 100;
  sigmas = walk(p);
  EXPECT_NEAR(sigmas[2], 9.0f, 0.25f);
  p.rho = 0;
  sigmas = walk(p);
  EXPECT_NEAR(sigmas[2], 9.0f, 1e-4f);
  // The annealed form walks the same levels.
  SamplerParams a = default_sampler_params(SamplerForm::kAnnealed);
  a.steps = 6;
  a.levels = 5;
  a.sigma_max = 81;
  a.sigma_min = 1;
  a.rho = 2;
  sigmas = walk(a);
  EXPECT_NEAR(sigmas[1], 49.0f, 1e-3f);
  // Same seed, same samples; another spacing, other samples.
  p.rho = 3;
  const std::vector<float> spaced = uniform_samples(net, p, 3, 3, 1);
  EXPECT_EQ(spaced, uniform_samples(net, p, 3, 3, 2, 2));
  p.rho = 0;
  EXPECT_NE(spaced, uniform_samples(net, p, 3, 3, 1));
  // JSON: written only when set, read back, refused between 0 and 1 and above 100.
  const SamplerParams d = parse_sampler_params(json::parse(R"({"form":"ddim","rho":7})"));
  EXPECT_EQ(d.rho, 7.0f);
  EXPECT_EQ(sampler_params_json(d)["rho"], 7.0);
  EXPECT_EQ(parse_sampler_params(sampler_params_json(d)).rho, 7.0f);
  EXPECT_EQ(sampler_params_json(default_sampler_params(SamplerForm::kDdim)).count("rho"), 0u);
  EXPECT_EQ(sampler_params_json(parse_sampler_params(json::parse(R"({"form":"annealed","rho":3})")))["rho"], 3.0);
  expect_error([] { parse_sampler_params(json::parse(R"({"form":"ddim","rho":0.5})")); },
               {"rho", "0 (noise levels geometric) or from 1 to 100"});
  expect_error([] { parse_sampler_params(json::parse(R"({"form":"ddim","rho":101})")); }, {"rho"});
  expect_error([] { parse_sampler_params(json::parse(R"({"form":"ddim","rho":"7"})")); }, {"rho"});
}

// A schedule in two pieces: split_levels levels from sigma_max down to split_sigma (not
// included), the rest from split_sigma down to sigma_min, each spaced as rho says; both walked
// forms; JSON written only when set; every misfit refused by name, here and by the sampler.
TEST(DdimSampler, SplitScheduleWalksTwoEvenPiecesMeetingAtSplitSigma) {
  Network net(test::random_denoiser_model(kImage, kSmallUnet, 14));
  const auto walk = [&](const SamplerParams& p) { return walked_sigmas(net, p); };
  SamplerParams p = default_sampler_params(SamplerForm::kDdim);
  p.steps = 6;
  p.sigma_max = 400;
  p.sigma_min = 1;
  p.rho = 2;
  p.split_sigma = 16;
  p.split_levels = 2;
  // Above: sqrt(sigma) from 20 toward 4 in halves: 20, 12 (400, 144). Below: 4 to 1 in thirds:
  // 4, 3, 2, 1 (16, 9, 4, 1).
  const std::vector<float> want = {400, 144, 16, 9, 4, 1};
  std::vector<float> sigmas = walk(p);
  ASSERT_EQ(sigmas.size(), want.size());
  for (size_t k = 0; k < want.size(); ++k) EXPECT_NEAR(sigmas[k], want[k], 1e-4f * want[k]) << k;
  EXPECT_EQ(sigmas[0], 400.0f);
  EXPECT_EQ(sigmas[2], 16.0f);
  EXPECT_EQ(sigmas[5], 1.0f);
  // Geometric pieces: 400, 80 (halfway in log from 400 to 16), then 16, 4, 1 over 5 levels.
  p.rho = 0;
  p.steps = 5;
  sigmas = walk(p);
  ASSERT_EQ(sigmas.size(), 5u);
  EXPECT_NEAR(sigmas[1], 80.0f, 1e-3f);
  EXPECT_NEAR(sigmas[3], 4.0f, 1e-4f);
  // The annealed form walks the same levels (its last step stays at sigma_min).
  SamplerParams a = default_sampler_params(SamplerForm::kAnnealed);
  a.steps = 12;
  a.levels = 6;
  a.sigma_max = 400;
  a.sigma_min = 1;
  a.rho = 2;
  a.split_sigma = 16;
  a.split_levels = 2;
  sigmas = walk(a);
  // Step k + 1 walks level k * 6 / 11: levels 0, 0, 1, 1, 2, 2, 3, ... (400, 144, 16, 9, ...).
  ASSERT_EQ(sigmas.size(), 12u);
  EXPECT_NEAR(sigmas[0], 400.0f, 1e-3f);
  EXPECT_NEAR(sigmas[2], 144.0f, 1e-3f);
  EXPECT_NEAR(sigmas[4], 16.0f, 1e-4f);
  EXPECT_NEAR(sigmas[6], 9.0f, 1e-4f);
  // Same seed, same samples whatever the threads; the split changes them.
  p.rho = 3;
  const std::vector<float> split = uniform_samples(net, p, 3, 3, 1);
  EXPECT_EQ(split, uniform_samples(net, p, 3, 3, 2, 2));
  p.split_sigma = 0;
  EXPECT_NE(split, uniform_samples(net, p, 3, 3, 1));
  // JSON: written only when on, read back.
  const SamplerParams d = parse_sampler_params(
      json::parse(R"({"form":"ddim","steps":18,"sigma_max":160,"sigma_min":0.02,"split_sigma":20,"split_levels":3})"));
  EXPECT_EQ(d.split_sigma, 20.0f);
  EXPECT_EQ(d.split_levels, 3);
  EXPECT_EQ(sampler_params_json(d)["split_sigma"], 20.0);
  EXPECT_EQ(sampler_params_json(d)["split_levels"], 3);
  EXPECT_EQ(parse_sampler_params(sampler_params_json(d)).split_levels, 3);
  EXPECT_EQ(sampler_params_json(default_sampler_params(SamplerForm::kDdim)).count("split_sigma"), 0u);
  // Misfits, named.
  const auto bad = [](const char* j) { parse_sampler_params(json::parse(j)); };
  expect_error([&] { bad(R"({"form":"ddim","sigma_max":10,"sigma_min":1,"split_sigma":10,"split_levels":1})"); },
               {"split_sigma", "strictly between", "sigma_min", "sigma_max"});
  expect_error([&] { bad(R"({"form":"ddim","sigma_max":10,"sigma_min":1,"split_sigma":0.5,"split_levels":1})"); },
               {"split_sigma"});
  expect_error([&] { bad(R"({"form":"ddim","steps":5,"sigma_max":10,"sigma_min":1,"split_sigma":5})"); },
               {"split_levels", "at least 1"});
  expect_error([&] { bad(R"({"form":"ddim","steps":5,"sigma_max":10,"sigma_min":1,"split_sigma":5,"split_levels":4})"); },
               {"split_levels", "use 1 to 3"});
  expect_error([&] { bad(R"({"form":"annealed","levels":3,"sigma_max":10,"sigma_min":1,"split_sigma":5,"split_levels":2})"); },
               {"split_levels", "levels"});
  expect_error([&] { bad(R"({"form":"ddim","split_levels":1.5})"); }, {"split_levels", "integer"});
  expect_error([&] { bad(R"({"form":"ddim","split_sigma":"5"})"); }, {"split_sigma"});
  SamplerParams direct = p;
  direct.split_sigma = 5;
  direct.split_levels = 9;
  expect_error([&] { LangevinSampler s(net, direct, 1); }, {"split_levels"});
}

TEST(DdimSampler, SameSeedSameSamplesWhateverTheThreadsAndNeedsANoiseConditionalModel) {
  Network net(test::random_denoiser_model(kImage, kSmallUnet, 12));
  SamplerParams p = default_sampler_params(SamplerForm::kDdim);
  p.steps = 8;
  p.eta = 0.5f;
  EXPECT_EQ(uniform_samples(net, p, 3, 5, 1), uniform_samples(net, p, 3, 5, 2, 3));
  Network scalar(random_model(load_preset(std::string(EBM_TEST_MODELS_DIR) + "/presets/book.json").arch, 1));
  expect_error([&] { LangevinSampler(scalar, p, 1); }, {"ddim", "noise-conditional"});
}

TEST(AnnealedSampler, SameSeedSameSamplesWhateverTheThreadsAndSlices) {
  Network net(test::random_denoiser_model(kImage, kSmallUnet, 10));
  SamplerParams p = default_sampler_params(SamplerForm::kAnnealed);
  p.steps = 12;
  p.levels = 4;
  const std::vector<float> one = uniform_samples(net, p, 3, 5, 1);
  EXPECT_EQ(one, uniform_samples(net, p, 3, 5, 2, 5));  // in slices, as the page runs it
  EXPECT_NE(one, uniform_samples(net, p, 4, 5, 1));
}

TEST(AnnealedSampler, WalksTheLevelsDownwardAndReportsThem) {
  Network net(test::random_denoiser_model(kImage, kSmallUnet, 11));
  SamplerParams p = default_sampler_params(SamplerForm::kAnnealed);
  p.steps = 9;
  p.levels = 4;
  p.sigma_max = 8;
  p.sigma_min = 0.125f;
  LangevinSampler s(net, p, 1);
  s.start_uniform(1);
  std::vector<float> sigmas;
  std::vector<int> levels;
  s.run(1, [&](const SamplerProgress& pr) {
    sigmas.push_back(pr.sigma);
    levels.push_back(pr.level);
    EXPECT_EQ(pr.levels, 4);
    return true;
  });
  // Start at sigma_max; 8 walking steps, two per level (8, 2, 0.5, 0.125); the last step denoises
  // at sigma_min.
  EXPECT_EQ(levels, (std::vector<int>{0, 0, 0, 1, 1, 2, 2, 3, 3, 3}));
  ASSERT_EQ(sigmas.size(), 10u);
  EXPECT_FLOAT_EQ(sigmas[0], 8.0f);
  EXPECT_FLOAT_EQ(sigmas[3], 2.0f);
  EXPECT_FLOAT_EQ(sigmas[5], 0.5f);
  EXPECT_FLOAT_EQ(sigmas[9], 0.125f);
}

TEST(AnnealedSampler, NeedsANoiseConditionalModelAndRefusesBadSettings) {
  const Model scalar = random_model(load_preset(std::string(EBM_TEST_MODELS_DIR) + "/presets/book.json").arch, 1);
  Network net(scalar);
  expect_error([&] { LangevinSampler(net, default_sampler_params(SamplerForm::kAnnealed), 1); },
               {"annealed", "noise-conditional"});
  expect_error([] { parse_sampler_params(json::parse(R"({"form":"annealed","sigma_min":2,"sigma_max":1})")); },
               {"sigma_min", "sigma_max"});
  expect_error([] { parse_sampler_params(json::parse(R"({"levels":0})")); }, {"levels", "1 to 10000"});
  expect_error([] { parse_sampler_params(json::parse(R"({"sigma_max":-1})")); }, {"sigma_max"});
  // A change to the annealed form starts from its own defaults, and its JSON names its settings.
  const SamplerParams a = parse_sampler_params(json::parse(R"({"form":"annealed"})"));
  EXPECT_EQ(a.steps, default_sampler_params(SamplerForm::kAnnealed).steps);
  EXPECT_EQ(sampler_params_json(a).count("levels"), 1u);
  EXPECT_EQ(sampler_params_json(SamplerParams{}).count("levels"), 0u);
}

// --- inpainting and variations (issue 15) -------------------------------------------------------

// The left half of each image is kept, the right half regenerated.
std::vector<float> left_half_mask() {
  std::vector<float> mask(size_t(kImage.size()), 0.0f);
  for (int y = 0; y < kImage.h; ++y)
    for (int x = 0; x < kImage.w / 2; ++x) mask[size_t(y * kImage.w + x)] = 1.0f;
  return mask;
}

Model point_mass_model(uint64_t seed) {
  Model m = test::random_denoiser_model(kImage, kSmallUnet, seed);
  for (Tensor& t : m.tensors)
    if (t.name != kEnergyMeanTensor) std::fill(t.data.begin(), t.data.end(), 0.0f);
  return m;
}

// With the point-mass model every free pixel ends on the mean; every kept pixel ends on the kept
// image exactly, under both noise-level forms; and while the chains walk down, the kept pixels
// hold the kept image plus noise of the level the chains stand at.
TEST(Inpainting, KeptPixelsEndBitForBitOnTheImageAndTheRestIsCompletedByTheModel) {
  const Model m = point_mass_model(9);
  Network net(m);
  const std::vector<float>& mean = m.tensor(kEnergyMeanTensor).data;
  const std::vector<float> keep = test::random_inputs(kImage.size(), 5, -1.0f, 1.0f);
  const std::vector<float> mask = left_half_mask();
  for (SamplerForm form : {SamplerForm::kDdim, SamplerForm::kAnnealed}) {
    SamplerParams p = default_sampler_params(form);
    p.steps = form == SamplerForm::kDdim ? 6 : 24;
    p.levels = 6;
    p.sigma_max = 5;
    p.sigma_min = 0.05f;
    LangevinSampler s(net, p, 7);
    s.set_keep(keep, mask);
    s.start_uniform(40);
    // At the start the kept pixels are the image plus N(0, sigma_max^2) (40 chains x 48 pixels).
    double sum2 = 0;
    int n = 0;
    for (int i = 0; i < 40; ++i)
      for (size_t k = 0; k < mask.size(); ++k)
        if (mask[k] > 0.5f) {
          const double r = s.images()[size_t(i) * mask.size() + k] - keep[k];
          sum2 += r * r;
          ++n;
        }
    EXPECT_NEAR(std::sqrt(sum2 / n), 5.0, 0.25) << sampler_form_name(form);
    s.run();
    ASSERT_TRUE(s.finished());
    for (int i = 0; i < 40; ++i)
      for (size_t k = 0; k < mask.size(); ++k) {
        const float v = s.images()[size_t(i) * mask.size() + k];
        if (mask[k] > 0.5f)
          ASSERT_EQ(v, keep[k]) << sampler_form_name(form) << " chain " << i << " pixel " << k;
        else
          ASSERT_NEAR(v, std::clamp(mean[k], -1.0f, 1.0f), 1e-4) << sampler_form_name(form);
      }
  }
}

// The preview a page shows while the chains walk down: after every step each chain's denoised
// estimate clip(x - sigma^2 dE/dx) of the state that step started from (the kept pixels: the kept
// image); at the end it is the sample itself, bit for bit. Before the first step there is none.
// The energies likewise: each step reports E of the state it started from at its level; the start
// computes none (NaN), since the first step does.
TEST(Denoised, EveryStepReportsTheDenoisedEstimateAndTheLastIsTheSample) {
  Network net(test::random_denoiser_model(kImage, kSmallUnet, 4));
  const std::vector<float> keep = test::random_inputs(kImage.size(), 6, -1.0f, 1.0f);
  const size_t d = size_t(kImage.size());
  for (SamplerForm form : {SamplerForm::kDdim, SamplerForm::kAnnealed}) {
    for (bool inpaint : {false, true}) {
      SamplerParams p = default_sampler_params(form);
      p.steps = form == SamplerForm::kDdim ? 5 : 10;
      p.levels = 5;
      LangevinSampler s(net, p, 3);
      if (inpaint) s.set_keep(keep, left_half_mask());
      s.start_uniform(3);
      std::vector<float> before = s.images();
      int checked = 0;
      std::vector<float> last;
      while (!s.finished()) {
        s.run(1, [&](const SamplerProgress& pr) {
          if (pr.step == s.steps_done() && pr.step == 0) {
            EXPECT_EQ(pr.denoised, nullptr);
            for (int i = 0; i < 3; ++i) EXPECT_TRUE(std::isnan(pr.energies[i])) << pr.energies[i];
            return true;
          }
          if (pr.step == 0 || pr.denoised == nullptr) {
            ADD_FAILURE() << "no denoised estimate after step " << pr.step;
            return true;
          }
          std::vector<float> e(3), g(before.size());
          s.gradient(before.data(), 3, pr.sigma, e.data(), g.data());
          for (size_t k = 0; k < before.size(); ++k) {
            const bool kept = inpaint && left_half_mask()[k % d] > 0.5f;
            const float want = kept ? keep[k % d]
                                    : std::clamp(before[k] - pr.sigma * pr.sigma * g[k], -1.0f, 1.0f);
            EXPECT_NEAR(pr.denoised[k], want, 1e-5f * (1 + std::abs(want)))
                << sampler_form_name(form) << " step " << pr.step << " pixel " << k;
          }
          for (int i = 0; i < 3; ++i)
            EXPECT_NEAR(pr.energies[i], e[size_t(i)], 1e-5f * (1 + std::abs(e[size_t(i)])))
                << sampler_form_name(form) << " step " << pr.step << " chain " << i;
          ++checked;
          last.assign(pr.denoised, pr.denoised + before.size());
          return true;
        }, 1);
        before = s.images();
      }
      EXPECT_EQ(checked, p.steps) << sampler_form_name(form);
      ASSERT_EQ(last.size(), before.size());
      EXPECT_EQ(last, s.images()) << sampler_form_name(form) << (inpaint ? " inpainting" : "");
    }
  }
}

// One kept image per chain, bit for bit the same samples whatever the threads, and a kept image
// changes what the free pixels become under a model that is not a point mass.
TEST(Inpainting, OneImagePerChainSameSeedSameSamplesAndTheKeptPartShapesTheRest) {
  Network net(test::random_denoiser_model(kImage, kSmallUnet, 12));
  SamplerParams p = default_sampler_params(SamplerForm::kDdim);
  p.steps = 8;
  p.eta = 0.5f;
  const std::vector<float> keep = test::random_inputs(3 * kImage.size(), 6, -1.0f, 1.0f);
  LangevinSampler one(net, p, 3, 1), two(net, p, 3, 2), free(net, p, 3, 1);
  one.set_keep(keep, left_half_mask());
  two.set_keep(keep, left_half_mask());
  one.start_uniform(3);
  two.start_uniform(3);
  free.start_uniform(3);
  one.run();
  while (!two.finished()) two.run(0, {}, 3);
  free.run();
  EXPECT_EQ(one.images(), two.images());
  const std::vector<float> mask = left_half_mask();
  double moved = 0;
  for (int i = 0; i < 3; ++i)
    for (size_t k = 0; k < mask.size(); ++k) {
      const size_t at = size_t(i) * mask.size() + k;
      if (mask[k] > 0.5f) ASSERT_EQ(one.images()[at], keep[at]);
      else moved += std::abs(one.images()[at] - free.images()[at]);
    }
  EXPECT_GT(moved, 0.0);
  // Cleared, the sampler draws the free samples again.
  one.clear_keep();
  EXPECT_FALSE(one.keeps());
  one.start_uniform(3);
  one.run();
  EXPECT_EQ(one.images(), free.images());
}

// Resampling (RePaint) repeats each level's step with a jump back up in between: the point-mass
// model still ends on the mean with the kept pixels exact, the threads still do not matter, the
// rounds change the path, and the setting is validated and written only where it is not 1.
TEST(Inpainting, ResamplingRepeatsEachLevelAndKeepsEveryGuarantee) {
  const Model m = point_mass_model(9);
  Network point(m);
  const std::vector<float>& mean = m.tensor(kEnergyMeanTensor).data;
  const std::vector<float> keep = test::random_inputs(kImage.size(), 5, -1.0f, 1.0f);
  SamplerParams p = parse_sampler_params(json::parse(R"({"form":"ddim","steps":6,"eta":0.5,"resample":3})"));
  EXPECT_EQ(p.resample, 3);
  EXPECT_EQ(sampler_params_json(p)["resample"], 3);
  EXPECT_EQ(sampler_params_json(default_sampler_params(SamplerForm::kDdim)).count("resample"), 0u);
  expect_error([] { parse_sampler_params(json::parse(R"({"form":"ddim","resample":0})")); },
               {"resample", "1 (no resampling) to 100"});
  LangevinSampler s(point, p, 7);
  s.set_keep(keep, left_half_mask());
  s.start_uniform(2);
  s.run();
  const std::vector<float> mask = left_half_mask();
  for (size_t k = 0; k < 2 * keep.size(); ++k) {
    const size_t at = k % keep.size();
    if (mask[at] > 0.5f) {
      ASSERT_EQ(s.images()[k], keep[at]);
    } else {
      ASSERT_NEAR(s.images()[k], std::clamp(mean[at], -1.0f, 1.0f), 1e-4);
    }
  }
  Network net(test::random_denoiser_model(kImage, kSmallUnet, 12));
  LangevinSampler one(net, p, 3, 1), two(net, p, 3, 2);
  SamplerParams plain = p;
  plain.resample = 1;
  LangevinSampler once(net, plain, 3, 1);
  for (LangevinSampler* x : {&one, &two, &once}) {
    x->set_keep(keep, left_half_mask());
    x->start_uniform(3);
  }
  one.run();
  while (!two.finished()) two.run(0, {}, 2);
  once.run();
  EXPECT_EQ(one.images(), two.images());
  EXPECT_NE(one.images(), once.images());
}

// Rounds only up to a noise level (resample_sigma_max): from fresh noise, a restart of the
// small-noise end. A limit above every level is resampling everywhere, one below every level
// that takes a step is none, each bit for bit; one in between is neither; the threads do not
// matter; the setting is validated and written only where it acts.
TEST(Resampling, UpToANoiseLevelRepeatsOnlyTheLevelsAtOrBelowIt) {
  Network net(test::random_denoiser_model(kImage, kSmallUnet, 12));
  SamplerParams p = parse_sampler_params(json::parse(
      R"({"form":"ddim","steps":8,"sigma_max":20,"sigma_min":0.05,"resample":2,"resample_sigma_max":1})"));
  EXPECT_EQ(p.resample_sigma_max, 1.0f);
  EXPECT_EQ(sampler_params_json(p)["resample_sigma_max"], 1.0);
  SamplerParams one_round = p;
  one_round.resample = 1;
  EXPECT_EQ(sampler_params_json(one_round).count("resample_sigma_max"), 0u);
  expect_error([] { parse_sampler_params(json::parse(R"({"form":"ddim","resample_sigma_max":-1})")); },
               {"resample_sigma_max"});
  const auto run = [&](float limit, int resample, int threads) {
    SamplerParams q = p;
    q.resample_sigma_max = limit;
    q.resample = resample;
    LangevinSampler s(net, q, 5, threads);
    s.start_uniform(3);
    s.run();
    return s.images();
  };
  const std::vector<float> middle = run(1.0f, 2, 1);
  // The levels: 20, 8.5, 3.6, 1.5, 0.65, 0.28, 0.12, 0.05 (geometric); 1 lies between the 4th and 5th.
  EXPECT_EQ(run(20.0f, 2, 1), run(0.0f, 2, 1));     // every level
  EXPECT_EQ(run(0.06f, 2, 1), run(0.0f, 1, 1));     // only the last level, which takes no step
  EXPECT_NE(middle, run(0.0f, 2, 1));
  EXPECT_NE(middle, run(0.0f, 1, 1));
  EXPECT_EQ(middle, run(1.0f, 2, 2));
}

TEST(Inpainting, BadKeepsAreRefusedByName) {
  Network net(test::random_denoiser_model(kImage, kSmallUnet, 12));
  LangevinSampler s(net, default_sampler_params(SamplerForm::kDdim), 3);
  const std::vector<float> img(size_t(kImage.size()), 0.5f);
  expect_error([&] { s.set_keep(img, std::vector<float>(5, 1.0f)); }, {"mask", "5 pixels", "96"});
  expect_error([&] { s.set_keep(std::vector<float>(100, 0.0f), left_half_mask()); }, {"100 values", "96"});
  std::vector<float> nan_img = img;
  nan_img[3] = NAN;
  expect_error([&] { s.set_keep(nan_img, left_half_mask()); }, {"kept image", "non-finite"});
  std::vector<float> nan_mask = left_half_mask();
  nan_mask[0] = NAN;
  expect_error([&] { s.set_keep(img, nan_mask); }, {"mask", "non-finite"});
  std::vector<float> two(2 * img.size(), 0.0f);
  s.set_keep(two, left_half_mask());
  expect_error([&] { s.start_uniform(3); }, {"2 images for 3 chains"});
  s.start_uniform(2);  // one per chain is fine
  // A mask that keeps nothing keeps nothing.
  s.set_keep(img, std::vector<float>(img.size(), 0.0f));
  EXPECT_FALSE(s.keeps());
}

// Strength is the share of the walk still to run: the chains start at the level (1 - strength)
// of the way down, from the image plus that level's noise, and run the remaining steps; strength
// 0 leaves only the final denoising step.
TEST(Variation, StartsPartWayDownTheLevelsFromTheNoisedImage) {
  const Model m = point_mass_model(9);
  Network net(m);
  const std::vector<float>& mean = m.tensor(kEnergyMeanTensor).data;
  SamplerParams p = default_sampler_params(SamplerForm::kDdim);
  p.steps = 11;
  p.sigma_max = 10;
  p.sigma_min = 0.01f;  // levels 10, 5.0, 2.5, ... one octave apart
  const int count = 30;
  std::vector<float> image = test::random_inputs(kImage.size(), 8, -1.0f, 1.0f);
  std::vector<float> images;
  for (int i = 0; i < count; ++i) images.insert(images.end(), image.begin(), image.end());
  for (float strength : {0.0f, 0.3f, 1.0f}) {
    LangevinSampler s(net, p, 5);
    s.start_variation(images.data(), count, strength);
    const int level = int(std::lround((1.0 - strength) * 10));
    const float sigma = 10.0f * std::pow(0.001f, float(level) / 10.0f);
    std::vector<int> steps;
    float first_sigma = 0;
    int first_level = -1;
    double rms = 0;
    s.run(1, [&](const SamplerProgress& pr) {
      if (steps.empty()) {
        first_sigma = pr.sigma;
        first_level = pr.level;
        for (size_t k = 0; k < images.size(); ++k) rms += std::pow(pr.images[k] - images[k], 2.0);
        rms = std::sqrt(rms / double(images.size()));
      }
      steps.push_back(pr.step);
      return true;
    });
    EXPECT_EQ(steps.front(), level) << strength;
    EXPECT_EQ(steps.back(), 11) << strength;
    EXPECT_EQ(int(steps.size()), 11 - level + 1) << strength;
    EXPECT_EQ(first_level, level);
    EXPECT_NEAR(first_sigma, sigma, 1e-4 * sigma);
    EXPECT_NEAR(rms, sigma, 0.1 * sigma) << strength;
    for (size_t k = 0; k < s.images().size(); ++k)
      ASSERT_NEAR(s.images()[k], std::clamp(mean[k % mean.size()], -1.0f, 1.0f), 1e-4);
  }
  // The annealed form starts at the first step of that level.
  SamplerParams a = default_sampler_params(SamplerForm::kAnnealed);
  a.steps = 9;
  a.levels = 4;
  LangevinSampler s(net, a, 5);
  s.start_variation(images.data(), 1, 0.5f);  // level round(0.5 * 3) = 2: steps 4 and 5, then 6, 7, 8
  EXPECT_EQ(s.steps_done(), 4);
  expect_error([&] { s.start_variation(images.data(), 1, 1.5f); }, {"strength", "outside [0, 1]"});
  std::vector<float> bad = image;
  bad[2] = INFINITY;
  expect_error([&] { s.start_variation(bad.data(), 1, 0.5f); }, {"non-finite"});
}

TEST(Variation, SameSeedSameSamplesWhateverTheThreadsAndTheStrengthMatters) {
  Network net(test::random_denoiser_model(kImage, kSmallUnet, 13));
  SamplerParams p = default_sampler_params(SamplerForm::kDdim);
  p.steps = 10;
  const std::vector<float> images = test::random_inputs(4 * kImage.size(), 9, -1.0f, 1.0f);
  LangevinSampler one(net, p, 3, 1), two(net, p, 3, 2), stronger(net, p, 3, 1);
  one.start_variation(images.data(), 4, 0.4f);
  two.start_variation(images.data(), 4, 0.4f);
  stronger.start_variation(images.data(), 4, 0.8f);
  one.run();
  while (!two.finished()) two.run(0, {}, 2);
  stronger.run();
  EXPECT_EQ(one.images(), two.images());
  EXPECT_NE(one.images(), stronger.images());
}

// Autoguidance (SamplerParams::autoguide): a denoiser that carries a weaker one (format 3).

// A smaller denoiser over the same images: the weaker network.
const json kTinyUnet = json::parse(R"([
  {"type":"space_to_depth","factor":2},
  {"type":"conv2d","out_channels":3,"kernel":3,"padding":"same"},
  {"type":"swish"},
  {"type":"conv2d","out_channels":4,"kernel":3,"padding":"same"},
  {"type":"depth_to_space","factor":2}
])");

Model autoguided_model(float w, float sigma_max = 0) {
  Model m = test::random_denoiser_model(kImage, kSmallUnet, 21);
  m.autoguide = std::make_shared<const Model>(test::random_denoiser_model(kImage, kTinyUnet, 22, 0.5f));
  m.sampler = default_sampler_params(SamplerForm::kDdim);
  m.sampler.steps = 12;
  m.sampler.autoguide = w;
  m.sampler.autoguide_sigma_max = sigma_max;
  return m;
}

TEST(AutoguideFile, RoundTripsAsFormat3WithTheWeakerNetworkUnderItsPrefix) {
  const Model m = autoguided_model(2.5f, 3.0f);
  const std::vector<uint8_t> bytes = serialize_model(m, DType::kF32);
  const TensorFile f = parse_safetensors(bytes.data(), bytes.size());
  EXPECT_EQ(f.metadata.at("ebm.format"), "3");
  const json ag = json::parse(f.metadata.at("ebm.autoguide"));
  EXPECT_EQ(ag["layers"], m.autoguide->arch.layers_json());
  EXPECT_EQ(ag["energy"]["sigma_data"], 0.5);
  size_t prefixed = 0;
  for (const Tensor& t : f.tensors) prefixed += t.name.rfind(kAutoguidePrefix, 0) == 0;
  EXPECT_EQ(prefixed, m.autoguide->tensors.size());
  EXPECT_EQ(f.tensors.size(), m.tensors.size() + prefixed);

  const Model r = parse_model(bytes.data(), bytes.size());
  ASSERT_TRUE(r.autoguide);
  EXPECT_FLOAT_EQ(r.sampler.autoguide, 2.5f);
  EXPECT_FLOAT_EQ(r.sampler.autoguide_sigma_max, 3.0f);
  EXPECT_EQ(r.autoguide->arch.layers_json(), m.autoguide->arch.layers_json());
  for (const Tensor& t : m.autoguide->tensors) EXPECT_EQ(r.autoguide->tensor(t.name).data, t.data) << t.name;
  EXPECT_EQ(r.describe()["autoguide"]["parameters"], m.autoguide->arch.parameter_count());
  EXPECT_EQ(r.describe()["sampler"]["autoguide"], 2.5);
  const Network net(r);
  ASSERT_NE(net.autoguide(), nullptr);
  std::vector<float> x = test::random_inputs(size_t(kImage.size()), 2), ea(1), eb(1);
  Network::Workspace ws;
  net.autoguide()->energy(ws, x.data(), 1, ea.data(), 0.2f);
  Network(*m.autoguide).energy(x.data(), 1, eb.data(), 0.2f);
  EXPECT_EQ(ea[0], eb[0]);
  // Without autoguidance in its settings the sampler JSON stays as every other file's.
  EXPECT_FALSE(sampler_params_json(default_sampler_params(SamplerForm::kDdim)).contains("autoguide"));
}

TEST(AutoguideFile, EveryInconsistentFileIsRefusedByName) {
  const Model m = autoguided_model(2.0f);
  const std::vector<uint8_t> good = serialize_model(m, DType::kF32);
  auto edited = [&](const std::function<void(TensorFile&)>& edit) { return edited_file(good, edit); };
  refused(edited([](TensorFile& f) { f.metadata["ebm.format"] = "2"; }), {"ebm.autoguide", "needs format \"3\""});
  refused(edited([](TensorFile& f) { f.metadata["ebm.autoguide"] = "[1]"; }), {"ebm.autoguide", "JSON object"});
  refused(edited([](TensorFile& f) {
            json j = json::parse(f.metadata["ebm.autoguide"]);
            j["weight"] = 2;
            f.metadata["ebm.autoguide"] = j.dump();
          }),
          {"ebm.autoguide", "unknown key \"weight\""});
  refused(edited([](TensorFile& f) {
            json j = json::parse(f.metadata["ebm.autoguide"]);
            j["energy"] = {{"form", "scalar"}};
            f.metadata["ebm.autoguide"] = j.dump();
          }),
          {"autoguidance network", "denoiser energy"});
  refused(edited([](TensorFile& f) {
            f.tensors.erase(std::remove_if(f.tensors.begin(), f.tensors.end(),
                                           [](const Tensor& t) { return t.name == "autoguide.layers.1.weight"; }),
                            f.tensors.end());
          }),
          {"autoguidance network", "layers.1.weight"});
  // A tensor under the prefix that the weaker network does not use.
  refused(edited([](TensorFile& f) {
            Tensor t = f.tensors.back();
            t.name = "autoguide.stray";
            f.tensors.push_back(t);
          }),
          {"autoguidance network", "stray", "not used"});
  // Settings that ask for autoguidance need the network, and the network the same images.
  Model alone = test::random_denoiser_model(kImage, kSmallUnet, 21);
  alone.sampler = m.sampler;
  expect_error([&] { validate_model(alone); }, {"\"autoguide\"", "carries none"});
  Model other = m;
  other.autoguide = std::make_shared<const Model>(test::random_denoiser_model(Shape{1, 8, 8}, kTinyUnet, 22));
  expect_error([&] { validate_model(other); }, {"autoguidance network takes 1x8x8", "1x8x12"});
  expect_error([&] { (void)parse_sampler_params(json{{"autoguide", -1}}); }, {"\"autoguide\""});
  expect_error([&] { (void)parse_sampler_params(json{{"autoguide", 21}}); }, {"\"autoguide\""});
  expect_error([&] { (void)parse_sampler_params(json{{"autoguide_sigma_max", -1}}); }, {"autoguide_sigma_max"});
}

TEST(Autoguidance, StepsFollowTheGradientOfTheComposedEnergy) {
  const float w = 2.5f;
  const Model m = autoguided_model(w, 3.0f);
  Network net(m);
  LangevinSampler s(net, m.sampler, 1);
  const int n = 2;
  const size_t d = size_t(kImage.size());
  const std::vector<float> x = test::random_inputs(n * d, 7);
  const std::vector<double> xd = test::to_double(x);
  Network alone(*m.autoguide);
  for (float sigma : {0.1f, 1.5f, 6.0f}) {
    std::vector<float> e(n), g(x.size()), e1(n), g1(x.size()), e0(n), g0(x.size());
    s.gradient(x.data(), n, sigma, e.data(), g.data());
    net.energy_and_input_grad(x.data(), n, e1.data(), g1.data(), sigma);
    alone.energy_and_input_grad(x.data(), n, e0.data(), g0.data(), sigma);
    EXPECT_EQ(e, e1) << "the energies reported are the model's own";
    const bool on = sigma <= 3.0f;  // autoguide_sigma_max
    for (size_t k = 0; k < x.size(); ++k)
      ASSERT_EQ(g[k], on ? w * g1[k] + (1.0f - w) * g0[k] : g1[k]) << "sigma " << sigma << " k " << k;
    if (!on) continue;
    // Against finite differences of w E + (1 - w) E_weak in double precision.
    auto composed = [&](const std::vector<double>& v, size_t img) {
      return double(w) * reference_denoiser_energy(m, v, n, double(sigma))[img] +
             (1.0 - double(w)) * reference_denoiser_energy(*m.autoguide, v, n, double(sigma))[img];
    };
    const double h = 1e-5;
    int shown = 0;
    for (size_t k = 0; k < x.size(); k += 3) {
      std::vector<double> xp = xd, xm = xd;
      xp[k] += h;
      xm[k] -= h;
      const double fd = (composed(xp, k / d) - composed(xm, k / d)) / (2 * h);
      if (std::abs(g[k] - fd) > 3e-4 * std::max(1.0, std::abs(fd)) && shown++ < 5)
        ADD_FAILURE() << "sigma " << sigma << ": composed dE/dx[" << k << "] = " << g[k] << ", finite difference " << fd;
    }
  }
}

TEST(Autoguidance, WeightOneIsTheModelAloneAndSamplesAreTheSameWhateverTheThreads) {
  const Model m = autoguided_model(2.0f);
  Model plain = m;
  plain.autoguide.reset();
  plain.sampler.autoguide = 1.0f;
  Network net(m), plain_net(plain);
  SamplerParams one = m.sampler;
  one.autoguide = 1.0f;
  EXPECT_EQ(uniform_samples(net, one, 5, 4, 1), uniform_samples(plain_net, one, 5, 4, 1));
  const std::vector<float> guided = uniform_samples(net, m.sampler, 5, 4, 1);
  EXPECT_NE(guided, uniform_samples(net, one, 5, 4, 1));
  EXPECT_EQ(guided, uniform_samples(net, m.sampler, 5, 4, 3));
  EXPECT_EQ(guided, uniform_samples(net, m.sampler, 5, 4, 2, 5));
  // Skipping the weaker network at large noise changes the walk; skipping it everywhere is w = 1.
  SamplerParams capped = m.sampler;
  capped.autoguide_sigma_max = 1.0f;
  EXPECT_NE(guided, uniform_samples(net, capped, 5, 4, 1));
  capped.autoguide_sigma_max = 1e-4f;
  EXPECT_EQ(uniform_samples(net, capped, 5, 4, 1), uniform_samples(net, one, 5, 4, 1));
}

TEST(Autoguidance, NeedsTheWeakerNetworkAndANoiseLevelForm) {
  Network plain(test::random_denoiser_model(kImage, kSmallUnet, 21));
  SamplerParams p = default_sampler_params(SamplerForm::kDdim);
  p.autoguide = 2.0f;
  expect_error([&] { LangevinSampler s(plain, p, 1); }, {"no weaker network", "autoguide", "ebm-export --autoguide"});
  Network net(autoguided_model(2.0f));
  SamplerParams paper;
  paper.autoguide = 2.0f;
  expect_error([&] { LangevinSampler s(net, paper, 1); }, {"autoguidance", "noise-level", "paper"});
}

}  // namespace
}  // namespace ebm
