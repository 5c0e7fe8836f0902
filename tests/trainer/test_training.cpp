// Training as a whole, on small bridge sets drawn by the generator: resume is exact, the guard
// rolls back and continues, a short run learns real from fake, a classifier learns the subtypes,
// and a checkpoint is a TorchScript archive Python can read.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>

#include <unistd.h>

#include "checkpoint.h"
#include "data_source.h"
#include "ebm/error.h"
#include "ebm/fileio.h"
#include "metrics_csv.h"
#include "run.h"
#include "trainer.h"
#include "trainer_test_util.h"

namespace ebm::train {
namespace {

using test::read_text;
using test::quiet;
using test::scratch_dir;
using test::small_config;

// Every tensor and counter of a checkpoint, for comparing runs: the model (with spectral-norm
// vectors), the replay buffer, the generator state and Adam's moments and step counts.
struct Snapshot {
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  TrainCounters counters;
};

Snapshot snapshot(const std::string& dir) {
  Trainer tr(read_run_config(dir));
  tr.load(dir + "/checkpoint.pt");
  Snapshot s;
  s.counters = tr.counters();
  s.tensors = tr.net()->state();
  s.tensors.emplace_back("buffer", tr.buffer().ordered());
  torch::serialize::InputArchive in;
  in.load_from(dir + "/checkpoint.pt");
  torch::Tensor rng;
  in.read("rng", rng, true);
  s.tensors.emplace_back("rng", rng);
  const torch::optim::Adam& opt = tr.optimizer();
  const auto& params = opt.param_groups().at(0).params();
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& st = static_cast<const torch::optim::AdamParamState&>(
        *opt.state().at(c10::guts::to_string(params[i].unsafeGetTensorImpl())));
    s.tensors.emplace_back("adam.exp_avg." + std::to_string(i), st.exp_avg());
    s.tensors.emplace_back("adam.exp_avg_sq." + std::to_string(i), st.exp_avg_sq());
    s.tensors.emplace_back("adam.step." + std::to_string(i), torch::tensor(st.step()));
  }
  return s;
}

class ResumeBackends : public ::testing::TestWithParam<std::string> {};

TEST_P(ResumeBackends, HalfThenResumeEqualsStraightBitForBit) {
  // N steps straight, against N/2 steps, checkpoint, a new process-like start from the folder,
  // N/2 more. N = 12 crosses an epoch end (7 steps), so validation, pictures and the epoch
  // checkpoint happen in both. Spectral norm is on so its power-iteration vectors must carry over.
  // Exact equality holds because every random draw comes from the checkpointed generator or from
  // seeds fixed by (seed, epoch), and LibTorch's CPU kernels are deterministic for a fixed
  // thread count.
  const std::string work = scratch_dir("resume_" + GetParam());
  TrainConfig c = small_config(work);
  c.spectral_norm = true;
  // "runtime_kl": Du et al.'s KL term and augmentation on (their draws come from the same
  // generator, and the last step's from LibTorch).
  const bool improved = GetParam() == "runtime_kl";
  c.langevin_backend = improved ? "runtime" : GetParam();
  if (improved) {
    c.kl_weight = 0.5;
    c.augment = 0.5;
  }
  c.max_steps = 12;
  ASSERT_EQ(run_training(c, quiet(work + "/straight")), RunResult::kStepLimit);

  TrainConfig half = c;
  half.max_steps = 6;
  ASSERT_EQ(run_training(half, quiet(work + "/split")), RunResult::kStepLimit);
  EXPECT_EQ(read_checkpoint(work + "/split/checkpoint.pt").counters.step, 6);
  TrainConfig again = read_run_config(work + "/split");
  again.max_steps = 12;
  ASSERT_EQ(run_training(again, quiet(work + "/split", true)), RunResult::kStepLimit);

  const Snapshot a = snapshot(work + "/straight");
  const Snapshot b = snapshot(work + "/split");
  EXPECT_EQ(a.counters.step, 12);
  EXPECT_EQ(b.counters.step, 12);
  EXPECT_EQ(a.counters.epoch, b.counters.epoch);
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  EXPECT_EQ(a.tensors.size(), 8 + 8 + 2 + 3 * 8u);  // 8 tensors, 8 sn vectors, buffer, rng, Adam
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    EXPECT_EQ(a.tensors[i].first, b.tensors[i].first);
    EXPECT_TRUE(torch::equal(a.tensors[i].second, b.tensors[i].second)) << a.tensors[i].first;
  }
  // The logged losses agree too, and the split run logged each step once.
  const MetricsTable ma = read_metrics(work + "/straight/metrics.csv");
  const MetricsTable mb = read_metrics(work + "/split/metrics.csv");
  EXPECT_EQ(ma.column("step"), mb.column("step"));
  EXPECT_EQ(ma.column("loss"), mb.column("loss"));
}

