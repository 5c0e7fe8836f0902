// Whole networks: energies against the double-precision reference, input gradients against
// finite differences (every pixel for a small net with every layer type; random directions for
// the paper and book presets), batch independence, classifiers, and no allocation per step.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <algorithm>

#include "ebm/error.h"
#include "ebm/network.h"
#include "ebm/reference.h"
#include "activation_plan.h"
#include "test_util.h"

#ifndef EBM_SANITIZE_BUILD
// Count heap allocations made while `g_counting` is set (glibc's allocator underneath).
extern "C" void* __libc_malloc(size_t);
extern "C" void* __libc_calloc(size_t, size_t);
extern "C" void* __libc_realloc(void*, size_t);
extern "C" void* __libc_memalign(size_t, size_t);
static std::atomic<bool> g_counting{false};
static std::atomic<long> g_allocations{0};
extern "C" void* malloc(size_t n) {
  if (g_counting.load(std::memory_order_relaxed)) ++g_allocations;
  return __libc_malloc(n);
}
extern "C" void* calloc(size_t n, size_t k) {
  if (g_counting.load(std::memory_order_relaxed)) ++g_allocations;
  return __libc_calloc(n, k);
}
extern "C" void* realloc(void* p, size_t n) {
  if (g_counting.load(std::memory_order_relaxed)) ++g_allocations;
  return __libc_realloc(p, n);
}
extern "C" int posix_memalign(void** out, size_t align, size_t n) {
  if (g_counting.load(std::memory_order_relaxed)) ++g_allocations;
  *out = __libc_memalign(align, n);
  return *out ? 0 : 12;  // ENOMEM
}
#endif

