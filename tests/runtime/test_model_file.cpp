// The model file on top of the container: metadata, architecture and tensors must agree, and each
// way they can disagree is refused with a message that names it.
#include <gtest/gtest.h>

#include <cstdio>

#include "ebm/error.h"
#include "ebm/fileio.h"
#include "ebm/model.h"
#include "test_util.h"

namespace ebm {
namespace {

using nlohmann::json;
using test::expect_error;

const json kLayers = json::parse(R"([
  {"type":"conv2d","out_channels":4,"kernel":3,"stride":2,"padding":"same"},
  {"type":"batchnorm","eps":0.001},
  {"type":"swish"},
  {"type":"flatten"},
  {"type":"dense","out_features":1}
])");

Model small_model() {
  return random_model(resolve_architecture({1, 8, 12}, kLayers), 3);
}

TensorFile file_of(const Model& m, DType d = DType::kF32) {
  const std::vector<uint8_t> bytes = serialize_model(m, d);
  return parse_safetensors(bytes.data(), bytes.size());
}

Model reparse(const TensorFile& f) {
  const std::vector<uint8_t> bytes = serialize_safetensors(f);
  return parse_model(bytes.data(), bytes.size());
}

TEST(ModelFile, RoundTripKeepsArchitectureTensorsSamplerAndCard) {
  Model m = small_model();
  m.sampler.steps = 321;
  m.sampler.form = SamplerForm::kTextbook;
  m.sampler.eps = 0.0025f;
  m.card = {{"name", "tiny"}, {"epochs", 3}};
  const std::vector<uint8_t> bytes = serialize_model(m, DType::kF32);
  const Model r = parse_model(bytes.data(), bytes.size());
  EXPECT_EQ(r.arch.layers_json(), m.arch.layers_json());
  EXPECT_EQ(r.arch.input, m.arch.input);
  EXPECT_EQ(r.sampler.steps, 321);
  EXPECT_EQ(r.sampler.form, SamplerForm::kTextbook);
  EXPECT_EQ(r.sampler.eps, 0.0025f);
  EXPECT_EQ(r.card, m.card);
  ASSERT_EQ(r.tensors.size(), m.tensors.size());
  for (const Tensor& t : m.tensors) EXPECT_EQ(r.tensor(t.name).data, t.data) << t.name;
}

TEST(ModelFile, MetadataUsesTheSpecKeys) {
  const TensorFile f = file_of(small_model());
  for (const char* key : {"ebm.format", "ebm.kind", "ebm.input", "ebm.layers", "ebm.sampler", "ebm.card"})
    EXPECT_EQ(f.metadata.count(key), 1u) << key;
  EXPECT_EQ(f.metadata.at("ebm.format"), "1");
  EXPECT_EQ(f.metadata.at("ebm.kind"), "energy");
  EXPECT_EQ(json::parse(f.metadata.at("ebm.input")), json::parse(R"({"channels":1,"height":8,"width":12})"));
  // The stored layer list is explicit: TensorFlow-"same" padding for 3x3/2 on 8x12 is [0,0,1,1].
  EXPECT_EQ(json::parse(f.metadata.at("ebm.layers"))[0]["padding"], json({0, 0, 1, 1}));
}

TEST(ModelFile, ClassifierKeepsItsLabels) {
  json layers = kLayers;
  layers.back()["out_features"] = 3;
  Model m = random_model(resolve_architecture({1, 8, 12}, layers), 4, ModelKind::kClassifier);
  m.labels = {"arch", "beam", "cable"};
  const TensorFile f = file_of(m);
  EXPECT_EQ(f.metadata.at("ebm.kind"), "classifier");
  const Model r = reparse(f);
  EXPECT_EQ(r.kind, ModelKind::kClassifier);
  EXPECT_EQ(r.labels, m.labels);
}

TEST(ModelFile, SaveIsAtomicAndLoadNamesThePath) {
  const std::string path = test::temp_path("model_save.safetensors");
  save_model(path, small_model());
  EXPECT_NO_THROW(load_model(path));
  expect_error([] { load_model("/nonexistent/dir/m.safetensors"); },
               {"/nonexistent/dir/m.safetensors", "cannot open"});
}

// --- rejection cases ------------------------------------------------------------------------

TEST(ModelFileRejects, AFileWithoutFormatVersion) {
  TensorFile f = file_of(small_model());
  f.metadata.erase("ebm.format");
  expect_error([&] { reparse(f); }, {"ebm.format", "not a bridge-ebm model"});
}

TEST(ModelFileRejects, AnUnknownFormatVersion) {
  TensorFile f = file_of(small_model());
  f.metadata["ebm.format"] = "4";
  expect_error([&] { reparse(f); }, {"format version \"4\"", "reads versions \"1\", \"2\" and \"3\""});
}

TEST(ModelFileRejects, AnUnknownKind) {
  TensorFile f = file_of(small_model());
  f.metadata["ebm.kind"] = "generator";
  expect_error([&] { reparse(f); }, {"\"generator\"", "energy", "classifier"});
}

TEST(ModelFileRejects, AClassifierWithoutMatchingLabels) {
  TensorFile f = file_of(small_model());
  f.metadata["ebm.kind"] = "classifier";
  expect_error([&] { reparse(f); }, {"ebm.labels"});
  f.metadata["ebm.labels"] = R"(["a","b"])";
  expect_error([&] { reparse(f); }, {"2 labels", "1 logits"});
}

TEST(ModelFileRejects, AnEnergyModelWithSeveralOutputs) {
  json layers = kLayers;
  layers.back()["out_features"] = 2;
  Model m = random_model(resolve_architecture({1, 8, 12}, layers), 4, ModelKind::kClassifier);
  TensorFile f = file_of(m);
  f.metadata["ebm.kind"] = "energy";
  f.metadata.erase("ebm.labels");
  expect_error([&] { reparse(f); }, {"energy model must output one number", "outputs 2"});
}

TEST(ModelFileRejects, InvalidJsonInTheLayerList) {
  TensorFile f = file_of(small_model());
  f.metadata["ebm.layers"] = "[{\"type\":\"conv2d\",";
  expect_error([&] { reparse(f); }, {"ebm.layers", "not valid JSON"});
}

TEST(ModelFileRejects, AnInvalidInputShape) {
  TensorFile f = file_of(small_model());
  f.metadata["ebm.input"] = R"({"channels":1,"height":0,"width":12})";
  expect_error([&] { reparse(f); }, {"\"height\"", "from 1"});
}

TEST(ModelFileRejects, AnUnknownLayerType) {
  TensorFile f = file_of(small_model());
  json layers = json::parse(f.metadata["ebm.layers"]);
  layers[2]["type"] = "gelu";
  f.metadata["ebm.layers"] = layers.dump();
  expect_error([&] { reparse(f); }, {"layer 2 (gelu)", "unknown layer type"});
}

TEST(ModelFileRejects, AShapeThatDisagreesWithTheLayerList) {
  TensorFile f = file_of(small_model());
  json layers = json::parse(f.metadata["ebm.layers"]);
  layers[0]["out_channels"] = 5;  // the file's tensors are for 4 filters
  layers[1]["channels"] = 5;
  layers[4]["in_features"] = 120;
  f.metadata["ebm.layers"] = layers.dump();
  expect_error([&] { reparse(f); }, {"layers.0.weight", "[4, 1, 3, 3]", "needs [5, 1, 3, 3]"});
}

TEST(ModelFileRejects, ADeclaredSizeThatDisagreesWithTheIncomingShape) {
  TensorFile f = file_of(small_model());
  json layers = json::parse(f.metadata["ebm.layers"]);
  layers[4]["in_features"] = 99;
  f.metadata["ebm.layers"] = layers.dump();
  expect_error([&] { reparse(f); }, {"layer 4 (dense)", "\"in_features\" is 99", "gives 96"});
}

TEST(ModelFileRejects, AMissingTensor) {
  TensorFile f = file_of(small_model());
  f.tensors.erase(f.tensors.begin() + 1);  // layers.0.bias
  expect_error([&] { reparse(f); }, {"needs tensor 'layers.0.bias'", "does not have"});
}

TEST(ModelFileRejects, AnExtraTensor) {
  TensorFile f = file_of(small_model());
  Tensor extra;
  extra.name = "stowaway";
  extra.shape = {2};
  extra.data = {1, 2};
  f.tensors.push_back(extra);
  expect_error([&] { reparse(f); }, {"'stowaway'", "not used by any layer"});
}

TEST(ModelFileRejects, ANegativeBatchNormVariance) {
  Model m = small_model();
  for (Tensor& t : m.tensors)
    if (t.name == "layers.1.running_var") t.data[0] = -1.0f;
  expect_error([&] { serialize_model(m); }, {"layers.1.running_var", "negative"});
}

TEST(ModelFileRejects, AbsurdDimensions) {
  TensorFile f = file_of(small_model());
  f.metadata["ebm.input"] = R"({"channels":1,"height":100000,"width":12})";
  expect_error([&] { reparse(f); }, {"\"height\"", "4096"});
  f = file_of(small_model());
  json layers = json::parse(f.metadata["ebm.layers"]);
  layers[0]["out_channels"] = 1 << 20;
  f.metadata["ebm.layers"] = layers.dump();
  expect_error([&] { reparse(f); }, {"layer 0 (conv2d)", "out_channels"});
  // A dense layer whose weight would need 2^16 x 2^16 floats.
  const json huge = json::parse(R"([{"type":"flatten"},{"type":"dense","out_features":65536},
                                     {"type":"dense","out_features":65536}])");
  expect_error([&] { resolve_architecture({1, 8, 12}, huge); }, {"layer 2 (dense)", "elements"});
}

