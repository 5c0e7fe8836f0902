// ebm-eval end to end on a tiny bridge set, with energy models and a classifier built so that the
// right answer is known: a bowl whose minimum is a chosen image pulls every sample onto that
// image; a "template" classifier scores how much of each subtype's template drawing an image
// covers.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "bridges/bridges.h"
#include "data_source.h"
#include "ebm/fileio.h"
#include "ebm/image_io.h"
#include "ebm/metrics.h"
#include "ebm/network.h"
#include "evaluate.h"
#include "test_util.h"

namespace ebm {
namespace {

using nlohmann::json;

constexpr int kH = 16, kW = 64, kD = kH * kW, kPerSubtype = 6;

class EvalTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(test::temp_path("eval_bridges"));
    ::mkdir(dir_->c_str(), 0755);
    for (int s = 0; s < bridges::kSubtypeCount; ++s) {
      const bridges::Subtype st = bridges::subtype_at(s);
      const std::string sub = *dir_ + "/" + bridges::subtype_name(st);
      ::mkdir(sub.c_str(), 0755);
      for (int i = 0; i < kPerSubtype; ++i)
        write_png(sub + "/" + std::to_string(i) + ".png",
                  bridges::draw_bridge(st, 1, uint64_t(i), kW, kH).image);
    }
    train::TrainConfig cfg;
    cfg.data = *dir_;
    cfg.val_fraction = 0.25;
    cfg.seed = 3;
    split_ = new DatasetSplit(
        train::split_training_data(train::load_training_data(cfg, {1, kH, kW}), cfg));
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*dir_);
    delete dir_;
    delete split_;
  }

  // The first training image of label l.
  static std::vector<float> train_image(int l) {
    for (int64_t i = 0; i < split_->train.size(); ++i)
      if (split_->train.labels[size_t(i)] == l)
        return std::vector<float>(split_->train.image(i), split_->train.image(i) + kD);
    ADD_FAILURE() << "no training image of label " << l;
    return std::vector<float>(kD, 1.0f);
  }

  // logits_c = 20 * (share of template c's dark pixels that are dark in x), where the templates
  // are the first training image of each subtype. The last layer is the identity, so the features
  // (the penultimate layer) are those eight template scores: the Frechet distance works in 8
  // dimensions, not in one per pixel (1,024, whose eigendecompositions took 90% of each
  // evaluation, 20 s under the sanitizers).
  static std::string template_classifier() {
    const json layers = json::parse(R"([{"type":"affine"},{"type":"flatten"},
                                         {"type":"dense","out_features":8,"bias":false},
                                         {"type":"dense","out_features":8,"bias":false}])");
    Model m = random_model(resolve_architecture({1, kH, kW}, layers), 1, ModelKind::kClassifier);
    m.labels = split_->train.label_names;
    for (Tensor& t : m.tensors) {
      if (t.name == "layers.0.scale") t.data = {-0.5f};
      if (t.name == "layers.0.shift") t.data = {0.5f};
      if (t.name == "layers.2.weight")
        for (int c = 0; c < 8; ++c) {
          const std::vector<float> tpl = train_image(c);
          double dark = 0;
          for (float v : tpl) dark += v < 0 ? 1 : 0;
          for (int p = 0; p < kD; ++p)
            t.data[size_t(c) * kD + p] = tpl[size_t(p)] < 0 ? float(20.0 / dark) : 0.0f;
        }
      if (t.name == "layers.3.weight")
        for (int r = 0; r < 8; ++r)
          for (int c = 0; c < 8; ++c) t.data[size_t(r) * 8 + size_t(c)] = r == c ? 1.0f : 0.0f;
    }
    const std::string path = test::temp_path("eval_classifier.safetensors");
    save_model(path, m, DType::kF32);
    return path;
  }

  // A bowl around `target`, with a card naming the dataset and its split.
  static std::string bowl(const std::vector<float>& target, const std::string& name,
                          int steps = 40, float grad_clip = 0.03f) {
    Model m = test::bowl_model(target, kH, kW, 0.3f);
    m.sampler.steps = steps;
    m.sampler.grad_clip = grad_clip;
    m.card = {{"name", name},
              {"dataset", {{"path", *dir_}, {"images", 8 * kPerSubtype}, {"held_out", 12}}},
              {"training", {{"seed", 3}}}};
    const std::string path = test::temp_path(name + ".safetensors");
    save_model(path, m, DType::kF32);
    return path;
  }

  static eval::EvalResult run(const std::string& model) {
    eval::EvalOptions opt;
    opt.model = model;
    opt.classifier = template_classifier();
    opt.count = 16;
    opt.threads = 1;
    return eval::evaluate(opt);
  }

  static std::string* dir_;
  static DatasetSplit* split_;
};
std::string* EvalTest::dir_ = nullptr;
DatasetSplit* EvalTest::split_ = nullptr;