namespace ebm {
namespace {

using nlohmann::json;
using test::expect_error;

std::string preset_path(const std::string& name) {
  return std::string(EBM_TEST_MODELS_DIR) + "/presets/" + name + ".json";
}

// Every layer type in one small energy network.
const json kEveryLayer = json::parse(R"([
  {"type":"conv2d","out_channels":3,"kernel":3,"padding":"same"},
  {"type":"batchnorm","eps":0.001},
  {"type":"swish"},
  {"type":"conv2d","out_channels":4,"kernel":[3,2],"stride":2,"padding":[0,1,1,0]},
  {"type":"affine"},
  {"type":"leaky_relu","slope":0.2},
  {"type":"avgpool","kernel":2,"stride":1},
  {"type":"flatten"},
  {"type":"dense","out_features":6},
  {"type":"swish"},
  {"type":"dense","out_features":1}
])");

// The workspace's plan (activation_plan.h): outputs alive at the same time never share a float,
// every offset keeps a batch's buffers aligned, and outputs whose lives do not overlap share.
TEST(ActivationPlan, OutputsAliveTogetherNeverShareAFloatAndTheOthersDo) {
  // A chain whose odd outputs only the next layer's forward pass reads (the paper network's swish
  // outputs natively) and whose even ones the backward pass reads: the odd ones take turns in
  // the gap between the first two kept ones.
  const size_t count = 8;
  std::vector<OutputLife> chain;
  for (size_t k = 0; k < count; ++k) chain.push_back({100 - 10 * k, k, k % 2 ? k + 1 : count});
  std::vector<size_t> off;
  const size_t span = plan_outputs(chain, &off);
  EXPECT_EQ(off[1], 112u);  // after output 0's 100 floats, rounded to 16
  for (size_t k : {3, 5, 7}) EXPECT_EQ(off[k], off[1]) << "output " << k;
  EXPECT_EQ(span, 112u + 96 + 80 + 64 + 48) << "the kept ones and one slot for the others";

  // Random lives and sizes: the invariants.
  Pcg32 rng(41);
  for (int trial = 0; trial < 300; ++trial) {
    const size_t outputs = 1 + rng.below(14u);
    std::vector<OutputLife> lives;
    size_t rounded_sum = 0;
    for (size_t k = 0; k < outputs; ++k) {
      const size_t floats = rng.below(300u), last = k + rng.below(uint32_t(outputs + 1 - k));
      lives.push_back({floats, k, last});
      rounded_sum += (floats + 15) / 16 * 16;
    }
    const size_t total = plan_outputs(lives, &off);
    ASSERT_EQ(off.size(), outputs);
    EXPECT_LE(total, rounded_sum);
    for (size_t a = 0; a < outputs; ++a) {
      EXPECT_EQ(off[a] % 16, 0u);
      EXPECT_LE(off[a] + lives[a].floats, total);
      for (size_t b = a + 1; b < outputs; ++b) {
        const bool together = lives[a].first <= lives[b].last && lives[b].first <= lives[a].last;
        const bool apart = off[a] + lives[a].floats <= off[b] || off[b] + lives[b].floats <= off[a];
        EXPECT_TRUE(!together || apart) << "trial " << trial << ": outputs " << a << " and " << b;
      }
    }
  }
}

TEST(Network, SmallNetworkGradientMatchesFiniteDifferencesAtEveryPixel) {
  const Model m = random_model(resolve_architecture({1, 8, 12}, kEveryLayer), 21);
  Network net(m);
  const int n = 2;
  const std::vector<float> x = test::random_inputs(size_t(n) * 96, 8);
  std::vector<float> e(n), g(x.size());
  net.energy_and_input_grad(x.data(), n, e.data(), g.data());

  const std::vector<double> xd = test::to_double(x);
  const std::vector<double> e_ref = reference_forward(m, xd, n);
  for (int i = 0; i < n; ++i) EXPECT_NEAR(e[size_t(i)], e_ref[size_t(i)], 1e-5 * (1 + std::abs(e_ref[size_t(i)])));

  // Step and tolerance as in test_layers.cpp.
  test::expect_central_differences(g, xd, 96, [&](const std::vector<double>& xs, int img) {
    return reference_forward(m, xs, n)[size_t(img)];
  });
}

// Directional derivative check for large networks: (E(x + h v) - E(x - h v)) / 2h = grad . v.
void check_preset_network(const std::string& preset, uint64_t seed) {
  const Preset p = load_preset(preset_path(preset));
  const Model m = random_model(p.arch, seed);
  Network net(m);
  const int n = 2;
  const size_t d = size_t(p.arch.input.size());
  const std::vector<float> x = test::random_inputs(n * d, seed + 1);
  std::vector<float> e(n), g(x.size());
  net.energy_and_input_grad(x.data(), n, e.data(), g.data());

  const std::vector<double> xd = test::to_double(x);
  const std::vector<double> e_ref = reference_forward(m, xd, n);
  for (int i = 0; i < n; ++i)
    EXPECT_NEAR(e[size_t(i)], e_ref[size_t(i)], 1e-4 * (1 + std::abs(e_ref[size_t(i)])))
        << preset << " image " << i;

  const double h = 1e-4;
  for (int dir = 0; dir < 3; ++dir) {
    const std::vector<float> v = test::random_inputs(x.size(), 100 + uint64_t(dir));
    std::vector<double> xp = xd, xm = xd;
    for (size_t k = 0; k < xd.size(); ++k) {
      xp[k] += h * v[k];
      xm[k] -= h * v[k];
    }
    const std::vector<double> ep = reference_forward(m, xp, n), em = reference_forward(m, xm, n);
    for (int i = 0; i < n; ++i) {
      double analytic = 0, scale = 0;
      for (size_t k = 0; k < d; ++k) {
        analytic += double(g[i * d + k]) * v[i * d + k];
        scale += std::abs(double(g[i * d + k]) * v[i * d + k]);
      }
      const double fd = (ep[size_t(i)] - em[size_t(i)]) / (2 * h);
      // The dot product sums d terms; allow 1e-4 of the sum of their magnitudes.
      EXPECT_NEAR(analytic, fd, 1e-4 * std::max(1.0, scale))
          << preset << " image " << i << " direction " << dir;
    }
  }
}

TEST(Network, PaperPresetEnergyAndGradientMatchTheReference) { check_preset_network("paper", 31); }
TEST(Network, BookPresetEnergyAndGradientMatchTheReference) { check_preset_network("book", 32); }

TEST(Network, FoldingBatchNormIntoConvolutionsKeepsTheFunction) {
  const Model m = random_model(resolve_architecture({1, 8, 12}, kEveryLayer), 22);
  const Model folded = fold_normalization(m);
  EXPECT_EQ(folded.arch.layers.size(), m.arch.layers.size() - 2);  // both norms fold into convs
  EXPECT_EQ(folded.arch.layers[0].kind, LayerKind::kConv2d);
  const std::vector<double> x = test::to_double(test::random_inputs(3 * 96, 9));
  const std::vector<double> a = reference_forward(m, x, 3), b = reference_forward(folded, x, 3);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-5 * (1 + std::abs(a[i])));
}

