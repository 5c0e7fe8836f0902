// Data-parallel ebm-train (distributed.h) as a user runs it: N processes on loopback, started with
// the variables torchrun sets. Two processes train what one does (classify, dsm, the guard's
// rollback); contrastive divergence interrupted on one rank and resumed equals an uninterrupted
// run bit for bit; a killed, stalled or drifting rank ends the run with a message naming it and a
// whole checkpoint; bad settings are refused naming the fix.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "checkpoint.h"
#include "ebm/fileio.h"
#include "ebm/model.h"
#include "metrics_csv.h"
#include "trainer.h"
#include "trainer_test_util.h"

namespace ebm::train {
namespace {

using test::read_text;
using test::scratch_dir;
using test::spawn;
using test::wait_for;
using Clock = std::chrono::steady_clock;

// A port nobody listens on now (the kernel's pick for port 0). Another program may take it before
// rank 0 binds it: start_ranks then tries again with another.
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

struct Setup {
  std::string work, data, preset, wide, unet;
};

// 16 drawings of each subtype at 64x16 (115 training images: 7 steps of 16 per epoch).
const Setup& setup() {
  static Setup s;
  if (s.work.empty()) {
    s.work = scratch_dir("distributed");
    s.data = s.work + "/bridges";
    test::write_bridge_set(s.data, 16, 64, 16);
    s.preset = test::write_preset(s.work, test::small_preset(64, 16));
    // A dense layer of 164k weights (655 KB): the gradients leave in two buckets.
    nlohmann::json wide = test::small_preset(64, 16);
    wide["layers"][5]["out_features"] = 160;
    std::filesystem::create_directories(s.work + "/wide");
    s.wide = test::write_preset(s.work + "/wide", wide);
    std::filesystem::create_directories(s.work + "/unet");
    s.unet = test::write_preset(s.work + "/unet", test::small_unet_preset());
  }
  return s;
}

std::vector<std::string> train_args(const std::string& run_dir, std::vector<std::string> extra) {
  std::vector<std::string> a = {EBM_TRAIN_EXE,    "--data", setup().data,     "--run", run_dir,
                                "--batch",        "16",     "--threads",      "1",     "--quiet",
                                "--sample-count", "2",      "--sample-steps", "10"};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

// N processes of one run, rank r with `args(r)` and its output in `<log>.<r>`.
struct Ranks {
  std::vector<pid_t> pids;
  std::vector<std::string> logs;
  std::string log(int r) const { return read_text(logs[size_t(r)]); }
  std::string all_logs() const {
    std::string s;
    for (size_t r = 0; r < logs.size(); ++r)
      s += "--- rank " + std::to_string(r) + ":\n" + read_text(logs[r]);
    return s;
  }
  std::vector<int> wait_all() {
    std::vector<int> codes;
    for (pid_t p : pids) codes.push_back(wait_for(p));
    pids.clear();
    return codes;
  }
  // Every process this test started ends with it, whatever the test's outcome.
  ~Ranks() {
    for (pid_t p : pids) {
      ::kill(p, SIGKILL);
      wait_for(p);
    }
  }
};

Ranks start_ranks(int n, const std::function<std::vector<std::string>(int)>& args,
                  const std::string& log, double timeout_s = 30) {
  const int port = free_port();
  Ranks ranks;
  for (int r = 0; r < n; ++r) {
    std::vector<std::string> a = args(r);
    a.insert(a.end(), {"--dist-timeout", std::to_string(timeout_s)});
    ranks.logs.push_back(log + "." + std::to_string(r));
    ranks.pids.push_back(spawn(a, ranks.logs.back(),
                               {{"RANK", std::to_string(r)},
                                {"WORLD_SIZE", std::to_string(n)},
                                {"MASTER_ADDR", "127.0.0.1"},
                                {"MASTER_PORT", std::to_string(port)}}));
  }
  return ranks;
}

// Runs N ranks to the end; a port taken between free_port() and rank 0's bind is retried.
std::vector<int> run_ranks(int n, const std::function<std::vector<std::string>(int)>& args,
                           const std::string& log, std::string* output = nullptr) {
  for (int attempt = 0;; ++attempt) {
    Ranks ranks = start_ranks(n, args, log);
    const std::vector<int> codes = ranks.wait_all();
    if (output) *output = ranks.all_logs();
    if (attempt < 3 && ranks.log(0).find("ddress already in use") != std::string::npos) continue;
    return codes;
  }
}

std::vector<int> repeat(int n, int code) {
  return std::vector<int>(size_t(n), code);
}

using Tensors = std::map<std::string, torch::Tensor>;

// The model tensors of a checkpoint by name (the moving average under dsm, as the export reads).
Tensors model_tensors(const std::string& run_dir) {
  Tensors out;
  for (const auto& [name, t] : read_checkpoint(run_dir + "/checkpoint.pt").tensors) out[name] = t;
  return out;
}

// The same tensors as the run started: a Trainer made from its configuration (the seed sets the
// weights). The denoiser's mean image is left out (it is set from the data, not trained).
Tensors initial_tensors(const std::string& run_dir) {
  const Trainer tr(read_run_config(run_dir), read_checkpoint(run_dir + "/checkpoint.pt").labels);
  Tensors out;
  for (const auto& [name, t] : tr.model_net()->state())
    if (name != kEnergyMeanTensor) out[name] = t;
  return out;
}

// Largest element-wise difference over the tensors `b` has.
double max_difference(const Tensors& a, const Tensors& b) {
  double d = 0;
  for (const auto& [name, t] : b) {
    EXPECT_TRUE(a.count(name)) << name;
    if (a.count(name)) d = std::max(d, (a.at(name) - t).abs().max().item<double>());
  }
  return d;
}

// One process and two with the same global batch train the same weights: the two see the two
// halves of every batch, average their gradients, and agree on the logged loss. The differences
// are float rounding (sums in another order): under 0.1% of how far training moved the weights,
// where a missing average or a wrong slice is of the order of the movement itself.
// Adam's epsilon is raised from 1e-8 to 1e-3: Adam divides each gradient element by its running
// RMS, so an element whose gradient is nearly zero turns rounding into steps of the learning
// rate's size (the denoiser, measured: one tensor 1e-4 apart after 9 steps, a quarter of that
// between one process at 1 and at 2 threads). With 1e-3 the runs agree to about 1e-7.
// Returns the folder holding both runs (one/, two/).
std::string expect_two_match_one(const std::string& name, const std::vector<std::string>& extra,
                                 int steps) {
  const std::string work = scratch_dir(name);
  std::vector<std::string> e = extra;
  e.insert(e.end(), {"--max-steps", std::to_string(steps), "--adam-eps", "1e-3"});
  std::string out;
  EXPECT_EQ(test::wait_for(spawn(train_args(work + "/one", e), work + "/one.log")), 0)
      << read_text(work + "/one.log");
  // Rank 1 is given a run folder of its own: it must never create it (rank 0 owns the run).
  EXPECT_EQ(run_ranks(
                2, [&](int r) { return train_args(work + (r == 0 ? "/two" : "/not_rank1s"), e); },
                work + "/two.log", &out),
            repeat(2, 0))
      << out;
  EXPECT_FALSE(std::filesystem::exists(work + "/not_rank1s"));

  const Tensors one = model_tensors(work + "/one"), two = model_tensors(work + "/two");
  EXPECT_EQ(one.size(), two.size());
  const double diff = max_difference(one, two);
  const double moved = max_difference(one, initial_tensors(work + "/one"));
  std::printf(
      "%s: one process against two, largest weight difference %.3g; training moved "
      "the weights by up to %.3g\n",
      name.c_str(), diff, moved);
  EXPECT_GT(moved, 1e-3);
  EXPECT_LT(diff, 1e-3 * moved) << "one process against two: " << diff << ", moved " << moved;
  EXPECT_EQ(read_checkpoint(work + "/two/checkpoint.pt").counters.step, steps);

  const MetricsTable m1 = read_metrics(work + "/one/metrics.csv");
  const MetricsTable m2 = read_metrics(work + "/two/metrics.csv");
  EXPECT_EQ(m1.column("step"), m2.column("step"));
  const std::vector<double> l1 = m1.column("loss"), l2 = m2.column("loss");
  for (size_t i = 0; i < l1.size() && i < l2.size(); ++i)
    EXPECT_NEAR(l1[i], l2[i], 1e-4 * std::abs(l1[i]) + 1e-6) << "step " << i + 1;
  EXPECT_NE(read_text(work + "/two/log.txt").find("data parallel: 2 processes"), std::string::npos);
  return work;
}

TEST(Distributed, TwoProcessesTrainTheClassifierOneProcessTrains) {
  // 16 steps: two epochs' ends (validation, replica check, checkpoint) and two steps beyond.
  const std::string work =
      expect_two_match_one("dist_classify", {"--task", "classify", "--preset", setup().wide}, 16);
  EXPECT_NE(read_text(work + "/two/log.txt").find("all-reduce in 2 buckets"), std::string::npos);
}

TEST(Distributed, TwoProcessesTrainTheDenoiserOneProcessTrains) {
  // Noise levels and noise are drawn for the global batch on every rank: each takes its slice.
  expect_two_match_one("dist_dsm", {"--preset", setup().unet}, 9);
}

TEST(Distributed, TheDivergenceGuardRollsBackEveryRankTogether) {
  // A NaN before step 3 on every rank: the ranks agree the step was unhealthy, reload rank 0's
  // checkpoint together (the others read no file: rank 0 sends it) and go on as one process does.
  const std::string work = expect_two_match_one(
      "dist_rollback", {"--task", "classify", "--preset", setup().preset, "--inject-nan", "3"}, 10);
  const std::string log = read_text(work + "/two/log.txt");
  EXPECT_NE(log.find("(loss nan (non-finite)): rolled back to step 0"), std::string::npos) << log;
}

// Contrastive divergence: every rank its own chains and buffer part. Interrupting one rank stops
// both after the same step with one checkpoint holding both ranks' state; resuming gives, bit for
// bit, the run that was never interrupted.
TEST(Distributed, ContrastiveDivergenceInterruptedOnOneRankResumesBitForBit) {
  const std::string work = scratch_dir("dist_cd");
  const std::vector<std::string> cd = {"--preset",      setup().preset, "--langevin-steps", "10",
                                       "--buffer-size", "256",          "--epochs",         "1000"};
  auto with = [&](std::vector<std::string> a, std::vector<std::string> b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };
  std::string out;
  ASSERT_EQ(run_ranks(
                2,
                [&](int) {
                  return train_args(work + "/straight", with(cd, {"--max-steps", "20"}));
                },
                work + "/straight.log", &out),
            repeat(2, 0))
      << out;

  {
    Ranks ranks = start_ranks(
        2, [&](int) { return train_args(work + "/split", cd); }, work + "/split.log");
    ASSERT_GE(test::wait_for_rows(work + "/split", 3), 3u) << ranks.all_logs();
    ::kill(ranks.pids[1], SIGINT);  // Ctrl-C on rank 1 alone
    EXPECT_EQ(ranks.wait_all(), repeat(2, 130)) << ranks.all_logs();
  }
  const CheckpointInfo cut = read_checkpoint(work + "/split/checkpoint.pt");
  ASSERT_LT(cut.counters.step, 20) << "the interrupt came too late for this test";
  EXPECT_EQ(read_metrics(work + "/split/metrics.csv").rows.size(), size_t(cut.counters.step));

  // One process cannot take over a two-process chain state: refused, checkpoint untouched.
  const std::vector<uint8_t> before = read_file(work + "/split/checkpoint.pt");
  ASSERT_EQ(test::wait_for(spawn({EBM_TRAIN_EXE, "--run", work + "/split", "--resume", "--quiet"},
                                 work + "/alone.log")),
            1);
  EXPECT_NE(read_text(work + "/alone.log").find("resume it with WORLD_SIZE=2"), std::string::npos)
      << read_text(work + "/alone.log");
  EXPECT_EQ(read_file(work + "/split/checkpoint.pt"), before);

  ASSERT_EQ(run_ranks(
                2,
                [&](int) {
                  return std::vector<std::string>{EBM_TRAIN_EXE, "--run",       work + "/split",
                                                  "--resume",    "--max-steps", "20",
                                                  "--threads",   "1",           "--quiet"};
                },
                work + "/resume.log", &out),
            repeat(2, 0))
      << out;

  // Everything both ranks carry: the weights, Adam, rank 0's and rank 1's buffer and generator.
  torch::serialize::InputArchive a, b;
  a.load_from(work + "/straight/checkpoint.pt");
  b.load_from(work + "/split/checkpoint.pt");
  for (const char* key : {"buffer", "rng"}) {
    torch::Tensor ta, tb;
    a.read(key, ta, true);
    b.read(key, tb, true);
    EXPECT_TRUE(torch::equal(ta, tb)) << key;
  }
  torch::serialize::InputArchive ra, rb;
  a.read("ranks", ra);
  b.read("ranks", rb);
  for (const char* key : {"state_1", "rng_1"}) {
    torch::Tensor ta, tb;
    ra.read(key, ta, true);
    rb.read(key, tb, true);
    EXPECT_TRUE(torch::equal(ta, tb)) << key;
  }
  torch::Tensor buf0, buf1;
  a.read("buffer", buf0, true);
  ra.read("state_1", buf1, true);
  EXPECT_EQ(buf0.size(0), 128) << "each rank keeps half of --buffer-size 256";
  EXPECT_FALSE(torch::equal(buf0, buf1)) << "the ranks run chains of their own";
  const Tensors ma = model_tensors(work + "/straight"), mb = model_tensors(work + "/split");
  EXPECT_EQ(ma.size(), mb.size());
  for (const auto& [name, t] : ma) EXPECT_TRUE(torch::equal(t, mb.at(name))) << name;
  EXPECT_EQ(read_metrics(work + "/straight/metrics.csv").column("loss"),
            read_metrics(work + "/split/metrics.csv").column("loss"));
}

// Starts a long two-rank contrastive-divergence run in `dir` and waits for its third step.
Ranks start_long_run(const std::string& dir, double timeout_s) {
  Ranks ranks = start_ranks(
      2,
      [&](int) {
        return train_args(dir, {"--preset", setup().preset, "--langevin-steps", "10",
                                "--buffer-size", "256", "--epochs", "1000"});
      },
      dir + ".log", timeout_s);
  EXPECT_GE(test::wait_for_rows(dir, 3), 3u) << ranks.all_logs();
  return ranks;
}

TEST(Distributed, AKilledRankEndsTheRunNamingItAndTheCheckpointResumes) {
  const std::string dir = scratch_dir("dist_kill") + "/run";
  {
    Ranks ranks = start_long_run(dir, 10);
    ::kill(ranks.pids[1], SIGKILL);
    const Clock::time_point t0 = Clock::now();
    EXPECT_EQ(wait_for(ranks.pids[0]), 1);
    // Within the timeout (a dead process's connections close at once, so mostly at once).
    EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 10 + 2 + 5);
    EXPECT_EQ(wait_for(ranks.pids[1]), 128 + SIGKILL);
    ranks.pids.clear();
    const std::string log = ranks.log(0);
    EXPECT_NE(log.find("rank 1 of 2 stopped"), std::string::npos) << log;
    EXPECT_NE(log.find("is whole: start every process again with --resume"), std::string::npos);
    EXPECT_NE(read_text(dir + "/log.txt").find("stopped: rank 1"), std::string::npos);
  }
  const int64_t step = read_checkpoint(dir + "/checkpoint.pt").counters.step;
  std::string out;
  ASSERT_EQ(run_ranks(
                2,
                [&](int) {
                  return std::vector<std::string>{
                      EBM_TRAIN_EXE, "--run",       dir,
                      "--resume",    "--max-steps", std::to_string(step + 3),
                      "--threads",   "1",           "--quiet"};
                },
                dir + ".resume", &out),
            repeat(2, 0))
      << out;
  const std::vector<double> steps = read_metrics(dir + "/metrics.csv").column("step");
  ASSERT_EQ(steps.size(), size_t(step + 3));
  for (size_t i = 0; i < steps.size(); ++i) EXPECT_EQ(steps[i], double(i + 1));
}

TEST(Distributed, AStalledRankEndsTheRunWithinTheTimeout) {
  const std::string dir = scratch_dir("dist_stall") + "/run";
  Ranks ranks = start_long_run(dir, 5);
  ::kill(ranks.pids[1], SIGSTOP);  // alive, connections open, silent
  const Clock::time_point t0 = Clock::now();
  EXPECT_EQ(wait_for(ranks.pids[0]), 1);
  const double waited = std::chrono::duration<double>(Clock::now() - t0).count();
  EXPECT_LT(waited, 5 + 2 + 5) << "timeout 5 s, diagnosis up to 2 s, and slack";
  ranks.pids.erase(ranks.pids.begin());  // the destructor kills the stopped rank 1
  const std::string log = ranks.log(0);
  EXPECT_NE(log.find("rank 1 of 2 stopped: no heartbeat"), std::string::npos) << log;
  EXPECT_NO_THROW(read_checkpoint(dir + "/checkpoint.pt"));
}

TEST(Distributed, ADeadRankZeroEndsTheOthersNamingIt) {
  const std::string dir = scratch_dir("dist_kill0") + "/run";
  Ranks ranks = start_long_run(dir, 10);
  ::kill(ranks.pids[0], SIGKILL);
  EXPECT_EQ(wait_for(ranks.pids[1]), 1);
  EXPECT_EQ(wait_for(ranks.pids[0]), 128 + SIGKILL);
  ranks.pids.clear();
  const std::string log = ranks.log(1);
  EXPECT_NE(log.find("rank 0 is gone"), std::string::npos) << log;
  EXPECT_NO_THROW(read_checkpoint(dir + "/checkpoint.pt"));
}

TEST(Distributed, ARankThatWakesAfterRankZeroDiedEndsNamingIt) {
  // Rank 1 sleeps through rank 0's death, so its first writes after waking go to closed sockets.
  // Such a write raises SIGPIPE, whose default action killed the process silently (exit 141);
  // the rank must fail the write instead and say which rank is gone.
  const std::string dir = scratch_dir("dist_wake") + "/run";
  Ranks ranks = start_long_run(dir, 10);
  ::kill(ranks.pids[1], SIGSTOP);
  ::kill(ranks.pids[0], SIGKILL);
  EXPECT_EQ(wait_for(ranks.pids[0]), 128 + SIGKILL);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the kernel resets its sockets
  ::kill(ranks.pids[1], SIGCONT);
  EXPECT_EQ(wait_for(ranks.pids[1]), 1);
  ranks.pids.clear();
  const std::string log = ranks.log(1);
  EXPECT_NE(log.find("rank 0 is gone"), std::string::npos) << log;
}

TEST(Distributed, WeightsThatDriftApartStopTheRunAtTheEpochsEnd) {
  // Rank 1 nudges one weight before step 2: at the end of epoch 1 (step 7) the fingerprints
  // differ, before the epoch's checkpoint is written.
  const std::string work = scratch_dir("dist_drift");
  std::string out;
  const std::vector<int> codes = run_ranks(
      2,
      [&](int) {
        return train_args(work + "/run", {"--task", "classify", "--preset", setup().preset,
                                          "--inject-drift", "2", "--max-steps", "20"});
      },
      work + "/run.log", &out);
  EXPECT_EQ(codes, repeat(2, 1)) << out;
  EXPECT_NE(out.find("the weights at the end of epoch 1: rank 1 differs from rank 0"),
            std::string::npos)
      << out;
  EXPECT_EQ(read_checkpoint(work + "/run/checkpoint.pt").counters.step, 0);
}

TEST(Distributed, BadSettingsAreRefusedNamingTheFix) {
  const std::string work = scratch_dir("dist_bad");
  auto run_env = [&](std::vector<std::string> args, std::map<std::string, std::string> env,
                     std::string* out) {
    const std::string log = work + "/out.txt";
    const int code = wait_for(spawn(args, log, env));
    *out = read_text(log);
    return code;
  };
  const std::vector<std::string> a = train_args(work + "/run", {"--preset", setup().preset});
  std::string out;
  EXPECT_EQ(run_env(a, {{"RANK", "1"}}, &out), 2) << out;
  EXPECT_NE(out.find("RANK is 1 but WORLD_SIZE is not set"), std::string::npos) << out;
  EXPECT_EQ(run_env(a,
                    {{"RANK", "0"},
                     {"WORLD_SIZE", "2"},
                     {"MASTER_ADDR", "127.0.0.1"},
                     {"MASTER_PORT", "abc"}},
                    &out),
            2);
  EXPECT_NE(out.find("MASTER_PORT 'abc' is not a port number"), std::string::npos) << out;
  EXPECT_EQ(run_env(a, {{"RANK", "2"}, {"WORLD_SIZE", "2"}}, &out), 2);
  EXPECT_NE(out.find("RANK 2 is out of range (with WORLD_SIZE 2 the ranks are 0 to 1)"),
            std::string::npos)
      << out;
  std::vector<std::string> flags = a;
  flags.insert(flags.end(), {"--rank", "0", "--world-size", "2", "--master-port", "29500"});
  EXPECT_EQ(run_env(flags, {}, &out), 2);
  EXPECT_NE(out.find("MASTER_ADDR is not set"), std::string::npos) << out;
  EXPECT_EQ(read_text(work + "/run/log.txt"), "") << "nothing may start";

  // Flags win over the environment; a batch that does not split evenly stops every rank.
  const std::vector<int> codes = run_ranks(
      2,
      [&](int r) {
        std::vector<std::string> b = train_args(work + "/odd", {"--preset", setup().preset});
        *(std::find(b.begin(), b.end(), "--batch") + 1) = "15";
        b.insert(b.end(), {"--rank", std::to_string(r)});
        return b;
      },
      work + "/odd.log", &out);
  EXPECT_EQ(codes, repeat(2, 1)) << out;
  EXPECT_NE(out.find("--batch 15 does not split evenly over 2 processes"), std::string::npos)
      << out;
}

}  // namespace
}  // namespace ebm::train
