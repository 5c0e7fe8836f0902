// The noise-conditional guide classifier (ebm-train --task classify --noise-conditional): LibTorch
// and the runtime compute the same logits and cross-entropy input gradient with the noise plane,
// a short run learns the subtypes of noised drawings and exports a format-2 classifier that says
// it takes the noise level, resume is exact, and the flag is refused where it makes no sense.
#include <gtest/gtest.h>

#include <filesystem>

#include "../expect_error.h"
#include "checkpoint.h"
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

TrainConfig guide_config(const std::string& work) {
  TrainConfig c;
  c.preset = test::write_preset(work, test::small_preset(64, 16));
  c.task = Task::kClassify;
  c.noise_conditional = true;
  c.sigma_min = 0.02;
  c.sigma_max = 80;
  c.data = test::bridge_set(24);
  c.batch = 16;
  c.lr = 3e-3;
  c.beta1 = 0.9;
  c.threads = 2;
  c.epochs = 100;
  return c;
}

TEST(GuideParity, LibTorchAndTheRuntimeGiveTheSameLogitsAndCrossEntropyGradients) {
  const Preset p = parse_preset(test::small_preset(64, 16), "small");
  EnergyForm f;
  f.scalar_noise = true;
  json layers = classifier_architecture(p.arch, 4).layers_json();
  for (json& l : layers) l.erase("in_channels");
  const Architecture arch = resolve_architecture(layers_input(p.arch.input, f), layers);
  EXPECT_EQ(arch.input.c, 2);
  EnergyNet net(arch, 5, false, f);
  {
    torch::NoGradGuard no_grad;  // weights big enough that the logits are far from uniform
    for (torch::Tensor& t : net->parameters()) t.mul_(3.0);
  }
  const Model m = net->to_model(ModelKind::kClassifier, {"a_1", "a_2", "b_1", "b_2"});
  EXPECT_EQ(m.image_shape(), (Shape{1, 16, 64}));
  const double err = runtime_agreement(*net, m, 4, 11);
  std::printf("worst relative error %.3g\n", err);
  EXPECT_LT(err, 1e-4);
  // The noise level matters: the same images at two levels give different logits.
  Network rt(m);
  const std::vector<float> x(size_t(rt.input_size()), 0.25f);
  std::vector<float> a(4), b(4);
  rt.logits(x.data(), 1, a.data(), 0.05f);
  rt.logits(x.data(), 1, b.data(), 5.0f);
  EXPECT_NE(a, b);
}

TEST(Guide, AShortRunLearnsNoisedSubtypesAndExportsANoiseConditionalClassifier) {
  const std::string work = scratch_dir("guide_short");
  TrainConfig c = guide_config(work);
  c.epochs = 8;
  ASSERT_EQ(run_training(c, quiet(work + "/run")), RunResult::kFinished);
  EXPECT_TRUE(read_run_config(work + "/run").noise_conditional);
  const MetricsTable val = read_metrics(work + "/run/validation.csv");
  ASSERT_EQ(val.rows.size(), 8u);
  for (int l = 0; l < 8; ++l) EXPECT_EQ(val.column("accuracy_" + std::to_string(l)).size(), 8u);
  const double clean = val.column("accuracy_0").back(), noisiest = val.column("accuracy_7").back();
  std::printf("held-out accuracy at sigma 0.02: %.3f, at sigma 80: %.3f (chance 0.125)\n", clean,
              noisiest);
  EXPECT_GT(clean, 0.5);
  EXPECT_LT(noisiest, clean);  // pure noise says little about the subtype

  ExportOptions opt;
  opt.source = work + "/run/checkpoint.pt";
  const Model m = export_checkpoint(read_checkpoint(opt.source), opt);
  EXPECT_EQ(m.kind, ModelKind::kClassifier);
  EXPECT_TRUE(m.energy.scalar_noise);
  EXPECT_FALSE(m.energy.denoiser);
  EXPECT_EQ(m.image_shape(), (Shape{1, 16, 64}));
  EXPECT_EQ(m.card["training"]["noise_conditional"], true);
  EXPECT_EQ(m.card["training"]["noise_levels"]["max"], 80.0);
  EXPECT_TRUE(m.card["training"]["validation"].contains("accuracy_by_sigma"));
  EXPECT_EQ(m.describe()["noise_conditional"], true);
  const std::vector<uint8_t> bytes = serialize_model(m);
  const Model back = parse_model(bytes.data(), bytes.size());
  EXPECT_TRUE(back.energy.scalar_noise);
  Network net(back);
  EXPECT_TRUE(net.noise_conditional());
  std::vector<float> x(size_t(net.input_size()), 1.0f), logits(8);
  test::expect_error([&] { net.logits(x.data(), 1, logits.data()); },
                     {"noise-conditional", "sigma > 0", "clean classifier"});
  net.logits(x.data(), 1, logits.data(), 0.1f);
}

TEST(Guide, HalfThenResumeEqualsStraightBitForBit) {
  const std::string work = scratch_dir("guide_resume");
  TrainConfig c = guide_config(work);
  c.max_steps = 14;  // 172 training images: 10 steps per epoch, so the epoch end is crossed
  ASSERT_EQ(run_training(c, quiet(work + "/straight")), RunResult::kStepLimit);
  TrainConfig half = c;
  half.max_steps = 7;
  ASSERT_EQ(run_training(half, quiet(work + "/split")), RunResult::kStepLimit);
  TrainConfig again = read_run_config(work + "/split");
  again.max_steps = 14;
  ASSERT_EQ(run_training(again, quiet(work + "/split", true)), RunResult::kStepLimit);
  auto state = [](const std::string& dir) {
    Trainer tr(read_run_config(dir), read_checkpoint(dir + "/checkpoint.pt").labels);
    tr.load(dir + "/checkpoint.pt");
    EXPECT_EQ(tr.counters().step, 14);
    return tr.net()->state();
  };
  const auto a = state(work + "/straight"), b = state(work + "/split");
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i)
    EXPECT_TRUE(torch::equal(a[i].second, b[i].second)) << a[i].first;
  EXPECT_EQ(read_metrics(work + "/straight/metrics.csv").column("loss"),
            read_metrics(work + "/split/metrics.csv").column("loss"));
  EXPECT_EQ(read_metrics(work + "/straight/validation.csv").column("accuracy_3"),
            read_metrics(work + "/split/validation.csv").column("accuracy_3"));
}

TEST(Guide, TheFlagIsRefusedWhereItMakesNoSense) {
  const std::string work = scratch_dir("guide_refused");
  TrainConfig c = guide_config(work);
  c.task = Task::kEnergy;
  test::expect_error([&] { run_training(c, quiet(work + "/a")); },
                     {"--noise-conditional", "--task classify"});
  TrainConfig d = guide_config(work);
  d.sigma_min = 5;
  d.sigma_max = 1;
  test::expect_error([&] { run_training(d, quiet(work + "/b")); }, {"--sigma-min", "--sigma-max"});
}

}  // namespace
}  // namespace ebm::train