TEST(Network, AnImagesEnergyDoesNotDependOnTheRestOfTheBatch) {
  // Nine images: the dense layers switch to the batched GEMM at eight, and the convolutions
  // split nine images into chunks of several sizes (with a partial last chunk).
  const Preset p = load_preset(preset_path("paper"));
  Network net(random_model(p.arch, 33));
  const int n = 9;
  const size_t d = size_t(p.arch.input.size());
  const std::vector<float> x = test::random_inputs(n * d, 12);
  std::vector<float> en(n), gn(n * d), e1(1), g1(d);
  net.energy_and_input_grad(x.data(), n, en.data(), gn.data());
  for (int i = 0; i < n; ++i) {
    net.energy_and_input_grad(x.data() + size_t(i) * d, 1, e1.data(), g1.data());
    // Bit for bit: every kernel accumulates each output in an order that does not depend on
    // the other images in its tiles, chunks or batch.
    EXPECT_EQ(e1[0], en[size_t(i)]) << "image " << i;
    EXPECT_TRUE(std::equal(g1.begin(), g1.end(), gn.begin() + long(i * d))) << "image " << i;
  }
}

// A call runs its images in slices (slice_images()) so that its workspace stays small: the same
// bits whatever the slice, for every kind of call (an energy model, a classifier, a denoiser,
// whose noise plane is built per slice), and a workspace sized for one slice, not the call.
TEST(Network, SlicesOfImagesBoundTheWorkspaceWithoutChangingABit) {
  const Preset p = load_preset(preset_path("paper"));
  Network paper(random_model(p.arch, 35));
  // Automatic: the most images whose workspace fits the budget, at most kSliceMostImages.
  const int automatic = paper.slice_images();
  EXPECT_GE(automatic, 1);
  EXPECT_LE(automatic, Network::kSliceMostImages);
  EXPECT_TRUE(automatic == 1 || paper.workspace_bytes(automatic) <= Network::kSliceBudgetBytes);
  if (automatic < Network::kSliceMostImages) {
    EXPECT_GT(paper.workspace_bytes(automatic + 1), Network::kSliceBudgetBytes);
  }
  const int n = 11;
  const size_t d = size_t(p.arch.input.size());
  const std::vector<float> x = test::random_inputs(n * d, 15);
  std::vector<float> e0(n), g0(n * d), e_only0(n);
  paper.energy_and_input_grad(x.data(), n, e0.data(), g0.data());
  paper.energy(x.data(), n, e_only0.data());
  for (int slice : {1, 3, n}) {
    paper.set_slice_images(slice);
    EXPECT_EQ(paper.slice_images(), slice);
    Network::Workspace ws, reserved;
    std::vector<float> e(n), g(n * d), e_only(n);
    paper.energy_and_input_grad(ws, x.data(), n, e.data(), g.data());
    EXPECT_EQ(ws.capacity_images(), slice) << "a workspace for one slice of " << slice;
    paper.reserve(reserved, n);
    EXPECT_EQ(reserved.capacity_images(), slice) << "reserved for one slice of " << slice;
    paper.energy(ws, x.data(), n, e_only.data());
    EXPECT_EQ(e, e0) << "slice " << slice;
    EXPECT_EQ(g, g0) << "slice " << slice;
    EXPECT_EQ(e_only, e_only0) << "slice " << slice;
  }
  paper.set_slice_images(0);
  EXPECT_EQ(paper.slice_images(), automatic);
  expect_error([&] { paper.set_slice_images(-1); }, {"slice", ">= 1", "-1"});

  // A classifier: logits, features and the cross-entropy with its gradient.
  json layers = kEveryLayer;
  layers.back()["out_features"] = 3;
  Network cls(random_model(resolve_architecture({1, 8, 12}, layers), 27, ModelKind::kClassifier));
  const int m = 7;
  const std::vector<float> xc = test::random_inputs(size_t(m) * 96, 16), t = {0.2f, 0.3f, 0.5f};
  auto classify = [&](int slice) {
    cls.set_slice_images(slice);
    std::vector<float> out(m * 3 + m * 6 + m + m * 96);
    float* o = out.data();
    cls.logits(xc.data(), m, o);
    cls.features(xc.data(), m, o + m * 3);
    cls.cross_entropy_and_input_grad(xc.data(), m, t, o + m * 9, o + m * 10);
    return out;
  };
  const std::vector<float> whole = classify(m);
  for (int slice : {1, 2, 5}) EXPECT_EQ(classify(slice), whole) << "classifier, slice " << slice;

  // The shipped denoiser, which builds its noise plane and composes its gradient per slice.
  Network den = Network::from_file(std::string(EBM_TEST_MODELS_DIR) + "/bridges.safetensors");
  const int k = 3;
  const size_t dd = size_t(den.input_size());
  const std::vector<float> xd = test::random_inputs(size_t(k) * dd, 17);
  auto denoise = [&](int slice) {
    den.set_slice_images(slice);
    std::vector<float> out(k + k * dd);
    den.energy_and_input_grad(xd.data(), k, out.data(), out.data() + k, 0.7f);
    return out;
  };
  EXPECT_EQ(denoise(1), denoise(k)) << "denoiser";
}