// A few KB of metadata can describe a network no machine runs: the whole network is bounded,
// not only each layer, so such a file is refused when it is read, not by std::bad_alloc later.
// `layers` (concise form) ends in a dense layer with one input, at index `dense`.
TensorFile file_with_network(const json& input, const json& layers, int dense) {
  TensorFile f = file_of(small_model());
  f.metadata["ebm.input"] = input.dump();
  f.metadata["ebm.layers"] = layers.dump();
  f.tensors.clear();
  Tensor w, b;
  w.name = "layers." + std::to_string(dense) + ".weight";
  w.shape = {1, 1};
  w.data = {0.5f};
  b.name = "layers." + std::to_string(dense) + ".bias";
  b.shape = {1};
  b.data = {0.0f};
  f.tensors = {w, b};
  return f;
}

TEST(ModelFileRejects, ANetworkWhoseActivationsForOneImageExceedTheCap) {
  // 1x4096x4096 through 200 swish layers: about 26 GB of activations and gradients per image.
  json layers = json::array();
  for (int i = 0; i < 200; ++i) layers.push_back({{"type", "swish"}});
  for (const json& l : json::parse(R"([{"type":"avgpool","kernel":64,"stride":64},
      {"type":"avgpool","kernel":64,"stride":64},{"type":"flatten"},{"type":"dense","out_features":1}])"))
    layers.push_back(l);
  const TensorFile f =
      file_with_network({{"channels", 1}, {"height", 4096}, {"width", 4096}}, layers, 203);
  EXPECT_LT(serialize_safetensors(f).size(), 16000u);
  expect_error([&] { reparse(f); },
               {"bytes of activations per image", std::to_string(kMaxActivationBytesPerImage)});
}