INSTANTIATE_TEST_SUITE_P(Resume, ResumeBackends, ::testing::Values("runtime", "torch", "runtime_kl"),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

TEST(Resume, AStepInterruptedDuringLangevinLeavesTheStateUntouched) {
  const std::string work = scratch_dir("interrupt_step");
  TrainConfig c = small_config(work);
  c.architecture = architecture_json(load_preset(c.preset).arch);
  Trainer a(c), b(c);
  const Dataset data = load_training_data(c, config_architecture(c).input);
  const torch::Tensor real =
      torch::from_blob(const_cast<float*>(data.images.data()), {c.batch, 1, 16, 64}).clone();
  std::atomic<bool> stop{true};
  EXPECT_FALSE(b.step(real, {}, &stop).has_value());
  EXPECT_EQ(b.counters().step, 0);
  const StepMetrics ma = *a.step(real, {});
  const StepMetrics mb = *b.step(real, {});
  EXPECT_EQ(ma.loss, mb.loss);
  for (size_t i = 0; i < a.net()->parameters().size(); ++i)
    EXPECT_TRUE(torch::equal(a.net()->parameters()[i], b.net()->parameters()[i]));
}

TEST(Resume, ResumingARunWithoutCheckpointOrStartingOverAnotherIsRefused) {
  const std::string work = scratch_dir("refuse");
  TrainConfig c = small_config(work);
  c.max_steps = 1;
  EXPECT_THROW(run_training(c, quiet(work + "/none", true)), Error);
  ASSERT_EQ(run_training(c, quiet(work + "/run")), RunResult::kStepLimit);
  try {
    run_training(c, quiet(work + "/run"));
    ADD_FAILURE() << "a second run in the same folder must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--resume"), std::string::npos) << e.what();
  }
}

TEST(Resume, ACheckpointOnAnEpochsLastStepValidatesThatEpochOnce) {
  // A timer checkpoint can fall on an epoch's last step, before that epoch's validation. A run
  // killed after the validation row was written but before the epoch's own checkpoint resumes
  // from it and validates the epoch again: its row must then be in validation.csv once.
  const std::string work = scratch_dir("resume_epoch_end");
  TrainConfig c = small_config(work);
  c.epochs = 1;
  const std::string dir = work + "/run";
  ASSERT_EQ(run_training(c, quiet(dir)), RunResult::kFinished);
  {
    // The state such a timer checkpoint holds: every step of epoch 1 done, the epoch not counted.
    Trainer tr(read_run_config(dir));
    tr.load(dir + "/checkpoint.pt");
    ASSERT_EQ(tr.counters().epoch, 1);
    tr.counters().epoch = 0;
    tr.counters().step_in_epoch = tr.counters().step;
    tr.save(dir + "/checkpoint.pt");
  }
  ASSERT_EQ(read_metrics(dir + "/validation.csv").column("epoch"), (std::vector<double>{1}));
  TrainConfig again = read_run_config(dir);
  again.epochs = 2;
  ASSERT_EQ(run_training(again, quiet(dir, true)), RunResult::kFinished);
  EXPECT_EQ(read_metrics(dir + "/validation.csv").column("epoch"), (std::vector<double>{1, 2}));
}

TEST(Resume, EveryStartRemovesTheTemporariesOfKilledRunsAndNothingElse) {
  // kill -9 during an atomic write leaves "<file>.tmp-<pid>-<n>"; any start in the folder removes
  // those of processes no longer running, whatever file they were for, and leaves the rest.
  const std::string work = scratch_dir("stale_tmp");
  const std::string dir = work + "/run";
  std::filesystem::create_directories(dir);
  const std::string dead = std::to_string(test::dead_pid()), live = std::to_string(::getpid());
  const std::vector<std::string> stale = {"checkpoint.pt.tmp-" + dead + "-0",
                                          "metrics.csv.tmp-" + dead + "-3",
                                          "epoch_001_samples.png.tmp-" + dead + "-1"};
  const std::vector<std::string> kept = {"checkpoint.pt.tmp-" + live + "-9", "notes.txt",
                                         "notes.tmp-" + dead};
  for (const std::string& n : stale) write_file_atomic(dir + "/" + n, "half-written");
  for (const std::string& n : kept) write_file_atomic(dir + "/" + n, "mine");
  TrainConfig c = small_config(work);
  c.max_steps = 1;
  ASSERT_EQ(run_training(c, quiet(dir)), RunResult::kStepLimit);
  for (const std::string& n : stale) EXPECT_FALSE(std::filesystem::exists(dir + "/" + n)) << n;
  for (const std::string& n : kept) EXPECT_TRUE(std::filesystem::exists(dir + "/" + n)) << n;
}