TEST_F(EvalTest, TheSplitFromTheCardMatchesTraining) {
  const eval::EvalResult r = run(bowl(train_image(0), "split"));
  EXPECT_EQ(r.report["dataset"]["train"], split_->train.size());
  EXPECT_EQ(r.report["dataset"]["held_out"], split_->val.size());
}

double mean_of_doubles(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / double(v.size());
}

// The target whose name starts with `what`, from a report's target table.
const json& target(const json& rep, const std::string& what) {
  for (const json& t : rep["targets"])
    if (t["target"].get<std::string>().rfind(what, 0) == 0) return t;
  ADD_FAILURE() << "no target " << what;
  static const json none = {{"met", nullptr}};
  return none;
}

TEST_F(EvalTest, SamplesThatCopyATrainingImageAreNotNovelAndNotNewTypes) {
  const int label = 2;
  const std::vector<float> img = train_image(label);
  const eval::EvalResult r = run(bowl(img, "copy"));
  const json& rep = r.report;
  // Every sample lands on the image (within the sampler's noise): distance ~0 to the training set.
  EXPECT_LT(rep["novelty"]["samples"]["max"].get<double>(), 0.02);
  EXPECT_EQ(rep["novelty"]["novel_samples"], 0);
  EXPECT_EQ(rep["new_types"]["count"], 0);
  // The samples' sharpness is that image's own mean |x|.
  EXPECT_NEAR(rep["sharpness"]["samples"].get<double>(), sharpness(img.data(), 1, kD)[0], 0.01);
  // All sixteen samples are one image: one subtype, far from the real distribution.
  EXPECT_EQ(rep["coverage"]["subtypes_present"], 1);
  EXPECT_FALSE(rep["coverage"]["all_present"].get<bool>());
  EXPECT_EQ(rep["coverage"]["histogram"][split_->train.label_names[label]], 16);
  EXPECT_GT(rep["frechet"]["ratio"].get<double>(), 3.0);
  EXPECT_FALSE(target(rep, "every subtype")["met"].get<bool>());
  // Every sample is a copy, and as clean as the drawing it copies.
  EXPECT_EQ(rep["copies"]["count"], 16);
  EXPECT_FALSE(target(rep, "copies")["met"].get<bool>());
  EXPECT_LT(rep["speckle"]["samples"].get<double>(), 0.01);
}

TEST_F(EvalTest, DitheredDrawingsFailTheCleanStrokesTarget) {
  // A drawing whose dark strokes are broken into isolated dots (every other pixel of each stroke
  // in a checkerboard): the same layout, the hatching the issue measured on speckled samples.
  std::vector<float> img = train_image(3);
  for (int p = 0; p < kD; ++p)
    if (img[size_t(p)] < 0 && (p / kW + p % kW) % 2) img[size_t(p)] = 1.0f;
  const eval::EvalResult r = run(bowl(img, "dither"));
  const json& rep = r.report;
  EXPECT_GT(rep["speckle"]["ratio"].get<double>(), 2.0);
  EXPECT_FALSE(target(rep, "isolated dark pixels")["met"].get<bool>());
}

TEST_F(EvalTest, AnOverlayOfTwoFamiliesIsANewType) {
  // The union of the dark lines of two templates from different families, drawn crisp (every
  // pixel +-1): both templates fully covered (so the classifier splits its vote), sharp, and
  // unlike any one image.
  const std::vector<float> a = train_image(0),
                           b = train_image(6);  // arch_deck, suspension_inclined
  ASSERT_NE(family_of(split_->train.label_names[0]), family_of(split_->train.label_names[6]));
  std::vector<float> overlay(kD);
  for (int p = 0; p < kD; ++p)
    overlay[size_t(p)] = std::min(a[size_t(p)], b[size_t(p)]) < 0 ? -1.0f : 1.0f;
  const eval::EvalResult r = run(bowl(overlay, "overlay"));
  const json& rep = r.report;
  EXPECT_EQ(rep["new_types"]["hybrids"], 16);
  EXPECT_EQ(rep["novelty"]["novel_samples"], 16);
  EXPECT_GE(rep["sharpness"]["ratio"].get<double>(), 0.9);
  EXPECT_EQ(rep["new_types"]["count"], 16);
  EXPECT_TRUE(target(rep, "new bridge types")["met"].get<bool>());
}

