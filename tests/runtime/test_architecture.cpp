#include <gtest/gtest.h>

#include "ebm/architecture.h"
#include "ebm/error.h"
#include "test_util.h"

namespace ebm {
namespace {

using nlohmann::json;
using test::expect_error;

std::string preset_path(const std::string& name) {
  return std::string(EBM_TEST_MODELS_DIR) + "/presets/" + name + ".json";
}

TEST(Presets, PaperHasExactly832257ParametersCountedAsKerasDoes) {
  const Preset p = load_preset(preset_path("paper"));
  EXPECT_EQ(p.arch.parameter_count(), 832257);
  int64_t bn = 0;
  for (const LayerSpec& l : p.arch.layers)
    if (l.kind == LayerKind::kBatchNorm) bn += 2 * l.out.c;  // running mean and variance
  EXPECT_EQ(bn, 704);  // Table 1's non-trainable parameters
}

TEST(Presets, PaperShapesFollowTable1) {
  const Preset p = load_preset(preset_path("paper"));
  EXPECT_EQ(p.arch.input, (Shape{1, 48, 192}));
  std::vector<Shape> conv_out;
  for (const LayerSpec& l : p.arch.layers)
    if (l.kind == LayerKind::kConv2d) conv_out.push_back(l.out);
  const std::vector<Shape> expected = {{32, 24, 96}, {64, 12, 48}, {128, 6, 24}, {128, 3, 12}};
  EXPECT_EQ(conv_out, expected);
  EXPECT_EQ(p.arch.layers[12].out, (Shape{4608, 1, 1}));  // flatten
  EXPECT_EQ(p.arch.output(), (Shape{1, 1, 1}));
  // TensorFlow "same" for 5x5 stride 2 on 48x192: 3 rows and 3 columns of padding, the odd one
  // at the bottom/right; for 3x3 stride 2 on even sizes, one row/column at the bottom/right.
  EXPECT_EQ(p.arch.layers[0].pad.top, 1);
  EXPECT_EQ(p.arch.layers[0].pad.bottom, 2);
  EXPECT_EQ(p.arch.layers[0].pad.left, 1);
  EXPECT_EQ(p.arch.layers[0].pad.right, 2);
  EXPECT_EQ(p.arch.layers[3].pad.top, 0);
  EXPECT_EQ(p.arch.layers[3].pad.bottom, 1);
  // Per-layer counts of Table 1.
  auto count = [](const LayerSpec& l) {
    int64_t n = 0;
    for (const TensorRef& t : l.tensors) {
      int64_t k = 1;
      for (int64_t d : t.shape) k *= d;
      n += k;
    }
    return n;
  };
  EXPECT_EQ(count(p.arch.layers[0]), 832);
  EXPECT_EQ(count(p.arch.layers[1]), 128);
  EXPECT_EQ(count(p.arch.layers[3]), 18496);
  EXPECT_EQ(count(p.arch.layers[6]), 73856);
  EXPECT_EQ(count(p.arch.layers[9]), 147584);
  EXPECT_EQ(count(p.arch.layers[13]), 589952);
  EXPECT_EQ(count(p.arch.layers[15]), 129);
}

TEST(Presets, BookIsTheMnistNetworkOfExample7_3) {
  const Preset p = load_preset(preset_path("book"));
  EXPECT_EQ(p.arch.input, (Shape{1, 32, 32}));
  std::vector<Shape> conv_out;
  for (const LayerSpec& l : p.arch.layers)
    if (l.kind == LayerKind::kConv2d) conv_out.push_back(l.out);
  const std::vector<Shape> expected = {{16, 16, 16}, {32, 8, 8}, {64, 4, 4}, {64, 2, 2}};
  EXPECT_EQ(conv_out, expected);
  // 16*25+16 + 32*16*9+32 + 64*32*9+64 + 64*64*9+64 + 256*64+64 + 64+1
  EXPECT_EQ(p.arch.parameter_count(), 416 + 4640 + 18496 + 36928 + 16448 + 65);
}

TEST(Presets, EveryPresetInTheFolderLoads) {
  setenv("EBM_PRESETS_DIR", (std::string(EBM_TEST_MODELS_DIR) + "/presets").c_str(), 1);
  const std::vector<std::string> names = list_presets();
  EXPECT_GE(names.size(), 2u);
  for (const std::string& n : names) EXPECT_NO_THROW(load_preset(n)) << n;
  expect_error([] { load_preset("no_such_preset"); }, {"unknown preset 'no_such_preset'", "paper"});
}

TEST(Architecture, ExplicitFormResolvesToTheSameArchitecture) {
  const Preset p = load_preset(preset_path("paper"));
  const Architecture again = resolve_architecture(p.arch.input, p.arch.layers_json());
  EXPECT_EQ(again.layers_json(), p.arch.layers_json());
  EXPECT_EQ(again.parameter_count(), p.arch.parameter_count());
}

TEST(Architecture, PaddingAcceptsEveryDocumentedForm) {
  const Shape in{1, 10, 10};
  auto pad_of = [&](const json& padding) {
    json layers = json::array({{{"type", "conv2d"}, {"out_channels", 1}, {"kernel", 3}, {"padding", padding}}});
    return resolve_architecture(in, layers).layers[0].pad;
  };
  Padding p = pad_of(1);
  EXPECT_EQ(p.top + p.left + p.bottom + p.right, 4);
  p = pad_of(json({2, 0}));
  EXPECT_EQ(p.top, 2);
  EXPECT_EQ(p.left, 0);
  p = pad_of(json({0, 1, 2, 3}));
  EXPECT_EQ(p.left, 1);
  EXPECT_EQ(p.right, 3);
  p = pad_of("valid");
  EXPECT_EQ(p.bottom, 0);
  expect_error([&] { pad_of("full"); }, {"layer 0 (conv2d)", "\"padding\""});
}

TEST(Architecture, RejectsUnknownKeysSoTyposNeverPassSilently) {
  expect_error([] { resolve_architecture({1, 8, 8}, json::parse(R"([{"type":"conv2d","out_channels":2,"kernal":3}])")); },
               {"layer 0 (conv2d)", "unknown key \"kernal\""});
}

TEST(Architecture, RejectsDenseOnASpatialInput) {
  expect_error([] { resolve_architecture({1, 8, 8}, json::parse(R"([{"type":"dense","out_features":2}])")); },
               {"layer 0 (dense)", "flatten"});
}

TEST(Architecture, RejectsATensorNameUsedTwice) {
  const json layers = json::parse(R"([
    {"type":"conv2d","out_channels":1,"kernel":1,"tensors":{"weight":"w"}},
    {"type":"conv2d","out_channels":1,"kernel":1,"tensors":{"weight":"w"}}])");
  expect_error([&] { resolve_architecture({1, 4, 4}, layers); }, {"layer 1", "'w'", "two layers"});
}

TEST(Architecture, GlobalAveragePoolingCoversTheWholeInput) {
  const Architecture a = resolve_architecture({3, 5, 7}, json::parse(R"([{"type":"avgpool","kernel":"global"}])"));
  EXPECT_EQ(a.layers[0].out, (Shape{3, 1, 1}));
}

}  // namespace
}  // namespace ebm