class GuardBackends : public ::testing::TestWithParam<std::string> {};

TEST_P(GuardBackends, AnInjectedNanRollsBackLowersTheLearningRateAndTrainingContinues) {
  const std::string work = scratch_dir("guard_" + GetParam());
  TrainConfig c = small_config(work);
  c.langevin_backend = GetParam();
  c.inject_nan_step = 4;  // before the 5th step; the last checkpoint is the one at step 0
  c.max_steps = 9;
  ASSERT_EQ(run_training(c, quiet(work + "/run")), RunResult::kStepLimit);

  const CheckpointInfo info = read_checkpoint(work + "/run/checkpoint.pt");
  EXPECT_EQ(info.counters.step, 9);
  EXPECT_EQ(info.counters.rollbacks, 1);
  for (const auto& [name, t] : info.tensors)
    EXPECT_TRUE(torch::isfinite(t).all().item<bool>()) << name;
  const std::string log = read_text(work + "/run/log.txt");
  EXPECT_NE(log.find("divergence at step 5"), std::string::npos) << log;
  EXPECT_NE(log.find("rolled back to step 0"), std::string::npos) << log;
  EXPECT_NE(log.find("learning rate 0.0001 -> 5e-05"), std::string::npos) << log;
  // Each step logged once, none of them poisoned, and the learning rate halved from the rollback.
  const MetricsTable m = read_metrics(work + "/run/metrics.csv");
  EXPECT_EQ(m.column("step"), (std::vector<double>{1, 2, 3, 4, 5, 6, 7, 8, 9}));
  for (double v : m.column("loss")) EXPECT_TRUE(std::isfinite(v));
  for (double lr : m.column("lr")) EXPECT_DOUBLE_EQ(lr, 5e-5);
}

INSTANTIATE_TEST_SUITE_P(DivergenceGuard, GuardBackends, ::testing::Values("runtime", "torch"),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

TEST(DivergenceGuard, GivesUpWithAClearMessageAfterTheSetNumberOfTries) {
  const std::string work = scratch_dir("guard_give_up");
  TrainConfig c = small_config(work);
  c.inject_nan_step = 2;
  c.max_rollbacks = 0;
  c.max_steps = 5;
  try {
    run_training(c, quiet(work + "/run"));
    ADD_FAILURE() << "expected the guard to give up";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("training diverged at step 3"), std::string::npos) << msg;
    EXPECT_NE(msg.find("--max-rollbacks"), std::string::npos) << msg;
    EXPECT_NE(msg.find("checkpoint.pt"), std::string::npos) << msg;
  }
}

TEST(DivergenceGuard, EnergiesRunningAwayCountAsDivergence) {
  const std::string work = scratch_dir("guard_energy");
  TrainConfig c = small_config(work);
  c.max_energy = 1e-6;  // every step "runs away": the guard must roll back, then give up
  c.max_rollbacks = 2;
  c.max_steps = 5;
  EXPECT_THROW(run_training(c, quiet(work + "/run")), Error);
  const std::string log = read_text(work + "/run/log.txt");
  EXPECT_NE(log.find("rollback 2 of 2"), std::string::npos) << log;
  EXPECT_NE(log.find("learning rate 5e-05 -> 2.5e-05"), std::string::npos) << log;
}