TEST(ModelFileRejects, ANetworkWhoseMultiplyAddsPerImageExceedTheCap) {
  // Stride-1 64x64 average pools on 1x1024x1024: little memory, 1.2e10 multiply-adds per image.
  const json layers = json::parse(R"([{"type":"avgpool","kernel":64,"stride":1},
      {"type":"avgpool","kernel":64,"stride":1},{"type":"avgpool","kernel":64,"stride":1},
      {"type":"avgpool","kernel":64,"stride":1},{"type":"avgpool","kernel":64,"stride":64},
      {"type":"avgpool","kernel":12,"stride":12},{"type":"flatten"},{"type":"dense","out_features":1}])");
  const TensorFile f =
      file_with_network({{"channels", 1}, {"height", 1024}, {"width", 1024}}, layers, 7);
  expect_error([&] { reparse(f); },
               {"multiply-adds per image", std::to_string(kMaxMultiplyAddsPerImage)});
}

TEST(ModelFile, ThePresetsAreWellInsideTheNetworkCaps) {
  for (const std::string& name : list_presets()) {
    const Architecture a = load_preset(name).arch;
    EXPECT_LT(a.activation_bytes() * 8, kMaxActivationBytesPerImage) << name;
    EXPECT_LT(a.multiply_adds() * 8, kMaxMultiplyAddsPerImage) << name;
    std::printf("preset %-8s %8.2f MiB of activations, %.3g multiply-adds per image\n",
                name.c_str(), double(a.activation_bytes()) / (1 << 20), double(a.multiply_adds()));
  }
}