TEST_F(EvalTest, AFaintGreyBlendOfTwoFamiliesIsHybridButNotSharpSoNotANewType) {
  // Both drawings at a quarter strength: the classifier still sees both, but every pixel is grey.
  const std::vector<float> a = train_image(0), b = train_image(6);
  std::vector<float> blend(kD);
  for (int p = 0; p < kD; ++p) blend[size_t(p)] = 0.25f * (a[size_t(p)] + b[size_t(p)]);
  const eval::EvalResult r = run(bowl(blend, "blend"));
  const json& rep = r.report;
  EXPECT_EQ(rep["new_types"]["hybrids"], 16);
  EXPECT_LT(rep["sharpness"]["ratio"].get<double>(), 0.9);
  EXPECT_EQ(rep["new_types"]["count"], 0);
}

TEST_F(EvalTest, WritesTheReportAndPictures) {
  const eval::EvalResult r = run(bowl(train_image(1), "files"));
  const std::string out = test::temp_path("eval_out");
  eval::write_result(out, r);
  const std::vector<uint8_t> text = read_file(out + "/report.json");
  const json back = json::parse(text.begin(), text.end());
  EXPECT_EQ(back["sampling"]["count"], 16);
  EXPECT_EQ(back["targets"].size(), 6u);
  for (const char* png : {"samples.png", "candidates.png", "real.png"}) {
    const Image img = read_gray_image(out + "/" + png);
    EXPECT_GT(img.width, kW) << png;
  }
  const std::vector<uint8_t> md = read_file(out + "/report.md");
  EXPECT_NE(std::string(md.begin(), md.end()).find("| target | goal | measured | met |"),
            std::string::npos);
}

// Multi-grid sampling (--grids): chains start on the coarsest grid's model and end on the given
// one. A bowl around a black page at a quarter of the size pulls every chain to black there; the
// middle grid is flat and the full-size bowl (around a white page) takes two short steps (step
// size 10, the gradient clipped at 0.003), which move a pixel by at most 0.06: from the black grid the samples stay black, from noise alone
// they stay noise.
TEST_F(EvalTest, MultiGridSamplingStartsOnTheCoarsestGridAndEndsOnTheModel) {
  auto grid = [](int h, int w, float a, float target, int steps, const std::string& name) {
    Model m = test::bowl_model(std::vector<float>(size_t(h * w), target), h, w, a);
    m.sampler.steps = steps;
    const std::string path = test::temp_path(name + ".safetensors");
    save_model(path, m, DType::kF32);
    return path;
  };
  const std::string coarse = grid(kH / 4, kW / 4, 0.3f, -1.0f, 40, "grid0");
  const std::string middle = grid(kH / 2, kW / 2, 0.0f, 0.0f, 2, "grid1");
  eval::EvalOptions opt;
  opt.model = bowl(std::vector<float>(kD, 1.0f), "white", 2, 0.003f);
  opt.classifier = template_classifier();
  opt.count = 8;
  opt.threads = 1;
  const json alone = eval::evaluate(opt).report;
  EXPECT_LT(alone["sharpness"]["samples"].get<double>(), 0.7) << alone["sharpness"].dump();
  opt.grids = {coarse, middle};
  const json grids = eval::evaluate(opt).report;
  EXPECT_GT(grids["sharpness"]["samples"].get<double>(), 0.9) << grids["sharpness"].dump();
  EXPECT_GT(grids["energies"]["samples"]["mean"].get<double>(),
            alone["energies"]["samples"]["mean"].get<double>());
  EXPECT_EQ(grids["sampling"]["grids"], json({coarse, middle}));
  EXPECT_EQ(grids["sampling"]["from"], "uniform noise on the coarsest grid (1x4x16), grid by grid to 1x16x64");

  opt.grids = {middle, coarse};
  test::expect_error([&] { eval::evaluate(opt); }, {"not twice the", "coarsest first"});
  opt.grids = {coarse, middle};
  opt.guide = "arch";
  test::expect_error([&] { eval::evaluate(opt); }, {"--grids", "--guide"});
}