// A smoke run with the paper's Langevin settings (60 steps of size 10, noise 0.005, gradient clip
// 0.03), alpha 0.1 and Adam (0.0, 0.999), on 256 generated bridges at 96x24 with a small network:
// after a few dozen steps, held-out bridges have clearly lower energy than noise and than the
// model's own short-run samples.
TEST(Smoke, AShortRunLearnsLowEnergyForHeldOutBridges) {
  const std::string work = scratch_dir("smoke");
  const std::string data = work + "/bridges";
  test::write_bridge_set(data, 32, 96, 24, 7);
  TrainConfig c;
  c.preset = test::write_preset(work, test::small_preset(96, 24));
  c.data = data;
  c.batch = 32;
  c.lr = 1e-3;   // a few dozen steps must be enough; the default 1e-4 needs more
  c.epochs = 6;  // 230 training images: 7 steps per epoch, 42 steps
  c.sample_count = 4;
  c.sample_steps = 60;
  c.threads = 2;
  ASSERT_EQ(run_training(c, quiet(work + "/run")), RunResult::kFinished);

  const MetricsTable val = read_metrics(work + "/run/validation.csv");
  ASSERT_EQ(val.rows.size(), 6u);
  const double real = val.column("real").back(), noise = val.column("fake").back();
  std::printf("held-out real %.3f, noise %.3f\n", real, noise);
  EXPECT_LT(real + 1.0, noise) << "held-out bridges should have clearly lower energy than noise";

  // Against fresh short-run samples of the model itself (60 Langevin steps from noise).
  TrainConfig cfg = read_run_config(work + "/run");
  Trainer tr(cfg);
  tr.load(work + "/run/checkpoint.pt");
  const Dataset all = load_training_data(cfg, config_architecture(cfg).input);
  const DatasetSplit split = split_training_data(all, cfg);
  torch::NoGradGuard no_grad;
  const torch::Tensor held =
      torch::from_blob(const_cast<float*>(split.val.images.data()), {split.val.size(), 1, 24, 96});
  const double e_real = tr.net()->forward(held).mean().item<double>();
  const double e_buffer = tr.net()->forward(tr.buffer().newest(64)).mean().item<double>();
  std::printf("held-out real %.3f, buffer samples %.3f\n", e_real, e_buffer);
  EXPECT_LT(e_real, e_buffer);
  for (const char* f : {"curves.png", "epoch_006_buffer.png", "epoch_006_samples.png",
                        "epoch_006_chain.png", "run.json", "log.txt"})
    EXPECT_TRUE(std::filesystem::exists(work + "/run/" + f)) << f;
}

TEST(Classifier, LearnsTheBridgeSubtypesAboveChance) {
  const std::string work = scratch_dir("classify");
  TrainConfig c = small_config(work);
  c.task = Task::kClassify;
  c.data = test::bridge_set(24);
  c.lr = 3e-3;
  c.beta1 = 0.9;
  c.epochs = 8;
  ASSERT_EQ(run_training(c, quiet(work + "/run")), RunResult::kFinished);
  const MetricsTable val = read_metrics(work + "/run/validation.csv");
  const double acc = val.column("accuracy").back();
  std::printf("held-out accuracy %.3f (chance 0.125)\n", acc);
  EXPECT_GT(acc, 0.5);
  const CheckpointInfo info = read_checkpoint(work + "/run/checkpoint.pt");
  EXPECT_EQ(info.kind, ModelKind::kClassifier);
  EXPECT_EQ(info.labels.size(), 8u);
  EXPECT_EQ(info.labels.front(), "arch_deck");  // folder names, sorted
}

TEST(Checkpoint, IsATorchScriptArchivePythonLoads) {
  const std::string python = EBM_PYTHON;
  if (python.empty() || std::system((python + " -c 'import torch' 2>/dev/null").c_str()) != 0)
    GTEST_SKIP() << "Debian's python3-torch is not installed (apt-get install python3-torch); "
                    "skipping the torch.jit.load check";
  const std::string work = scratch_dir("python_load");
  TrainConfig c = small_config(work);
  c.max_steps = 2;
  ASSERT_EQ(run_training(c, quiet(work + "/run")), RunResult::kStepLimit);
  const std::string script = work + "/load.py";
  write_file_atomic(script, std::string(R"(
import json, sys, torch
m = torch.jit.load(sys.argv[1])
assert m.format == "bridge-ebm checkpoint 1", m.format
cfg = json.loads(m.config)
w = m.model.layers_0_weight
print(m.step, m.epoch, tuple(w.shape), tuple(m.buffer.shape), cfg["batch"], m.kind)
)"));
  const std::string out = work + "/out.txt";
  ASSERT_EQ(
      std::system((python + " " + script + " " + work + "/run/checkpoint.pt > " + out).c_str()), 0);
  EXPECT_EQ(read_text(out), "2 0 (8, 1, 3, 3) (48, 1, 16, 64) 16 energy\n");
}

}  // namespace
}  // namespace ebm::train