TEST(Network, LargeBatchMatchesTheReference) {
  const Model m = random_model(resolve_architecture({1, 8, 12}, kEveryLayer), 25);
  Network net(m);
  const int n = 13;
  const std::vector<float> x = test::random_inputs(size_t(n) * 96, 14);
  std::vector<float> e(n);
  net.energy(x.data(), n, e.data());
  const std::vector<double> ref = reference_forward(m, test::to_double(x), n);
  for (int i = 0; i < n; ++i) EXPECT_NEAR(e[size_t(i)], ref[size_t(i)], 1e-5 * (1 + std::abs(ref[size_t(i)])));
}

TEST(Network, ClassifierGivesReferenceLogitsAndPenultimateFeatures) {
  json layers = kEveryLayer;
  layers.back()["out_features"] = 3;
  const Model m = random_model(resolve_architecture({1, 8, 12}, layers), 23, ModelKind::kClassifier);
  Network net(m);
  EXPECT_EQ(net.outputs(), 3);
  EXPECT_EQ(net.feature_size(), 6);
  const std::vector<float> x = test::random_inputs(4 * 96, 10);
  std::vector<float> logits(4 * 3), feats(4 * 6);
  net.logits(x.data(), 4, logits.data());
  net.features(x.data(), 4, feats.data());
  const std::vector<double> ref = reference_forward(m, test::to_double(x), 4);
  for (size_t i = 0; i < ref.size(); ++i) EXPECT_NEAR(logits[i], ref[i], 1e-5 * (1 + std::abs(ref[i])));
  // Features are the input of the last dense layer: the reference without that layer.
  Model head = m;
  head.arch.layers.pop_back();
  const std::vector<double> f_ref = reference_forward(head, test::to_double(x), 4);
  for (size_t i = 0; i < f_ref.size(); ++i) EXPECT_NEAR(feats[i], f_ref[i], 1e-5 * (1 + std::abs(f_ref[i])));
  std::vector<float> e(4);
  expect_error([&] { net.energy(x.data(), 4, e.data()); }, {"energy model", "classifier"});
}

// -sum_k t_k log softmax(l)_k in double, from the reference logits of every image.
std::vector<double> reference_cross_entropy(const Model& m, const std::vector<double>& x, int n,
                                            const std::vector<float>& t) {
  const std::vector<double> l = reference_forward(m, x, n);
  const size_t k = t.size();
  std::vector<double> ce(size_t(n), 0.0);
  for (int b = 0; b < n; ++b) {
    double z = 0;
    for (size_t j = 0; j < k; ++j) z += std::exp(l[size_t(b) * k + j]);
    for (size_t j = 0; j < k; ++j) ce[size_t(b)] -= t[j] * (l[size_t(b) * k + j] - std::log(z));
  }
  return ce;
}

TEST(Network, CrossEntropyGradientMatchesFiniteDifferencesAtEveryPixel) {
  json layers = kEveryLayer;
  layers.back()["out_features"] = 3;
  const Model m = random_model(resolve_architecture({1, 8, 12}, layers), 25, ModelKind::kClassifier);
  Network net(m);
  const int n = 2;
  const std::vector<float> x = test::random_inputs(size_t(n) * 96, 11);
  const std::vector<double> xd = test::to_double(x);
  for (const std::vector<float>& t : {std::vector<float>{0.0f, 1.0f, 0.0f},
                                      std::vector<float>{0.5f, 0.2f, 0.3f}}) {
    std::vector<float> ce(n), g(x.size());
    net.cross_entropy_and_input_grad(x.data(), n, t, ce.data(), g.data());
    const std::vector<double> ce_ref = reference_cross_entropy(m, xd, n, t);
    for (int i = 0; i < n; ++i) EXPECT_NEAR(ce[size_t(i)], ce_ref[size_t(i)], 1e-5 * (1 + ce_ref[size_t(i)]));
    const double largest = test::expect_central_differences(
        g, xd, 96,
        [&](const std::vector<double>& xs, int img) { return reference_cross_entropy(m, xs, n, t)[size_t(img)]; },
        "dCE/dx");
    EXPECT_GT(largest, 1e-3) << "a gradient this flat would not test anything";
  }
}