// Guided sampling on a bowl around a blank page: unguided, every sample stays blank; the guide
// darkens its target's template strokes (the classifier's input gradient), so the samples become
// that subtype, or a crisp overlay of two subtypes' templates of two families.
TEST_F(EvalTest, GuidanceTowardASubtypeOrAFamilyPairMeetsItsTarget) {
  eval::EvalOptions opt;
  opt.model = bowl(std::vector<float>(kD, 1.0f), "blank");
  opt.classifier = template_classifier();
  opt.count = 16;
  opt.threads = 1;
  const std::vector<std::string>& names = split_->train.label_names;
  const json plain = eval::evaluate(opt).report;
  EXPECT_EQ(plain["coverage"]["histogram"][names[5]], 0);

  opt.guide = names[5];
  opt.guide_scale = 100;
  const json one = eval::evaluate(opt).report;
  EXPECT_EQ(one["guide"]["hits"], 16);
  EXPECT_TRUE(target(one, "samples whose top-1 subtype is " + names[5])["met"].get<bool>());
  EXPECT_TRUE(one["guide"]["judged_by_the_guide"].get<bool>());
  EXPECT_EQ(one["targets"].size(), 5u);  // the guide's, sharpness, Frechet, speckle, copies

  const std::string fa = family_of(names[0]), fb = family_of(names[6]);
  ASSERT_NE(fa, fb);
  // One subtype of each family (this classifier's templates of one family overlap, so a family
  // target lets one subtype win here). The samples all land in the pair, both subtypes occur, and
  // some are hybrids of the two (not the 50% goal: a sharp classifier makes the balanced point a
  // knife edge the chains rarely end on; see models/README.md for the bridge model).
  opt.guide = names[0] + ":0.5," + names[6] + ":0.5";
  const json pair = eval::evaluate(opt).report;
  const json& h = pair["coverage"]["histogram"];
  EXPECT_EQ(h[names[0]].get<int>() + h[names[6]].get<int>(), 16) << h.dump();
  EXPECT_GE(h[names[0]].get<int>(), 1);
  EXPECT_GE(h[names[6]].get<int>(), 1);
  EXPECT_GE(pair["guide"]["hits"].get<int>(), 1);
  EXPECT_EQ(target(pair, "clean " + fa + "+" + fb + " hybrids")["goal"], ">= 50%");
  // The report says how far the target goes for hybrids built from held-out drawings: the same
  // figures as --reference-hybrids gives for that pair at the same count and seed.
  EXPECT_FALSE(one["guide"].contains("reach_of_built_hybrids"));
  const json built = eval::evaluate_reference_hybrids(opt).report;
  bool found = false;
  for (const json& p : built["pairs"])
    if (p["pair"] == fa + "+" + fb || p["pair"] == fb + "+" + fa) {
      found = true;
      for (const char* kind : {"overlay", "sides", "blend"})
        EXPECT_EQ(pair["guide"]["reach_of_built_hybrids"][kind], p[kind]["share"]) << kind;
    }
  EXPECT_TRUE(found);

  // Another file as the guide: the report says the judge is not the guide.
  const std::string copy = test::temp_path("eval_guide_copy.safetensors");
  std::filesystem::copy_file(opt.classifier, copy, std::filesystem::copy_options::overwrite_existing);
  opt.guide_classifier = copy;
  opt.guide = names[5];
  const json other = eval::evaluate(opt).report;
  EXPECT_FALSE(other["guide"]["judged_by_the_guide"].get<bool>());
  EXPECT_EQ(other["guide"]["hits"], 16);
  opt.guide = "truss";
  test::expect_error([&] { eval::evaluate(opt); }, {"unknown guide target 'truss'", "families"});
}

