// Every layer type, against the naive double-precision reference (forward) and against central
// finite differences of that reference (backward with respect to the input).
//
// Tolerances: forward |y - y_ref| <= 1e-5 * (1 + |y_ref|) (float accumulation over at most a
// few hundred terms); gradient |g - g_fd| <= 2e-4 * max(1, |g_fd|) with h = 1e-5 in double,
// where truncation (~h^2) and rounding (~1e-16 / h) errors are both below 1e-9.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "ebm/kernels.h"
#include "gemm.h"
#include "ebm/layers.h"
#include "ebm/reference.h"
#include "test_util.h"

namespace ebm {
namespace {

using nlohmann::json;

struct LayerCase {
  std::string name;
  json layer;
  Shape in;
  float lo = -1.5f, hi = 1.5f;  // input range
  bool near_kinks = false;      // inputs within 1e-2 of zero, on both sides
  Conv3x3Form form = Conv3x3Form::kAuto;  // 3x3 stride-1 convolutions: the form to build
  ConvStridedForm strided = ConvStridedForm::kAuto;  // strided convolutions the taps do not take
};

std::ostream& operator<<(std::ostream& os, const LayerCase& c) { return os << c.name; }

class LayerGradient : public ::testing::TestWithParam<LayerCase> {};

TEST_P(LayerGradient, ForwardMatchesReferenceAndBackwardMatchesFiniteDifferences) {
  const LayerCase& c = GetParam();
  const int n = 3;
  const Architecture a = resolve_architecture(c.in, json::array({c.layer}));
  const Model m = random_model(a, 17);
  const LayerSpec& l = a.layers[0];
  const Conv3x3Form before = conv3x3_form();
  set_conv3x3_form(c.form);
  set_conv_strided_form(c.strided);
  const std::unique_ptr<Layer> layer = make_layer(l, m);
  set_conv3x3_form(before);
  set_conv_strided_form(ConvStridedForm::kAuto);

  const size_t in_len = size_t(n) * size_t(l.in.size()), out_len = size_t(n) * size_t(l.out.size());
  std::vector<float> x = test::random_inputs(in_len, 5, c.lo, c.hi);
  if (c.near_kinks)
    for (float& v : x) v = (v < 0 ? -1.0f : 1.0f) * (1e-3f + 1e-2f * std::abs(v) / 1.5f);
  // The scratch starts as NaNs, before each call: a layer must not read what it did not write.
  std::vector<float> scratch(std::max<size_t>(layer->scratch_floats(n), 1), NAN);
  std::vector<float> y(out_len);
  layer->forward(x.data(), y.data(), n, scratch.data());

  const std::vector<double> xd = test::to_double(x);
  const std::vector<double> y_ref = reference_layer_forward(l, m, xd, n);
  ASSERT_EQ(y_ref.size(), out_len);
  int shown = 0;
  for (size_t i = 0; i < out_len; ++i) {
    const double tol = 1e-5 * (1 + std::abs(y_ref[i]));
    if (!(std::abs(y[i] - y_ref[i]) <= tol) && shown++ < 5)  // NaN fails too
      ADD_FAILURE() << "forward[" << i << "] = " << y[i] << ", reference " << y_ref[i];
  }

  // L = sum_j r_j y_j with random r; dL/dx from backward_input(dy = r).
  const std::vector<float> r = test::random_inputs(out_len, 6);
  std::vector<float> dx(in_len, NAN);
  std::fill(scratch.begin(), scratch.end(), NAN);
  layer->backward_input(x.data(), y.data(), r.data(), dx.data(), n, scratch.data());
  auto loss = [&](const std::vector<double>& xv) {
    const std::vector<double> yv = reference_layer_forward(l, m, xv, n);
    double s = 0;
    for (size_t j = 0; j < yv.size(); ++j) s += double(r[j]) * yv[j];
    return s;
  };
  const double h = 1e-5;
  double worst = 0;
  shown = 0;
  for (size_t i = 0; i < in_len; ++i) {
    std::vector<double> xp = xd, xm = xd;
    xp[i] += h;
    xm[i] -= h;
    const double fd = (loss(xp) - loss(xm)) / (2 * h);
    const double err = std::abs(dx[i] - fd) / std::max(1.0, std::abs(fd));
    worst = std::max(worst, err);
    if (!(err <= 2e-4) && shown++ < 5)  // NaN fails too
      ADD_FAILURE() << "dL/dx[" << i << "] = " << dx[i] << ", finite difference " << fd;
  }
  RecordProperty("worst_relative_gradient_error", std::to_string(worst));
}

json layer(const char* text) { return json::parse(text); }

INSTANTIATE_TEST_SUITE_P(
    AllLayers, LayerGradient,
    ::testing::Values(
        LayerCase{"Conv3x3Stride1Pad1", layer(R"({"type":"conv2d","out_channels":3,"kernel":3,"padding":1})"), {2, 6, 7}},
        LayerCase{"Conv5x5Stride2TensorFlowSame", layer(R"({"type":"conv2d","out_channels":2,"kernel":5,"stride":2,"padding":"same"})"), {1, 9, 12}},
        LayerCase{"Conv3x2Stride2x1AsymmetricPadding", layer(R"({"type":"conv2d","out_channels":2,"kernel":[3,2],"stride":[2,1],"padding":[0,2,1,0]})"), {2, 7, 6}},
        // Wide rows in im2col (the stride-phase form switched off) take the vectorised stride-2
        // gather and scatter (16 lanes with AVX-512) and their scalar tails.
        LayerCase{"ConvStride2WideRowsIm2col", layer(R"({"type":"conv2d","out_channels":3,"kernel":3,"stride":2,"padding":[1,1,0,2]})"), {2, 5, 77}, -1.5f, 1.5f, false, Conv3x3Form::kAuto, ConvStridedForm::kIm2col},
        LayerCase{"Conv5x5Stride2SameWideRowsIm2col", layer(R"({"type":"conv2d","out_channels":2,"kernel":5,"stride":2,"padding":"same"})"), {1, 6, 100}, -1.5f, 1.5f, false, Conv3x3Form::kAuto, ConvStridedForm::kIm2col},
        // Output planes of whole GEMM tiles (4 x 32 pixels): dx's GEMM reads each image's dy in
        // place (no packing); the forward pass by stride phases, then by im2col, whose rows start
        // one column left of the image.
        LayerCase{"Conv5x5Stride2SameWholeTiles", layer(R"({"type":"conv2d","out_channels":4,"kernel":5,"stride":2,"padding":"same"})"), {1, 8, 64}},
        LayerCase{"Conv5x5Stride2SameWholeTilesIm2col", layer(R"({"type":"conv2d","out_channels":4,"kernel":5,"stride":2,"padding":"same"})"), {1, 8, 64}, -1.5f, 1.5f, false, Conv3x3Form::kAuto, ConvStridedForm::kIm2col},
        // The same layers by stride phases in both directions (no im2col, no col2im; the form
        // the build takes for large enough layers, below): padding on either side of
        // odd (x0 = 1) and even parity, the vectorised phase gather and interleave with tails;
        // then the paper network's 5x5 first layer, more output channels than a register tile's
        // rows and more input channels than a vector (no bias), stride 2 down and 1 across, and
        // a kernel smaller than its stride of 3 (a phase no tap falls on: zero in dx).
        LayerCase{"ConvPhasesStride2WideRows", layer(R"({"type":"conv2d","out_channels":3,"kernel":3,"stride":2,"padding":[1,1,0,2]})"), {2, 5, 77}, -1.5f, 1.5f, false, Conv3x3Form::kAuto, ConvStridedForm::kPhases},
        LayerCase{"ConvPhases5x5Stride2SameWideRows", layer(R"({"type":"conv2d","out_channels":2,"kernel":5,"stride":2,"padding":"same"})"), {1, 6, 100}, -1.5f, 1.5f, false, Conv3x3Form::kAuto, ConvStridedForm::kPhases},
        LayerCase{"ConvPhases5x5Stride2PaperFirstLayer", layer(R"({"type":"conv2d","out_channels":13,"kernel":5,"stride":2,"padding":"same"})"), {1, 8, 48}, -1.5f, 1.5f, false, Conv3x3Form::kAuto, ConvStridedForm::kPhases},
        LayerCase{"ConvPhases3x3Stride2SameOddWidth", layer(R"({"type":"conv2d","out_channels":4,"kernel":3,"stride":2,"padding":"same"})"), {3, 7, 35}, -1.5f, 1.5f, false, Conv3x3Form::kAuto, ConvStridedForm::kPhases},
        LayerCase{"ConvPhasesManyChannelsNoBias", layer(R"({"type":"conv2d","out_channels":17,"kernel":3,"stride":2,"padding":"same","bias":false})"), {9, 4, 34}, -1.5f, 1.5f, false, Conv3x3Form::kAuto, ConvStridedForm::kPhases},
        LayerCase{"ConvPhasesStride2x1", layer(R"({"type":"conv2d","out_channels":2,"kernel":[3,2],"stride":[2,1],"padding":[0,2,1,0]})"), {2, 7, 30}, -1.5f, 1.5f, false, Conv3x3Form::kAuto, ConvStridedForm::kPhases},
        LayerCase{"ConvPhasesPaddingWiderThanAPhase", layer(R"({"type":"conv2d","out_channels":3,"kernel":3,"stride":2,"padding":[2,3,1,0]})"), {2, 6, 40}, -1.5f, 1.5f, false, Conv3x3Form::kAuto, ConvStridedForm::kPhases},
        LayerCase{"ConvPhasesKernelSmallerThanStride3", layer(R"({"type":"conv2d","out_channels":3,"kernel":2,"stride":3})"), {2, 5, 62}, -1.5f, 1.5f, false, Conv3x3Form::kAuto, ConvStridedForm::kPhases},
        // Stride 1 on rows that padding widens by at most a quarter takes the shifted form (no
        // im2col, no col2im): odd and even kernels, asymmetric padding, more output channels than
        // a register tile's rows, the U-Net's 3x13.
        LayerCase{"ConvStride1WideRows", layer(R"({"type":"conv2d","out_channels":2,"kernel":[1,3],"padding":[0,1,0,1]})"), {2, 3, 70}},
        LayerCase{"ConvShifted3x3Same", layer(R"({"type":"conv2d","out_channels":13,"kernel":3,"padding":"same"})"), {3, 5, 40}},
        LayerCase{"ConvShiftedAsymmetricPadding", layer(R"({"type":"conv2d","out_channels":5,"kernel":[3,4],"padding":[0,3,2,0]})"), {2, 4, 37}},
        LayerCase{"ConvShifted3x13NoBias", layer(R"({"type":"conv2d","out_channels":6,"kernel":[3,13],"padding":"same","bias":false})"), {4, 3, 60}},
        // 3x3 stride 1 with at least 8 input channels (forward) or output channels (dx) in
        // Winograd's F(2x2, 3x3) (the default only with 4-lane SIMD): odd heights and widths
        // (partial blocks), a row of more blocks than a vector holds, asymmetric padding, no
        // padding, one direction only; ConvShifted3x3Same in the build's default form.
        LayerCase{"ConvWinogradSameOddSizes", layer(R"({"type":"conv2d","out_channels":9,"kernel":3,"padding":"same"})"), {8, 5, 19}, -1.5f, 1.5f, false, Conv3x3Form::kWinograd},
        LayerCase{"ConvWinogradWideRows", layer(R"({"type":"conv2d","out_channels":8,"kernel":3,"padding":"same"})"), {8, 3, 37}, -1.5f, 1.5f, false, Conv3x3Form::kWinograd},
        LayerCase{"ConvWinogradAsymmetricPaddingNoBias", layer(R"({"type":"conv2d","out_channels":8,"kernel":3,"padding":[2,0,1,1],"bias":false})"), {8, 4, 20}, -1.5f, 1.5f, false, Conv3x3Form::kWinograd},
        LayerCase{"ConvWinogradNoPadding", layer(R"({"type":"conv2d","out_channels":10,"kernel":3})"), {9, 6, 21}, -1.5f, 1.5f, false, Conv3x3Form::kWinograd},
        LayerCase{"ConvWinogradForwardOnly", layer(R"({"type":"conv2d","out_channels":3,"kernel":3,"padding":"same"})"), {8, 4, 24}, -1.5f, 1.5f, false, Conv3x3Form::kWinograd},
        // The same in F(4x4, 3x3): partial blocks of 1, 2 and 3 rows and columns, more blocks
        // in a row than a vector holds, asymmetric padding, no padding, one direction only.
        LayerCase{"ConvWinograd4SameOddSizes", layer(R"({"type":"conv2d","out_channels":9,"kernel":3,"padding":"same"})"), {8, 5, 19}, -1.5f, 1.5f, false, Conv3x3Form::kWinograd4},
        LayerCase{"ConvWinograd4PartialBlocksOfTwo", layer(R"({"type":"conv2d","out_channels":8,"kernel":3,"padding":"same"})"), {8, 6, 18}, -1.5f, 1.5f, false, Conv3x3Form::kWinograd4},
        LayerCase{"ConvWinograd4WideRows", layer(R"({"type":"conv2d","out_channels":8,"kernel":3,"padding":"same"})"), {8, 3, 77}, -1.5f, 1.5f, false, Conv3x3Form::kWinograd4},
        LayerCase{"ConvWinograd4AsymmetricPaddingNoBias", layer(R"({"type":"conv2d","out_channels":8,"kernel":3,"padding":[2,0,1,1],"bias":false})"), {8, 4, 20}, -1.5f, 1.5f, false, Conv3x3Form::kWinograd4},
        LayerCase{"ConvWinograd4NoPadding", layer(R"({"type":"conv2d","out_channels":10,"kernel":3})"), {9, 10, 23}, -1.5f, 1.5f, false, Conv3x3Form::kWinograd4},
        LayerCase{"ConvWinograd4ForwardOnly", layer(R"({"type":"conv2d","out_channels":3,"kernel":3,"padding":"same"})"), {8, 4, 24}, -1.5f, 1.5f, false, Conv3x3Form::kWinograd4},
        LayerCase{"ConvWinograd4GradientOnly", layer(R"({"type":"conv2d","out_channels":8,"kernel":3,"padding":"same"})"), {3, 7, 25}, -1.5f, 1.5f, false, Conv3x3Form::kWinograd4},
        // 3x3 stride 2 with at least 8 input channels (forward) or output channels (dx) in the
        // stride-2 Winograd form (the default only with 4-lane SIMD): TensorFlow's "same" on
        // even sizes (no padding above or left) and odd ones (a partial block each way), a row
        // of more blocks than a vector holds, asymmetric padding wider than a phase, no padding,
        // one direction only each way.
        LayerCase{"ConvWinogradStride2SameEven", layer(R"({"type":"conv2d","out_channels":9,"kernel":3,"stride":2,"padding":"same"})"), {8, 8, 24}, -1.5f, 1.5f, false, Conv3x3Form::kWinograd},
        LayerCase{"ConvWinogradStride2SameOddSizes", layer(R"({"type":"conv2d","out_channels":8,"kernel":3,"stride":2,"padding":"same"})"), {8, 7, 19}, -1.5f, 1.5f, false, Conv3x3Form::kWinograd},
        LayerCase{"ConvWinogradStride2WideRows", layer(R"({"type":"conv2d","out_channels":8,"kernel":3,"stride":2,"padding":[1,1,1,1]})"), {8, 2, 101}, -1.5f, 1.5f, false, Conv3x3Form::kWinograd},
        LayerCase{"ConvWinogradStride2AsymmetricPaddingNoBias", layer(R"({"type":"conv2d","out_channels":8,"kernel":3,"stride":2,"padding":[3,0,1,2],"bias":false})"), {8, 6, 21}, -1.5f, 1.5f, false, Conv3x3Form::kWinograd},
        LayerCase{"ConvWinogradStride2NoPadding", layer(R"({"type":"conv2d","out_channels":10,"kernel":3,"stride":2})"), {9, 9, 20}, -1.5f, 1.5f, false, Conv3x3Form::kWinograd},
        // dx reads phase rows and columns past the last block here (input row 5 and column 65,
        // which no output reads: zero gradients), and the blocks fill whole vectors natively.
        LayerCase{"ConvWinogradStride2GradientPastTheLastBlock", layer(R"({"type":"conv2d","out_channels":8,"kernel":3,"stride":2,"bias":false})"), {2, 6, 66}, -1.5f, 1.5f, false, Conv3x3Form::kWinograd},
        LayerCase{"ConvWinogradStride2ForwardOnly", layer(R"({"type":"conv2d","out_channels":3,"kernel":3,"stride":2,"padding":"same"})"), {8, 6, 30}, -1.5f, 1.5f, false, Conv3x3Form::kWinograd},
        LayerCase{"ConvWinogradStride2GradientOnly", layer(R"({"type":"conv2d","out_channels":8,"kernel":3,"stride":2,"padding":"same"})"), {2, 6, 30}, -1.5f, 1.5f, false, Conv3x3Form::kWinograd},
        // Other stride-1 convolutions go by taps over interleaved images, skipping the taps that
        // meet padding: the U-Net's 3x13 bottleneck over 3x12 planes, and a kernel row that
        // meets padding only (its tap is never built).
        LayerCase{"ConvTapsUnetBottleneck3x13", layer(R"({"type":"conv2d","out_channels":7,"kernel":[3,13],"padding":[1,6,1,6]})"), {5, 3, 12}},
        LayerCase{"ConvTapsRowOnlyOnPaddingNoBias", layer(R"({"type":"conv2d","out_channels":3,"kernel":3,"padding":[2,1,0,1],"bias":false})"), {3, 2, 5}},
        // Strided layers into small planes (at most 64 pixels) with at least 16 channels in and
        // out go by taps too, their input rows split into stride phases: odd widths (a phase
        // shorter than the other), a stride of 3 across and 2 down with asymmetric padding, a
        // 5x5 kernel.
        LayerCase{"ConvTapsStride2SameOddSizes", layer(R"({"type":"conv2d","out_channels":16,"kernel":3,"stride":2,"padding":"same"})"), {16, 7, 9}},
        LayerCase{"ConvTapsStride2x3AsymmetricPadding", layer(R"({"type":"conv2d","out_channels":17,"kernel":[3,4],"stride":[2,3],"padding":[0,2,1,0]})"), {16, 6, 11}},
        LayerCase{"ConvTaps5x5Stride2NoBias", layer(R"({"type":"conv2d","out_channels":16,"kernel":5,"stride":2,"padding":[2,1,2,1],"bias":false})"), {18, 8, 10}},
        LayerCase{"ConvStride3NoPadding", layer(R"({"type":"conv2d","out_channels":2,"kernel":2,"stride":3})"), {2, 8, 8}},
        LayerCase{"ConvPointwise", layer(R"({"type":"conv2d","out_channels":2,"kernel":1})"), {3, 4, 5}},
        LayerCase{"ConvWithoutBias", layer(R"({"type":"conv2d","out_channels":2,"kernel":3,"bias":false})"), {2, 5, 5}},
        LayerCase{"Dense", layer(R"({"type":"dense","out_features":4})"), {10, 1, 1}},
        LayerCase{"DenseWithoutBias", layer(R"({"type":"dense","out_features":3,"bias":false})"), {7, 1, 1}},
        LayerCase{"Affine", layer(R"({"type":"affine"})"), {3, 4, 5}},
        LayerCase{"BatchNormInferenceForm", layer(R"({"type":"batchnorm","eps":0.001})"), {3, 4, 5}},
        LayerCase{"Swish", layer(R"({"type":"swish"})"), {2, 3, 4}, -6.0f, 6.0f},
        LayerCase{"LeakyReluNearItsKink", layer(R"({"type":"leaky_relu","slope":0.2})"), {2, 3, 4}, -1.5f, 1.5f, true},
        LayerCase{"LeakyReluAsAbsoluteValue", layer(R"({"type":"leaky_relu","slope":-1})"), {2, 3, 4}, -1.5f, 1.5f, true},
        LayerCase{"AvgPool2x2", layer(R"({"type":"avgpool","kernel":2})"), {2, 6, 8}},
        LayerCase{"AvgPool3x3Stride2Padded", layer(R"({"type":"avgpool","kernel":3,"stride":2,"padding":1})"), {2, 7, 6}},
        LayerCase{"AvgPoolGlobal", layer(R"({"type":"avgpool","kernel":"global"})"), {3, 5, 4}},
        LayerCase{"Flatten", layer(R"({"type":"flatten"})"), {2, 3, 4}}),
    [](const ::testing::TestParamInfo<LayerCase>& p) { return p.param.name; });

// One layer built in two forms, run forward and backward on the same random x and dy (seeds sx and
// sdy) for n images: each form's y and dx.
struct TwoForms {
  std::vector<float> y[2], dx[2];
  // The largest |a - b| / (1 + |b|) between two outputs.
  static double worst(const std::vector<float>& a, const std::vector<float>& b) {
    double w = 0;
    for (size_t i = 0; i < a.size(); ++i)
      w = std::max(w, std::abs(double(a[i]) - b[i]) / (1 + std::abs(b[i])));
    return w;
  }
};
TwoForms run_two_forms(const LayerSpec& l, const Layer& first, const Layer& second, int n, int sx,
                       int sdy) {
  const size_t in_len = size_t(n) * l.in.size(), out_len = size_t(n) * l.out.size();
  const std::vector<float> x = test::random_inputs(in_len, sx), dy = test::random_inputs(out_len, sdy);
  std::vector<float> scratch(std::max(first.scratch_floats(n), second.scratch_floats(n)));
  TwoForms r;
  const Layer* layers[2] = {&first, &second};
  for (int f = 0; f < 2; ++f) {
    r.y[f].resize(out_len);
    r.dx[f].resize(in_len);
    layers[f]->forward(x.data(), r.y[f].data(), n, scratch.data());
    layers[f]->backward_input(x.data(), r.y[f].data(), dy.data(), r.dx[f].data(), n, scratch.data());
  }
  return r;
}

// The layer `l` built with its 3x3 convolutions in `form`; the form asked for before is restored.
std::unique_ptr<Layer> layer_in_form(const LayerSpec& l, const Model& m, Conv3x3Form form) {
  const Conv3x3Form before = conv3x3_form();
  set_conv3x3_form(form);
  std::unique_ptr<Layer> layer = make_layer(l, m);
  set_conv3x3_form(before);
  return layer;
}

// A layer as large as the U-Net's, built in both forms: Winograd works on a few rows of blocks at
// a time (here 3 chunks of 2 block rows), and must agree with the direct form (itself checked
// against the reference above) forward and backward.
// F(4x4, 3x3) the same, on a plane of 3 chunks of 2 block rows of 4x4, and on the U-Net's
// 96-channel layer over 6x24.
TEST(Conv2d, WinogradAgreesWithTheDirectFormOnALargeLayer) {
  const struct {
    Shape in;
    int out_c;
    Conv3x3Form form;
  } cases[] = {{{32, 12, 200}, 32, Conv3x3Form::kWinograd},
               {{32, 24, 200}, 32, Conv3x3Form::kWinograd4},
               {{96, 6, 24}, 96, Conv3x3Form::kWinograd4},
               // the channel counts wasm's automatic form gives F(4x4, 3x3) since 2026-12-07:
               // the U-Net's 8 -> 24 first layer, its 12 -> 12 refinement over 48x192, and the
               // Fashion-MNIST model's 8 -> 16 over 16x16 (16 blocks)
               {{8, 24, 96}, 24, Conv3x3Form::kWinograd4},
               {{12, 48, 192}, 12, Conv3x3Form::kWinograd4},
               {{8, 16, 16}, 16, Conv3x3Form::kWinograd4}};
  for (const auto& c : cases) {
    SCOPED_TRACE(std::to_string(c.in.c) + "x" + std::to_string(c.in.h) + "x" +
                 std::to_string(c.in.w) + " form " + std::to_string(int(c.form)));
    const json spec = {{"type", "conv2d"}, {"out_channels", c.out_c}, {"kernel", 3}, {"padding", "same"}};
    const Architecture a = resolve_architecture(c.in, json::array({spec}));
    const Model m = random_model(a, 5);
    const auto direct = layer_in_form(a.layers[0], m, Conv3x3Form::kDirect);
    const auto winograd = layer_in_form(a.layers[0], m, c.form);
    const TwoForms r = run_two_forms(a.layers[0], *direct, *winograd, 2, 8, 9);
    const double worst_y = TwoForms::worst(r.y[1], r.y[0]), worst_dx = TwoForms::worst(r.dx[1], r.dx[0]);
    EXPECT_LT(worst_y, 1e-5);
    EXPECT_LT(worst_dx, 1e-5);
    EXPECT_GT(worst_y, 0.0) << "the two forms gave the same bits: was Winograd built at all?";
    EXPECT_GT(worst_dx, 0.0) << "dx has the direct form's bits: was Winograd built for it?";
  }
}

// The stride-2 Winograd form on the paper network's second and third layers (32 -> 64 and 64 ->
// 128 channels, stride 2) and on a plane large enough to be split into three chunks of block
// rows: against the direct sums by stride phases (themselves checked against the reference
// above), forward and backward, to rounding.
TEST(Conv2d, Stride2WinogradAgreesWithStridePhasesOnLargeLayers) {
  const struct {
    Shape in;
    int out_c;
  } cases[] = {{{32, 24, 96}, 64}, {{64, 12, 48}, 128}, {{32, 48, 200}, 16}};
  for (const auto& c : cases) {
    SCOPED_TRACE(std::to_string(c.in.c) + "x" + std::to_string(c.in.h) + "x" + std::to_string(c.in.w));
    const json spec = {{"type", "conv2d"}, {"out_channels", c.out_c}, {"kernel", 3}, {"stride", 2},
                       {"padding", "same"}};
    const Architecture a = resolve_architecture(c.in, json::array({spec}));
    const Model m = random_model(a, 8);
    set_conv_strided_form(ConvStridedForm::kPhases);
    const auto phases = make_layer(a.layers[0], m);
    set_conv_strided_form(ConvStridedForm::kAuto);
    const auto winograd = layer_in_form(a.layers[0], m, Conv3x3Form::kWinograd);
    const TwoForms r = run_two_forms(a.layers[0], *phases, *winograd, 2, 15, 16);
    const double worst_y = TwoForms::worst(r.y[1], r.y[0]), worst_dx = TwoForms::worst(r.dx[1], r.dx[0]);
    EXPECT_LT(worst_y, 1e-5);
    EXPECT_LT(worst_dx, 1e-5);
    EXPECT_GT(worst_y, 0.0) << "the forward pass has the phases' bits: was Winograd built at all?";
    EXPECT_GT(worst_dx, 0.0) << "dx has the phases' bits: was Winograd built for it?";
  }
}

// What the automatic form builds for the 3x3 stride-2 layers of the paper network (32 -> 64, 64
// -> 128) and the shipped U-Net (24 -> 48, 48 -> 96), told apart by their bits: in 4-lane builds
// (wasm) the stride-2 Winograd form both ways; with AVX-512, on every core (also one where
// stride-1 layers take Winograd's forms), the direct form forward and Winograd's for dx where both
// sides have at least 48 channels; with AVX the direct form throughout.
TEST(Conv2d, TheAutomaticStride2FormIsTheOneThisBuildMeasuredFaster) {
  const struct {
    Shape in;
    int out_c;
  } cases[] = {{{32, 24, 96}, 64}, {{64, 12, 48}, 128}, {{24, 24, 96}, 48}, {{48, 12, 48}, 96}};
  for (const auto& c : cases) {
    SCOPED_TRACE(std::to_string(c.in.c) + " -> " + std::to_string(c.out_c));
    const json spec = {{"type", "conv2d"}, {"out_channels", c.out_c}, {"kernel", 3}, {"stride", 2},
                       {"padding", "same"}};
    const Architecture a = resolve_architecture(c.in, json::array({spec}));
    const LayerSpec& l = a.layers[0];
    const Model m = random_model(a, 31);
    const auto direct = layer_in_form(l, m, Conv3x3Form::kDirect);
    const auto winograd = layer_in_form(l, m, Conv3x3Form::kWinograd);
    const auto automatic = layer_in_form(l, m, Conv3x3Form::kAuto);
    const TwoForms d = run_two_forms(l, *automatic, *direct, 2, 32, 33),
                   w = run_two_forms(l, *automatic, *winograd, 2, 32, 33);
    ASSERT_NE(d.y[1], w.y[1]) << "the two forms gave the same bits: nothing to tell apart";
    ASSERT_NE(d.dx[1], w.dx[1]);
    const bool y_winograd = kGemmLanes == 4;
    const bool dx_winograd =
        kGemmLanes == 4 || (kGemmLanes == 16 && std::min(c.in.c, c.out_c) >= 48);
    EXPECT_EQ(d.y[0], (y_winograd ? w : d).y[1])
        << "forward: expected the " << (y_winograd ? "Winograd" : "direct") << " form";
    EXPECT_EQ(d.dx[0], (dx_winograd ? w : d).dx[1])
        << "dx: expected the " << (dx_winograd ? "Winograd" : "direct") << " form";
  }
}

// What the automatic form builds for 3x3 stride-1 layers, told apart by their bits. In 4-lane
// builds F(4x4, 3x3) on planes of at least 16 blocks of 4x4, F(2x2, 3x3) on smaller ones, the
// direct form with fewer than 8 channels on either side. With AVX-512 on a core that halves a
// 512-bit multiply-add, from 8 channels too, F(4x4, 3x3) on planes of at least 32 blocks, else
// F(2x2, 3x3) from 48 channels, else the direct form. Elsewhere the direct form throughout.
TEST(Conv2d, TheAutomaticStride1FormIsTheOneThisCoreMeasuredFaster) {
  using F = Conv3x3Form;
  const struct {
    Shape in;
    int out_c;
    F four_lanes, halved;  // the form expected under each rule
    bool dx;               // whether a forced Winograd form reaches dx (its depth, out_c, >= 8)
  } cases[] = {{{12, 16, 64}, 12, F::kWinograd4, F::kWinograd4, true},  // 64 blocks, 12 channels
               {{16, 6, 24}, 24, F::kWinograd, F::kDirect, true},        // 12 blocks
               {{12, 16, 64}, 6, F::kDirect, F::kDirect, false},         // 6 channels out
               {{24, 16, 32}, 24, F::kWinograd4, F::kWinograd4, true},   // 32 blocks, 24 channels
               {{32, 16, 16}, 32, F::kWinograd4, F::kDirect, true},      // 16 blocks, 32 channels
               {{48, 8, 8}, 48, F::kWinograd, F::kWinograd, true}};      // 4 blocks, 48 channels
  const bool four_lanes = kGemmLanes == 4, halved = halves_wide_multiply_adds();
  for (const auto& c : cases) {
    SCOPED_TRACE(std::to_string(c.in.c) + " -> " + std::to_string(c.out_c) + " over " +
                 c.in.str());
    const json spec = {
        {"type", "conv2d"}, {"out_channels", c.out_c}, {"kernel", 3}, {"padding", "same"}};
    const Architecture a = resolve_architecture(c.in, json::array({spec}));
    const LayerSpec& l = a.layers[0];
    const Model m = random_model(a, 41);
    const F expected = four_lanes ? c.four_lanes : halved ? c.halved : F::kDirect;
    EXPECT_EQ(winograd_by_default(), four_lanes || halved);
    const auto automatic = layer_in_form(l, m, F::kAuto);
    for (const F form : {F::kDirect, F::kWinograd, F::kWinograd4}) {
      const auto other = layer_in_form(l, m, form);
      const TwoForms r = run_two_forms(l, *automatic, *other, 2, 42, 43);
      EXPECT_EQ(r.y[0] == r.y[1], form == expected) << "forward, form " << int(form);
      if (c.dx) {
        EXPECT_EQ(r.dx[0] == r.dx[1], form == expected) << "dx, form " << int(form);
      }
    }
  }
}

// The Winograd forms run their GEMMs across the images of a batch: a chunk of block rows may
// span images, and the images in flight (their padded input, or dx's phase planes) are kept in a
// few slots that later images reuse. Each image must get the bits it gets alone, forward and
// backward: layers whose chunks end mid-image (natively, and in 4-lane builds for the stride-2
// one, whose planes are 5 block rows high) and a batch of more images than slots.
TEST(Conv2d, WinogradFormsGiveEachImageItsOwnBitsInABatch) {
  const struct {
    Shape in;
    int out_c, stride;
    Conv3x3Form form;
  } cases[] = {{{96, 6, 24}, 96, 1, Conv3x3Form::kWinograd},
               {{96, 6, 24}, 96, 1, Conv3x3Form::kWinograd4},
               {{64, 20, 48}, 128, 2, Conv3x3Form::kWinograd}};
  constexpr int n = 5;
  for (const auto& c : cases) {
    SCOPED_TRACE(std::to_string(c.in.c) + "x" + std::to_string(c.in.h) + "x" +
                 std::to_string(c.in.w) + " stride " + std::to_string(c.stride) + " form " +
                 std::to_string(int(c.form)));
    const json spec = {{"type", "conv2d"}, {"out_channels", c.out_c}, {"kernel", 3},
                       {"stride", c.stride}, {"padding", "same"}};
    const Architecture a = resolve_architecture(c.in, json::array({spec}));
    const LayerSpec& l = a.layers[0];
    const Model m = random_model(a, 21);
    const auto direct = layer_in_form(l, m, Conv3x3Form::kDirect);
    const auto winograd = layer_in_form(l, m, c.form);
    // The whole batch at once, in both forms.
    const TwoForms r = run_two_forms(l, *direct, *winograd, n, 22, 23);
    ASSERT_NE(r.y[1], r.y[0]) << "the forward pass has the direct form's bits: was Winograd built?";
    ASSERT_NE(r.dx[1], r.dx[0]) << "dx has the direct form's bits: was Winograd built for it?";
    // Each image alone, from the same inputs.
    const std::vector<float> x = test::random_inputs(size_t(n) * l.in.size(), 22),
                             dy = test::random_inputs(size_t(n) * l.out.size(), 23);
    std::vector<float> scratch(winograd->scratch_floats(1)), y(l.out.size()), dx(l.in.size());
    for (int b = 0; b < n; ++b) {
      SCOPED_TRACE("image " + std::to_string(b));
      const float* xb = x.data() + size_t(b) * l.in.size();
      winograd->forward(xb, y.data(), 1, scratch.data());
      winograd->backward_input(xb, y.data(), dy.data() + size_t(b) * l.out.size(), dx.data(), 1,
                               scratch.data());
      EXPECT_TRUE(std::equal(y.begin(), y.end(), r.y[1].begin() + ptrdiff_t(b * l.out.size())));
      EXPECT_TRUE(std::equal(dx.begin(), dx.end(), r.dx[1].begin() + ptrdiff_t(b * l.in.size())));
    }
  }
}

// The paper network's first three layers (the fourth goes by taps) in the build's own direct
// form, which takes stride phases forward for all three and for dx of the second: against im2col, the forward
// pass has the same bits (the same sums in the same order), and dx agrees to rounding, bit for
// bit where it stays with col2im.
TEST(Conv2d, StridePhasesAgreeWithIm2colOnThePaperNetworksLayers) {
  struct Case {
    Shape in;
    const char* layer;
    bool dx_by_phases;
  };
  const Case cases[] = {
      {{1, 48, 192}, R"({"type":"conv2d","out_channels":32,"kernel":5,"stride":2,"padding":"same"})", false},
      {{32, 24, 96}, R"({"type":"conv2d","out_channels":64,"kernel":3,"stride":2,"padding":"same"})", true},
      {{64, 12, 48}, R"({"type":"conv2d","out_channels":128,"kernel":3,"stride":2,"padding":"same"})", false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.layer);
    const Architecture a = resolve_architecture(c.in, json::array({json::parse(c.layer)}));
    const Model m = random_model(a, 12);
    set_conv_strided_form(ConvStridedForm::kIm2col);
    const auto im2col = make_layer(a.layers[0], m);
    set_conv_strided_form(ConvStridedForm::kAuto);
    // Direct: not the stride-2 Winograd form of 4-lane builds.
    const auto phases = layer_in_form(a.layers[0], m, Conv3x3Form::kDirect);
    const TwoForms r = run_two_forms(a.layers[0], *im2col, *phases, 3, 13, 14);
    EXPECT_EQ(r.y[1], r.y[0]);
    const double worst = TwoForms::worst(r.dx[1], r.dx[0]);
    EXPECT_LT(worst, 1e-5);
    if (c.dx_by_phases)
      EXPECT_GT(worst, 0.0) << "dx has im2col's bits: were the phases built for it?";
    else
      EXPECT_EQ(r.dx[1], r.dx[0]);
  }
}

// Strided convolutions of many shapes (seeded: stride 2 or 3 each way, kernels 1 to 5 on either
// axis, asymmetric padding up to 3, 1 to 13 channels in and out, odd and even planes), built by
// stride phases in both directions and by im2col: the forward pass has the same bits, dx agrees to
// rounding. Edge cases the listed layers above may not reach: a kernel smaller than the stride
// (phases no tap falls on), padding wider than a phase, planes narrower than a vector.
TEST(Conv2d, StridePhasesAgreeWithIm2colOnRandomShapes) {
  std::mt19937 rng(2026);
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  int built = 0;
  for (int t = 0; t < 60; ++t) {
    const int sh = pick(1, 3), sw = pick(sh == 1 ? 2 : 1, 3), kh = pick(1, 5), kw = pick(1, 5);
    const json pad = {pick(0, 3), pick(0, 3), pick(0, 3), pick(0, 3)};
    const Shape in{pick(1, 13), pick(std::max(kh, 2), 12), pick(std::max(kw, 2), 40)};
    const json spec = {{"type", "conv2d"}, {"out_channels", pick(1, 13)}, {"kernel", {kh, kw}},
                       {"stride", {sh, sw}}, {"padding", pad}, {"bias", pick(0, 1) == 1}};
    SCOPED_TRACE(spec.dump() + " on " + std::to_string(in.c) + "x" + std::to_string(in.h) + "x" +
                 std::to_string(in.w));
    Architecture a;
    try {
      a = resolve_architecture(in, json::array({spec}));
    } catch (const Error&) {
      continue;  // an empty output (padding and kernel larger than the plane allows)
    }
    const Model m = random_model(a, uint64_t(t));
    set_conv_strided_form(ConvStridedForm::kIm2col);
    const auto im2col = make_layer(a.layers[0], m);
    set_conv_strided_form(ConvStridedForm::kPhases);
    const auto phases = make_layer(a.layers[0], m);
    set_conv_strided_form(ConvStridedForm::kAuto);
    const TwoForms r = run_two_forms(a.layers[0], *im2col, *phases, 2, 100 + t, 200 + t);
    EXPECT_EQ(r.y[1], r.y[0]);
    EXPECT_LT(TwoForms::worst(r.dx[1], r.dx[0]), 1e-5);
    ++built;
  }
  EXPECT_GT(built, 40);
}

// Output rows written straight into the image (row tiles) or computed across the padded rows and
// copied out: the same bits, forward and backward, for stride-1 layers (the shifted form) and
// strided ones (stride phases) whose rows are a whole number of tiles wide, a partial tile wide,
// or several tiles and a part.
TEST(Conv2d, RowTilesGiveTheBitsOfTilesAcrossThePaddedRows) {
  const int nr = kGemmNR;
  struct Case {
    Shape in;
    std::string layer;
    bool shifted;  // stride 1: both directions in the shifted form
  };
  const std::vector<Case> cases = {
      {{3, 5, nr}, R"({"type":"conv2d","out_channels":5,"kernel":3,"padding":"same"})", true},
      // Two tiles less two columns: a row's tiles end at the padded row's end (nr - 2 columns
      // would too, but with 4 lanes its padding is over a quarter and the layer goes by taps).
      {{2, 4, 2 * nr - 2}, R"({"type":"conv2d","out_channels":7,"kernel":3,"padding":"same"})", true},
      {{4, 3, 3 * nr - 4}, R"({"type":"conv2d","out_channels":3,"kernel":[3,5],"padding":"same"})", true},
      {{2, 8, 2 * nr}, R"({"type":"conv2d","out_channels":6,"kernel":3,"stride":2,"padding":"same"})", false},
      {{1, 10, 6 * nr}, R"({"type":"conv2d","out_channels":4,"kernel":5,"stride":2,"padding":"same"})", false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.layer + " on " + std::to_string(c.in.w) + " columns");
    const Architecture a = resolve_architecture(c.in, json::array({json::parse(c.layer)}));
    const Model m = random_model(a, 21);
    set_conv_strided_form(ConvStridedForm::kPhases);
    set_conv3x3_form(Conv3x3Form::kDirect);
    set_conv_row_tiles(false);
    const auto across = make_layer(a.layers[0], m);
    set_conv_row_tiles(true);
    const auto rows = make_layer(a.layers[0], m);
    set_conv3x3_form(Conv3x3Form::kAuto);
    set_conv_strided_form(ConvStridedForm::kAuto);
    // The row form needs no buffer for the padded output, so its forward pass writes less of
    // the scratch: a sign it was built. (Its scratch size is no sign: where dx's buffers are the
    // larger, as in 4-lane builds, the two forms need the same.)
    if (c.shifted) {
      const std::vector<float> x = test::random_inputs(size_t(c.in.size()), 33);
      auto written = [&](const Layer& l) {
        std::vector<float> scratch(l.scratch_floats(1), NAN), y(size_t(a.layers[0].out.size()));
        l.forward(x.data(), y.data(), 1, scratch.data());
        return std::count_if(scratch.begin(), scratch.end(), [](float v) { return !std::isnan(v); });
      };
      EXPECT_LT(written(*rows), written(*across));
    }
    const TwoForms r = run_two_forms(a.layers[0], *across, *rows, 3, 31, 32);
    EXPECT_EQ(r.y[1], r.y[0]);
    EXPECT_EQ(r.dx[1], r.dx[0]);
  }
}

// The tap form interleaves a chunk of images (about 1 MB of them: two of these) so its GEMMs are
// wide. Five images in chunks of 2, 2 and 1: each image's output and input gradient must have
// the bits it has alone, y must match the reference, and dx must be the adjoint of the layer's
// linear part: <dy, y(x) - y(0)> = <dx, x>.
TEST(Conv2d, TapFormSplitsABatchIntoChunksWithoutChangingAnImagesBits) {
  const Architecture a = resolve_architecture(
      {16, 128, 32}, json::parse(R"([{"type":"conv2d","out_channels":16,"kernel":[3,13],"padding":"same"}])"));
  const LayerSpec& l = a.layers[0];
  const Model m = random_model(a, 6);
  const auto layer = make_layer(l, m);
  const int n = 5;
  const size_t in = size_t(l.in.size()), out = size_t(l.out.size());
  const std::vector<float> x = test::random_inputs(n * in, 10), dy = test::random_inputs(n * out, 11);
  std::vector<float> scratch(layer->scratch_floats(n)), y(n * out), dx(n * in), y1(out), dx1(in);
  layer->forward(x.data(), y.data(), n, scratch.data());
  layer->backward_input(x.data(), y.data(), dy.data(), dx.data(), n, scratch.data());
  for (int b = 0; b < n; ++b) {
    layer->forward(x.data() + b * in, y1.data(), 1, scratch.data());
    layer->backward_input(x.data() + b * in, y1.data(), dy.data() + b * out, dx1.data(), 1, scratch.data());
    EXPECT_TRUE(std::equal(y1.begin(), y1.end(), y.begin() + long(b * out))) << "image " << b;
    EXPECT_TRUE(std::equal(dx1.begin(), dx1.end(), dx.begin() + long(b * in))) << "image " << b;
  }
  const std::vector<double> y_ref = reference_layer_forward(l, m, test::to_double(x), n);
  const std::vector<double> bias = reference_layer_forward(l, m, std::vector<double>(in, 0.0), 1);
  double worst = 0;
  for (size_t i = 0; i < y.size(); ++i)
    worst = std::max(worst, std::abs(y[i] - y_ref[i]) / (1 + std::abs(y_ref[i])));
  EXPECT_LT(worst, 1e-5);
  for (int b = 0; b < n; ++b) {
    double lhs = 0, rhs = 0, scale = 0;
    for (size_t i = 0; i < out; ++i) {
      const double t = double(dy[b * out + i]) * (y_ref[b * out + i] - bias[i]);
      lhs += t;
      scale += std::abs(t);
    }
    for (size_t i = 0; i < in; ++i) rhs += double(dx[b * in + i]) * x[b * in + i];
    EXPECT_NEAR(lhs, rhs, 1e-5 * scale) << "image " << b;
  }
  // The same layer as im2col (set_conv_taps(false)) agrees to rounding: forward by other sums
  // (one dot product over every tap, not one per tap); dx by the same sums in the same order
  // (col2im adds the taps' dot products over the output channels one by one, as the taps do).
  set_conv_taps(false);
  const auto im2col = make_layer(l, m);
  set_conv_taps(true);
  std::vector<float> scratch2(im2col->scratch_floats(n)), y2(n * out), dx2(n * in);
  im2col->forward(x.data(), y2.data(), n, scratch2.data());
  im2col->backward_input(x.data(), y2.data(), dy.data(), dx2.data(), n, scratch2.data());
  double worst_y = 0, worst_dx = 0;
  for (size_t i = 0; i < y.size(); ++i)
    worst_y = std::max(worst_y, std::abs(double(y2[i]) - y[i]) / (1 + std::abs(y[i])));
  for (size_t i = 0; i < dx.size(); ++i)
    worst_dx = std::max(worst_dx, std::abs(double(dx2[i]) - dx[i]) / (1 + std::abs(dx[i])));
  EXPECT_LT(worst_y, 1e-5);
  EXPECT_LT(worst_dx, 1e-5);
  EXPECT_GT(worst_y, 0.0) << "the two forms gave the same bits: were the taps built at all?";
}

// Layers the tap form takes, for the tests below: the paper network's fourth layer (128 -> 128
// over 6x24, stride 2, its phase-split rows as wide as the image), the U-Net's 3x13 bottleneck
// (stride 1), a stride-2 layer whose phase-split rows are wider than the image (odd width) with
// channel counts that fill no whole tile, strides of 2 down and 3 across (phases gathered one by
// one), one deeper than a GEMM pass (300 input channels: the products then add two passes into
// the output), and the chunked layer of the test above (chunks of 2 images).
struct TapCase {
  Shape in;
  const char* layer;
};
const TapCase kTapCases[] = {
    {{128, 6, 24}, R"([{"type":"conv2d","out_channels":128,"kernel":3,"stride":2,"padding":1}])"},
    {{96, 3, 12}, R"([{"type":"conv2d","out_channels":96,"kernel":[3,13],"padding":"same"}])"},
    {{19, 7, 13}, R"([{"type":"conv2d","out_channels":21,"kernel":3,"stride":2,"padding":1}])"},
    {{16, 6, 11},
     R"([{"type":"conv2d","out_channels":17,"kernel":[3,4],"stride":[2,3],"padding":[0,2,1,0]}])"},
    {{300, 3, 6}, R"([{"type":"conv2d","out_channels":17,"kernel":3,"stride":2,"padding":1}])"},
    {{16, 128, 32}, R"([{"type":"conv2d","out_channels":16,"kernel":[3,13],"padding":"same"}])"},
};

// The tap form moves a chunk of 1, 2, 4 or 8 images in and out of its interleaved sides a
// channel at a time, a vector of columns at once (input rows split into phases first where the
// stride across is above 1); any other count entry by entry. Eight images in one call and the
// same images in calls of 3 (entry by entry), 1 and 4 must give every image the same bits,
// forward and backward, with the scratch full of NaNs before each call (nothing unwritten is
// read), and agree with im2col.
TEST(Conv2d, TapFormGivesEachImageTheSameBitsWhateverItsChunksSize) {
  for (const TapCase& c : kTapCases) {
    SCOPED_TRACE(c.layer);
    const Architecture a = resolve_architecture(c.in, json::parse(c.layer));
    const LayerSpec& l = a.layers[0];
    const Model m = random_model(a, 21);
    const auto layer = make_layer(l, m);
    set_conv_taps(false);
    const auto im2col = make_layer(l, m);
    set_conv_taps(true);
    const int n = 8;
    const size_t in = size_t(l.in.size()), out = size_t(l.out.size());
    const std::vector<float> x = test::random_inputs(n * in, 31),
                             dy = test::random_inputs(n * out, 32);
    std::vector<float> scratch;
    auto run = [&](const Layer& f, int b0, int nb, float* y, float* dx) {
      scratch.assign(std::max<size_t>(f.scratch_floats(nb), 1), NAN);
      f.forward(x.data() + b0 * in, y, nb, scratch.data());
      std::fill(scratch.begin(), scratch.end(), NAN);
      f.backward_input(x.data() + b0 * in, y, dy.data() + b0 * out, dx, nb, scratch.data());
    };
    std::vector<float> y(n * out), dx(n * in), y_parts(n * out), dx_parts(n * in);
    run(*layer, 0, n, y.data(), dx.data());
    for (const auto& [b0, nb] : {std::pair{0, 3}, std::pair{3, 1}, std::pair{4, 4}})
      run(*layer, b0, nb, y_parts.data() + b0 * out, dx_parts.data() + b0 * in);
    EXPECT_EQ(y_parts, y);
    EXPECT_EQ(dx_parts, dx);
    // ... and they are the layer's: im2col's forward by other sums, its dx by the same.
    std::vector<float> y2(n * out), dx2(n * in);
    run(*im2col, 0, n, y2.data(), dx2.data());
    EXPECT_LT(TwoForms::worst(y, y2), 1e-5);
    EXPECT_LT(TwoForms::worst(dx, dx2), 1e-5);
    EXPECT_NE(y, y2) << "the same bits as im2col: were the taps built at all?";
  }
}

// The taps' GEMMs with the pixels as rows (ConvTapRows::kPixels) against the channels as rows:
// the same products summed in the same order, so the same bits, forward and backward, whatever
// the batch (one image, which kAuto gives the pixels where tiles are 32 wide, and chunks of
// several: 7 images of the chunked layer in chunks of 2, 2, 2 and 1) and the layer (kTapCases).
TEST(Conv2d, TapFormsWithPixelsOrChannelsAsRowsGiveTheSameBits) {
  for (const TapCase& c : kTapCases) {
    SCOPED_TRACE(c.layer);
    const Architecture a = resolve_architecture(c.in, json::parse(c.layer));
    const Model m = random_model(a, 12);
    set_conv_tap_rows(ConvTapRows::kChannels);
    const auto channels = make_layer(a.layers[0], m);
    set_conv_tap_rows(ConvTapRows::kPixels);
    const auto pixels = make_layer(a.layers[0], m);
    set_conv_tap_rows(ConvTapRows::kAuto);
    const auto automatic = make_layer(a.layers[0], m);
    // Built by taps at all: the im2col form gives other bits forward.
    set_conv_taps(false);
    const auto im2col = make_layer(a.layers[0], m);
    set_conv_taps(true);
    for (int n : {1, 2, 7}) {
      SCOPED_TRACE("batch " + std::to_string(n));
      const TwoForms r = run_two_forms(a.layers[0], *channels, *pixels, n, 40 + n, 50 + n);
      EXPECT_EQ(r.y[1], r.y[0]);
      EXPECT_EQ(r.dx[1], r.dx[0]);
      const TwoForms r2 = run_two_forms(a.layers[0], *channels, *automatic, n, 40 + n, 50 + n);
      EXPECT_EQ(r2.y[1], r2.y[0]);
      EXPECT_EQ(r2.dx[1], r2.dx[0]);
      const TwoForms r3 = run_two_forms(a.layers[0], *channels, *im2col, n, 40 + n, 50 + n);
      EXPECT_LT(TwoForms::worst(r3.y[1], r3.y[0]), 1e-5);
      EXPECT_NE(r3.y[1], r3.y[0]) << "the same bits as im2col: were the taps built at all?";
    }
  }
}

TEST(Conv2d, MatchesAHandComputedExample) {
  // One 3x3 input, one 2x2 kernel, stride 1, padding [0,0,1,1] (bottom/right), bias 0.5.
  const Architecture a = resolve_architecture(
      {1, 3, 3}, json::parse(R"([{"type":"conv2d","out_channels":1,"kernel":2,"padding":[0,0,1,1]}])"));
  Model m = random_model(a, 1);
  m.tensors[0].data = {1, 2, 3, 4};  // [[1,2],[3,4]]
  m.tensors[1].data = {0.5f};
  const auto layer = make_layer(a.layers[0], m);
  const std::vector<float> x = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  std::vector<float> y(9), scratch(layer->scratch_floats(1));
  layer->forward(x.data(), y.data(), 1, scratch.data());
  // y[0,0] = 1*1 + 2*2 + 3*4 + 4*5 = 37; y[0,2] = 1*3 + 3*6 = 21 (right column padded);
  // y[2,2] = 1*9 = 9 (bottom-right corner).
  const std::vector<float> expected = {37.5f, 47.5f, 21.5f, 67.5f, 77.5f, 33.5f, 23.5f, 26.5f, 9.5f};
  EXPECT_EQ(y, expected);
  // dE/dx for dy = 1 everywhere: each input sums the kernel weights that touch it.
  std::vector<float> dy(9, 1.0f), dx(9);
  layer->backward_input(x.data(), y.data(), dy.data(), dx.data(), 1, scratch.data());
  const std::vector<float> expected_dx = {1, 3, 3, 4, 10, 10, 4, 10, 10};
  EXPECT_EQ(dx, expected_dx);
}

TEST(LeakyRelu, UsesTheSlopeAtExactlyZero) {
  const Architecture a = resolve_architecture({1, 1, 2}, json::parse(R"([{"type":"leaky_relu","slope":0.25}])"));
  const Model m = random_model(a, 1);
  const auto layer = make_layer(a.layers[0], m);
  const std::vector<float> x = {0.0f, 2.0f}, dy = {1.0f, 1.0f};
  std::vector<float> y(2), dx(2);
  layer->forward(x.data(), y.data(), 1, nullptr);
  layer->backward_input(x.data(), y.data(), dy.data(), dx.data(), 1, nullptr);
  EXPECT_EQ(dx[0], 0.25f);
  EXPECT_EQ(dx[1], 1.0f);
}

// Swish's gradient takes sigmoid(x) as y / x from the forward pass (4-lane builds: wasm, SSE,
// NEON) or anew from x (AVX, AVX-512): it must hold where that quotient is 0 / 0 or loses digits
// (zero, tiny and subnormal inputs, both signs) and where the exp is clamped (large inputs).
TEST(Swish, GradientHoldsAtZeroTinyAndLargeInputs) {
  const std::vector<float> x = {0.0f, -0.0f, 1e-7f, -1e-7f, 3e-6f, -3e-6f, 1e-40f, -1e-40f,
                                0.5f, -0.5f, 20.0f, -20.0f, 100.0f, -100.0f, 1e-3f, -1e-3f};
  const int len = int(x.size());
  const Architecture a = resolve_architecture({1, 1, len}, json::parse(R"([{"type":"swish"}])"));
  const auto layer = make_layer(a.layers[0], random_model(a, 1));
  const std::vector<float> dy(x.size(), 1.0f);
  std::vector<float> y(x.size()), dx(x.size());
  layer->forward(x.data(), y.data(), 1, nullptr);
  layer->backward_input(x.data(), y.data(), dy.data(), dx.data(), 1, nullptr);
  for (int i = 0; i < len; ++i) {
    const double xi = x[size_t(i)], s = 1 / (1 + std::exp(-xi)), exact = s + xi * s * (1 - s);
    EXPECT_NEAR(dx[size_t(i)], exact, 1e-6 * std::max(1.0, std::abs(exact))) << "x = " << xi;
  }
}

}  // namespace
}  // namespace ebm