TEST(ModelFileRejects, ABatchNormWhoseFoldOverflowsIsRefusedByTheLoader) {
  // weight / sqrt(var + eps) = 3e38 / sqrt(1e-3) overflows F32 once folded into the conv weights:
  // every consumer (catalog, publish, the page, Network) must see the loader's verdict.
  TensorFile f = file_of(small_model());
  for (Tensor& t : f.tensors) {
    if (t.name == "layers.1.weight") t.data.assign(t.data.size(), 3e38f);
    if (t.name == "layers.1.running_var") t.data.assign(t.data.size(), 0.0f);
  }
  expect_error([&] { reparse(f); }, {"folding batch norm", "non-finite"});
}

TEST(ModelFileRejects, AKernelLargerThanItsInput) {
  const json layers = json::parse(R"([{"type":"conv2d","out_channels":2,"kernel":[9,3]},{"type":"flatten"},
                                      {"type":"dense","out_features":1}])");
  expect_error([&] { resolve_architecture({1, 8, 12}, layers); },
               {"layer 0 (conv2d)", "kernel 9", "padded height 8"});
}

TEST(ModelFileRejects, BadSamplerSettings) {
  TensorFile f = file_of(small_model());
  f.metadata["ebm.sampler"] = R"({"form":"paper","step_size":-1})";
  expect_error([&] { reparse(f); }, {"\"step_size\"", "-1"});
  f.metadata["ebm.sampler"] = R"({"form":"hmc"})";
  expect_error([&] { reparse(f); }, {"unknown sampler form 'hmc'"});
  f.metadata["ebm.sampler"] = R"({"stepsize":3})";
  expect_error([&] { reparse(f); }, {"unknown sampler setting \"stepsize\""});
  for (const char* cell : {"0", "-2", "1.5", "\"8\"", "5000"}) {
    f.metadata["ebm.sampler"] = std::string(R"({"start_cell":)") + cell + "}";
    expect_error([&] { reparse(f); }, {"\"start_cell\"", "from 1", cell});
  }
}

TEST(ModelFile, SamplerStartCellRoundTripsAndDefaultsToOnePixel) {
  TensorFile f = file_of(small_model());
  f.metadata["ebm.sampler"] = R"({"steps":7})";  // a file written before the setting existed
  EXPECT_EQ(reparse(f).sampler.start_cell, 1);
  f.metadata["ebm.sampler"] = R"({"start_cell":16})";
  EXPECT_EQ(reparse(f).sampler.start_cell, 16);
  EXPECT_EQ(parse_sampler_params(sampler_params_json(reparse(f).sampler)).start_cell, 16);
}

TEST(ModelFileRejects, ACardThatIsNotAnObject) {
  TensorFile f = file_of(small_model());
  f.metadata["ebm.card"] = "[1,2]";
  expect_error([&] { reparse(f); }, {"ebm.card", "JSON object"});
}

TEST(ModelFileRejects, ACorruptedFileFromDiskWithThePathInTheMessage) {
  const std::string path = test::temp_path("corrupt.safetensors");
  std::vector<uint8_t> bytes = serialize_model(small_model());
  bytes.resize(bytes.size() - 3);
  write_file_atomic(path, bytes);
  expect_error([&] { load_model(path); }, {path, "truncated"});
}

}  // namespace
}  // namespace ebm