// The reach of the pair target: hybrids built from held-out drawings, each judged as a guided
// pair's samples are. Every reported example is rebuilt here from its two held-out drawings by
// the documented rule and judged again with the classifier.
TEST_F(EvalTest, BuiltHybridsAreJudgedAsAGuidedPairsSamplesAre) {
  eval::EvalOptions opt;
  opt.model = bowl(train_image(0), "built");
  opt.classifier = template_classifier();
  opt.count = 10;
  opt.seed = 5;
  const json rep = eval::evaluate_reference_hybrids(opt).report;

  std::vector<std::string> families;  // the held-out drawings' families
  for (int i = 0; i < int(split_->val.size()); ++i) {
    const std::string f = family_of(split_->val.label_names[size_t(split_->val.labels[size_t(i)])]);
    if (std::find(families.begin(), families.end(), f) == families.end()) families.push_back(f);
  }
  ASSERT_GE(families.size(), 3u);
  ASSERT_EQ(rep["pairs"].size(), families.size() * (families.size() - 1) / 2);

  const Network classifier(load_model(opt.classifier));
  Network::Workspace ws;
  std::vector<float> logits(8);
  const double real_sharp = mean_of_doubles(
      sharpness(split_->val.images.data(), int(split_->val.size()), kD));
  EXPECT_NEAR(rep["criteria"]["real_sharpness"].get<double>(), real_sharp, 1e-12);
  int examples = 0, clean_examples = 0;
  for (const json& pair : rep["pairs"]) {
    const std::string name = pair["pair"];
    const std::string fa = name.substr(0, name.find('+')), fb = name.substr(name.find('+') + 1);
    for (const char* kind : {"overlay", "sides", "blend"}) {
      const json& c = pair[kind];
      EXPECT_EQ(c["count"], 10);
      EXPECT_LE(c["clean_hybrids"].get<int>(), c["mixed"].get<int>()) << name << " " << kind;
      EXPECT_DOUBLE_EQ(c["share"].get<double>(), c["clean_hybrids"].get<int>() / 10.0);
      int read = 0;
      for (const auto& [f, n] : c["top_family"].items()) read += n.get<int>();
      EXPECT_EQ(read, 10);
      ASSERT_EQ(c["examples"].size(), 4u);
      for (int k = 0; k < 4; ++k) {
        const json& e = c["examples"][size_t(k)];
        const int ia = e["held_out"][0], ib = e["held_out"][1];
        const std::string la = split_->val.label_names[size_t(split_->val.labels[size_t(ia)])];
        const std::string lb = split_->val.label_names[size_t(split_->val.labels[size_t(ib)])];
        EXPECT_EQ(family_of(la), fa);
        EXPECT_EQ(family_of(lb), fb);
        const float* a = split_->val.image(ia);
        const float* b = split_->val.image(ib);
        std::vector<float> x(kD);
        for (int p = 0; p < kD; ++p) {
          const bool a_side = (p % kW < kW / 2) == (k % 2 == 0);
          x[size_t(p)] = std::string(kind) == "overlay" ? std::min(a[p], b[p])
                         : std::string(kind) == "sides" ? (a_side ? a[p] : b[p])
                                                        : 0.5f * (a[p] + b[p]);
        }
        classifier.logits(ws, x.data(), 1, logits.data());
        const FamilyMix m = family_mix(logits.data(), classifier.labels());
        EXPECT_EQ(e["read_as"], m.describe()) << name << " " << kind << " " << k;
        const std::string first = m.families[size_t(m.first)];
        const std::string second = m.second >= 0 ? m.families[size_t(m.second)] : "";
        const bool clean = ((first == fa && second == fb) || (first == fb && second == fa)) &&
                           m.mixes(0.25) && sharpness(x.data(), 1, kD)[0] >= 0.9 * real_sharp;
        EXPECT_EQ(e["clean_hybrid"].get<bool>(), clean) << name << " " << kind << " " << k;
        ++examples;
        clean_examples += clean;
      }
    }
  }
  // Both answers occur among the examples (so the comparison above checks each way).
  EXPECT_GT(clean_examples, 0);
  EXPECT_LT(clean_examples, examples);
  // Demanding both families at 50% leaves hardly any drawing a hybrid.
  opt.mix_threshold = 0.5;
  const json strict = eval::evaluate_reference_hybrids(opt).report;
  EXPECT_LE(strict["clean_hybrid_share_built"]["highest"].get<double>(),
            rep["clean_hybrid_share_built"]["highest"].get<double>());

  // A classifier of other families cannot judge this dataset's pairs.
  Model other = load_model(opt.classifier);
  for (size_t i = 0; i < other.labels.size(); ++i) other.labels[i] = "truss_" + std::to_string(i);
  opt.classifier = test::temp_path("eval_truss.safetensors");
  save_model(opt.classifier, other, DType::kF32);
  test::expect_error([&] { eval::evaluate_reference_hybrids(opt); },
                     {"is not one of the classifier's families (truss)", "trained on this dataset"});
}

TEST_F(EvalTest, RefusesAClassifierInPlaceOfTheModelAndMismatchedShapes) {
  eval::EvalOptions opt;
  opt.model = template_classifier();
  opt.classifier = template_classifier();
  test::expect_error([&] { eval::evaluate(opt); }, {"is a classifier", "--model"});
  const Architecture wide = resolve_architecture(
      {1, kH, kW + 4}, json::parse(R"([{"type":"flatten"},{"type":"dense","out_features":1}])"));
  const std::string other = test::temp_path("eval_wide.safetensors");
  save_model(other, random_model(wide, 1), DType::kF32);
  opt.model = other;
  test::expect_error([&] { eval::evaluate(opt); }, {"takes 1x16x64", "makes 1x16x68"});
}

}  // namespace
}  // namespace ebm