TEST(Network, CrossEntropyOfAnImageDoesNotDependOnTheRestOfTheBatch) {
  json layers = kEveryLayer;
  layers.back()["out_features"] = 4;
  const Model m = random_model(resolve_architecture({1, 8, 12}, layers), 26, ModelKind::kClassifier);
  Network net(m);
  const std::vector<float> x = test::random_inputs(5 * 96, 12), t = {0.25f, 0.25f, 0.0f, 0.5f};
  std::vector<float> ce(5), g(x.size()), ce1(1), g1(96);
  net.cross_entropy_and_input_grad(x.data(), 5, t, ce.data(), g.data());
  for (int i = 0; i < 5; ++i) {
    net.cross_entropy_and_input_grad(x.data() + i * 96, 1, t, ce1.data(), g1.data());
    EXPECT_EQ(ce1[0], ce[size_t(i)]);
    EXPECT_TRUE(std::equal(g1.begin(), g1.end(), g.begin() + i * 96)) << "image " << i;
  }
}

TEST(Network, CrossEntropyRefusesBadTargetsAndEnergyModels) {
  json layers = kEveryLayer;
  layers.back()["out_features"] = 3;
  const Model m = random_model(resolve_architecture({1, 8, 12}, layers), 27, ModelKind::kClassifier);
  Network net(m);
  const std::vector<float> x = test::random_inputs(96, 13);
  std::vector<float> ce(1), g(96);
  auto run = [&](const std::vector<float>& t) {
    net.cross_entropy_and_input_grad(x.data(), 1, t, ce.data(), g.data());
  };
  expect_error([&] { run({0.5f, 0.5f}); }, {"2 values", "3 labels"});
  expect_error([&] { run({0.5f, 0.5f, 0.5f, 0.0f}); }, {"4 values", "3 labels"});
  expect_error([&] { run({0.5f, 0.2f, 0.2f}); }, {"sums to 0.9", "not 1"});
  expect_error([&] { run({1.2f, -0.2f, 0.0f}); }, {"-0.2", "not a probability"});
  expect_error([&] { run({NAN, 0.5f, 0.5f}); }, {"not a probability"});
  Network energy(random_model(resolve_architecture({1, 8, 12}, kEveryLayer), 28));
  expect_error([&] { energy.cross_entropy_and_input_grad(x.data(), 1, {1.0f}, ce.data(), g.data()); },
               {"needs a classifier"});
}

TEST(Network, LoadsFromBytesAndFromFile) {
  const Model m = random_model(resolve_architecture({1, 8, 12}, kEveryLayer), 24);
  const std::vector<uint8_t> bytes = serialize_model(m, DType::kF32);
  const std::string path = test::temp_path("network.safetensors");
  save_model(path, m, DType::kF32);
  Network a = Network::from_bytes(bytes.data(), bytes.size()), b = Network::from_file(path);
  const std::vector<float> x = test::random_inputs(96, 2);
  float ea, eb;
  a.energy(x.data(), 1, &ea);
  b.energy(x.data(), 1, &eb);
  EXPECT_EQ(ea, eb);
  EXPECT_EQ(a.input_shape(), (Shape{1, 8, 12}));
}

TEST(Network, RepeatedStepsAtTheSameBatchSizeAllocateNothing) {
#ifdef EBM_SANITIZE_BUILD
  GTEST_SKIP() << "sanitizers replace malloc; counted in the plain build";
#else
  const Preset p = load_preset(preset_path("paper"));
  Network net(random_model(p.arch, 34));
  const size_t d = size_t(p.arch.input.size());
  for (int n : {1, 8}) {
    const std::vector<float> x = test::random_inputs(size_t(n) * d, 13);
    std::vector<float> e(static_cast<size_t>(n)), g(x.size());
    net.energy_and_input_grad(x.data(), n, e.data(), g.data());  // may grow the workspaces
    g_allocations = 0;
    g_counting = true;
    for (int rep = 0; rep < 3; ++rep) net.energy_and_input_grad(x.data(), n, e.data(), g.data());
    g_counting = false;
    EXPECT_EQ(g_allocations.load(), 0) << "batch " << n;
  }
#endif
}

}  // namespace
}  // namespace ebm
