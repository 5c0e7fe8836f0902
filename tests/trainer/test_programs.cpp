// The programs as a user runs them: --help, bad arguments, Ctrl-C, kill -9, and ebm-export's
// model file, card and refusals.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "checkpoint.h"
#include "ebm/fileio.h"
#include "ebm/model.h"
#include "ebm/network.h"
#include "metrics_csv.h"
#include "trainer_test_util.h"

namespace ebm::train {
namespace {

using test::read_text;
using test::scratch_dir;

using test::spawn;
using test::wait_for;
using test::wait_for_rows;

int run(const std::vector<std::string>& args, std::string* output) {
  const std::string log = (test::process_dir() / "program_output.txt").string();
  const int code = wait_for(spawn(args, log));
  *output = read_text(log);
  return code;
}

// A bridge set and a small preset, and the ebm-train command line for a long run on them.
struct Setup {
  std::string work, data, preset;
};

const Setup& setup() {
  static Setup s;
  if (s.work.empty()) {
    s.work = scratch_dir("programs");
    s.data = s.work + "/bridges";
    test::write_bridge_set(s.data, 16, 64, 16);
    s.preset = test::write_preset(s.work, test::small_preset(64, 16));
  }
  return s;
}

std::vector<std::string> train_args(const std::string& run_dir,
                                    std::vector<std::string> extra = {}) {
  std::vector<std::string> a = {EBM_TRAIN_EXE,
                                "--data",
                                setup().data,
                                "--preset",
                                setup().preset,
                                "--run",
                                run_dir,
                                "--batch",
                                "16",
                                "--langevin-steps",
                                "20",
                                "--sample-count",
                                "2",
                                "--sample-steps",
                                "10",
                                "--threads",
                                "2",
                                "--quiet"};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

std::vector<double> steps_of(const std::string& run_dir) {
  return read_metrics(run_dir + "/metrics.csv").column("step");
}

bool consecutive_from_one(const std::vector<double>& steps) {
  for (size_t i = 0; i < steps.size(); ++i)
    if (steps[i] != double(i + 1)) return false;
  return true;
}

TEST(Programs, HelpListsTheOptionsWithTheirDefaults) {
  std::string out;
  ASSERT_EQ(run({EBM_TRAIN_EXE, "--help"}, &out), 0);
  for (const char* s : {"--data",
                        "--resume",
                        "--preset",
                        "--task",
                        "--buffer-size",
                        "8192",
                        "--fresh",
                        "0.05",
                        "--langevin-steps",
                        "60",
                        "--step-size",
                        "10",
                        "--noise",
                        "0.005",
                        "--grad-clip",
                        "0.03",
                        "--alpha",
                        "0.1",
                        "--lr",
                        "0.0001",
                        "--beta1",
                        "--spectral-norm",
                        "--clip-grad-norm",
                        "--langevin-backend",
                        "--checkpoint-minutes",
                        "--max-rollbacks",
                        "--threads",
                        "--objective",
                        "--sigma-min",
                        "--loss-sigma-floor",
                        "--ema",
                        "0.999",
                        "--rank",
                        "--world-size",
                        "--master-addr",
                        "--master-port",
                        "--local-rank",
                        "--dist-timeout",
                        "$MASTER_PORT"})
    EXPECT_NE(out.find(s), std::string::npos) << s;
  ASSERT_EQ(run({EBM_EXPORT_EXE, "--help"}, &out), 0);
  for (const char* s : {"--out", "--f32", "--name", "--description", "--license"})
    EXPECT_NE(out.find(s), std::string::npos) << s;
  ASSERT_EQ(run({EBM_IMPORT_EXE, "--help"}, &out), 0);
  for (const char* s : {"--input", "--kind", "--labels", "--score"})
    EXPECT_NE(out.find(s), std::string::npos) << s;
}

TEST(Programs, BadArgumentsExitTwoAndBadInputsExitOneNamingThem) {
  std::string out;
  EXPECT_EQ(run({EBM_TRAIN_EXE, "--lr", "fast"}, &out), 2) << out;
  EXPECT_NE(out.find("--lr"), std::string::npos) << out;
  EXPECT_EQ(run({EBM_TRAIN_EXE, "--run", "/tmp/x"}, &out), 2) << out;
  EXPECT_NE(out.find("--data"), std::string::npos) << out;
  EXPECT_EQ(run({EBM_TRAIN_EXE, "--data", "/nonexistent/bridges", "--run",
                 scratch_dir("bad_data") + "/run"},
                &out),
            1)
      << out;
  EXPECT_NE(out.find("/nonexistent/bridges"), std::string::npos) << out;
  EXPECT_EQ(run({EBM_TRAIN_EXE, "--data", setup().data, "--preset", "no_such_preset", "--run",
                 scratch_dir("bad_preset") + "/run"},
                &out),
            1)
      << out;
  EXPECT_NE(out.find("no_such_preset"), std::string::npos) << out;
  EXPECT_EQ(run({EBM_TRAIN_EXE, "--data", setup().data, "--objective", "magic", "--run",
                 scratch_dir("bad_objective") + "/run"},
                &out),
            2)
      << out;
  EXPECT_NE(out.find("unknown objective 'magic'"), std::string::npos) << out;
  const std::string bad_device = scratch_dir("bad_device") + "/run";
  EXPECT_EQ(run({EBM_TRAIN_EXE, "--data", setup().data, "--device", "tpu", "--run", bad_device},
                &out),
            2)
      << out;
  EXPECT_NE(out.find("--device 'tpu'"), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(bad_device)) << "a refused device leaves no run folder";
  EXPECT_EQ(
      run({EBM_TRAIN_EXE, "--run", scratch_dir("bad_resume"), "--resume", "--lr", "0.1"}, &out), 2);
  EXPECT_NE(out.find("cannot change when resuming"), std::string::npos) << out;
  EXPECT_EQ(run({EBM_EXPORT_EXE, "/nonexistent.pt", "--out", "/tmp/x.safetensors"}, &out), 1);
  EXPECT_NE(out.find("/nonexistent.pt"), std::string::npos) << out;
}

TEST(Programs, CtrlCSavesACheckpointExitsCleanlyAndResumeContinues) {
  const std::string dir = scratch_dir("sigint") + "/run";
  const pid_t pid = spawn(train_args(dir, {"--epochs", "1000"}), dir + ".log");
  ASSERT_GE(wait_for_rows(dir, 3), 3u) << read_text(dir + ".log");
  kill(pid, SIGINT);
  EXPECT_EQ(wait_for(pid), 130) << read_text(dir + ".log");
  EXPECT_NE(read_text(dir + ".log").find("--resume"), std::string::npos);
  EXPECT_NE(read_text(dir + "/log.txt").find("interrupted"), std::string::npos);
  const int64_t saved = read_checkpoint(dir + "/checkpoint.pt").counters.step;
  EXPECT_EQ(double(saved), steps_of(dir).back());  // nothing done was lost

  std::string out;
  ASSERT_EQ(run({EBM_TRAIN_EXE, "--run", dir, "--resume", "--max-steps", std::to_string(saved + 3),
                 "--quiet"},
                &out),
            0)
      << out;
  EXPECT_EQ(read_checkpoint(dir + "/checkpoint.pt").counters.step, saved + 3);
  EXPECT_TRUE(consecutive_from_one(steps_of(dir)));
}

TEST(Programs, KillNineLosesAtMostTheWorkSinceTheLastCheckpoint) {
  const std::string dir = scratch_dir("sigkill") + "/run";
  // A checkpoint after every step, so the loss is at most the step being worked on.
  const pid_t pid =
      spawn(train_args(dir, {"--epochs", "1000", "--checkpoint-minutes", "0"}), dir + ".log");
  ASSERT_GE(wait_for_rows(dir, 5), 5u) << read_text(dir + ".log");
  kill(pid, SIGKILL);
  EXPECT_EQ(wait_for(pid), 128 + SIGKILL);
  const double logged = steps_of(dir).back();
  const int64_t saved = read_checkpoint(dir + "/checkpoint.pt").counters.step;  // whole, not torn
  EXPECT_GE(double(saved), logged - 1);
  EXPECT_LE(double(saved), logged);

  std::string out;
  ASSERT_EQ(run({EBM_TRAIN_EXE, "--run", dir, "--resume", "--max-steps", std::to_string(saved + 2),
                 "--quiet"},
                &out),
            0)
      << out;
  EXPECT_EQ(read_checkpoint(dir + "/checkpoint.pt").counters.step, saved + 2);
  EXPECT_TRUE(consecutive_from_one(steps_of(dir)));  // rows after the checkpoint were dropped
  for (const auto& e : std::filesystem::directory_iterator(dir))  // no half-written leftovers
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
}

TEST(Programs, ExportWritesAnF16ModelWithACardAndF32OnRequest) {
  const std::string work = scratch_dir("export");
  const std::string dir = work + "/bridges-small";
  std::string out;
  // 7 steps, one epoch; the epoch's grid and the exported default start from smoothed noise.
  ASSERT_EQ(run(train_args(dir, {"--epochs", "1", "--start-cell", "4"}), &out), 0) << out;
  ASSERT_EQ(run({EBM_EXPORT_EXE, dir + "/checkpoint.pt", "--out", work + "/m.safetensors",
                 "--license", "CC-BY-4.0"},
                &out),
            0)
      << out;
  const std::vector<uint8_t> bytes = read_file(work + "/m.safetensors");
  const TensorFile tf = parse_safetensors(bytes.data(), bytes.size());
  for (const Tensor& t : tf.tensors) EXPECT_EQ(t.stored, DType::kF16) << t.name;
  const Model m = load_model(work + "/m.safetensors");
  EXPECT_EQ(m.kind, ModelKind::kEnergy);
  EXPECT_EQ(m.card["name"], "bridges-small");
  EXPECT_EQ(m.card["license"], "CC-BY-4.0");
  EXPECT_EQ(m.card["training"]["epochs"], 1);
  EXPECT_EQ(m.card["training"]["steps"], 7);
  EXPECT_TRUE(m.card["training"]["wall_time"].is_string());
  EXPECT_TRUE(m.card["training"]["final"].contains("cdiv")) << m.card.dump();
  EXPECT_TRUE(m.card["training"]["validation"].contains("cdiv")) << m.card.dump();
  EXPECT_EQ(m.card["dataset"]["train"], 112) << m.card.dump();
  EXPECT_EQ(m.card["architecture"]["parameters"], m.arch.parameter_count());
  EXPECT_EQ(m.sampler.steps, 10);  // the run's --sample-steps
  EXPECT_EQ(m.sampler.start_cell, 4);

  ASSERT_EQ(run({EBM_EXPORT_EXE, dir, "--out", work + "/m32.safetensors", "--f32"}, &out), 0)
      << out;
  const std::vector<uint8_t> b32 = read_file(work + "/m32.safetensors");
  for (const Tensor& t : parse_safetensors(b32.data(), b32.size()).tensors)
    EXPECT_EQ(t.stored, DType::kF32) << t.name;

  // Shipping other sampler defaults and extra card fields (inline and from a file).
  write_file_atomic(work + "/card.json", std::string(R"({"reference": {"sharpness": 0.93}})"));
  ASSERT_EQ(run({EBM_EXPORT_EXE, dir, "--out", work + "/m2.safetensors", "--sampler",
                 R"({"steps": 123, "step_size": 50, "start_cell": 1})", "--card",
                 "@" + work + "/card.json"},
                &out),
            0)
      << out;
  const Model m2 = load_model(work + "/m2.safetensors");
  EXPECT_EQ(m2.sampler.steps, 123);
  EXPECT_EQ(m2.sampler.step_size, 50.0f);
  EXPECT_EQ(m2.sampler.start_cell, 1);
  EXPECT_EQ(m2.card["reference"]["sharpness"], 0.93);
  EXPECT_EQ(m2.card["name"], "bridges-small");  // merged, not replaced
  EXPECT_EQ(run({EBM_EXPORT_EXE, dir, "--out", work + "/m3.safetensors", "--sampler", R"({"stepz": 1})"},
                &out),
            1);
  EXPECT_NE(out.find("unknown sampler setting \"stepz\""), std::string::npos) << out;
  EXPECT_EQ(run({EBM_EXPORT_EXE, dir, "--out", work + "/m3.safetensors", "--card", "[1]"}, &out), 1);
  EXPECT_NE(out.find("JSON object"), std::string::npos) << out;

  // The card's evaluation from two ebm-eval reports (the parts of report.json it reads), merged
  // with what --card says about it.
  auto report = [](int seed, double frechet, double speckle) {
    return nlohmann::json{{"frechet", {{"ratio", frechet}}},
                          {"speckle", {{"ratio", speckle}}},
                          {"coverage", {{"rarest_share", 0.091796875}, {"subtypes_present", 8}}},
                          {"new_types", {{"share", 0.01171875}}},
                          {"sharpness", {{"ratio", 0.95412}}},
                          {"copies", {{"share", 0.0}}},
                          {"sampling", {{"seed", seed}, {"count", 512}}}}
        .dump();
  };
  write_file_atomic(work + "/r1.json", report(1, 15.4812, 17.249));
  write_file_atomic(work + "/r2.json", report(2, 16.0371, 16.951));
  ASSERT_EQ(run({EBM_EXPORT_EXE, dir, "--out", work + "/m4.safetensors", "--evaluation",
                 work + "/r1.json," + work + "/r2.json", "--card",
                 R"({"evaluation": {"command": "ebm-eval --seed 1"}})"},
                &out),
            0)
      << out;
  const nlohmann::json e = load_model(work + "/m4.safetensors").card["evaluation"];
  EXPECT_NEAR(e["frechet_ratio"].get<double>(), 15.5, 1e-9) << e.dump();
  EXPECT_NEAR(e["speckle_ratio"].get<double>(), 17.2, 1e-9);
  EXPECT_NEAR(e["rarest_subtype"].get<double>(), 0.0918, 1e-9);
  EXPECT_EQ(e["subtypes_present"], 8);
  EXPECT_NEAR(e["sharpness_ratio"].get<double>(), 0.954, 1e-9);
  EXPECT_EQ(e["seed"], 1);
  EXPECT_EQ(e["samples"], 512);
  EXPECT_NEAR(e["seed_2"]["frechet_ratio"].get<double>(), 16.0, 1e-9);
  EXPECT_NEAR(e["seed_2"]["speckle_ratio"].get<double>(), 17.0, 1e-9);
  EXPECT_EQ(e["command"], "ebm-eval --seed 1");
  // Not a report: the file and the missing figure are named.
  write_file_atomic(work + "/r3.json", std::string(R"({"frechet": {}})"));
  EXPECT_EQ(run({EBM_EXPORT_EXE, dir, "--out", work + "/m5.safetensors", "--evaluation",
                 work + "/r3.json"},
                &out),
            1);
  EXPECT_NE(out.find("r3.json"), std::string::npos) << out;
  EXPECT_NE(out.find("not an ebm-eval report: it has no number frechet.ratio"), std::string::npos)
      << out;
  EXPECT_FALSE(std::filesystem::exists(work + "/m5.safetensors"));

  // A model file written again (its checkpoint not needed): new sampler defaults and card fields,
  // the same weights bit for bit, the rest of the card kept; an F32 file stays F32.
  ASSERT_EQ(run({EBM_EXPORT_EXE, work + "/m4.safetensors", "--out", work + "/m6.safetensors",
                 "--sampler", R"({"steps": 24, "step_size": 7})", "--card", R"({"extra": 1})",
                 "--evaluation", work + "/r2.json"},
                &out),
            0)
      << out;
  EXPECT_NE(out.find("written again from"), std::string::npos) << out;
  const Model m6 = load_model(work + "/m6.safetensors");
  EXPECT_EQ(m6.sampler.steps, 24);
  EXPECT_EQ(m6.sampler.step_size, 7.0f);
  EXPECT_EQ(m6.sampler.start_cell, 4);  // kept from m4
  EXPECT_EQ(m6.card["name"], "bridges-small");
  EXPECT_EQ(m6.card["extra"], 1);
  EXPECT_EQ(m6.card["evaluation"]["command"], "ebm-eval --seed 1");  // kept
  EXPECT_EQ(m6.card["evaluation"]["seed"], 2);                       // the new report's
  EXPECT_TRUE(m6.card["updated"].is_string());
  const std::vector<uint8_t> b4 = read_file(work + "/m4.safetensors"),
                             b6 = read_file(work + "/m6.safetensors");
  const TensorFile t4 = parse_safetensors(b4.data(), b4.size()),
                   t6 = parse_safetensors(b6.data(), b6.size());
  ASSERT_EQ(t4.tensors.size(), t6.tensors.size());
  for (size_t i = 0; i < t4.tensors.size(); ++i) {
    EXPECT_EQ(t6.tensors[i].name, t4.tensors[i].name);
    EXPECT_EQ(t6.tensors[i].stored, DType::kF16);
    EXPECT_EQ(t6.tensors[i].data, t4.tensors[i].data) << t4.tensors[i].name;
  }
  ASSERT_EQ(run({EBM_EXPORT_EXE, work + "/m32.safetensors", "--out", work + "/m7.safetensors",
                 "--name", "renamed"},
                &out),
            0)
      << out;
  const std::vector<uint8_t> b7 = read_file(work + "/m7.safetensors");
  for (const Tensor& t : parse_safetensors(b7.data(), b7.size()).tensors)
    EXPECT_EQ(t.stored, DType::kF32) << t.name;
  EXPECT_EQ(load_model(work + "/m7.safetensors").card["name"], "renamed");
  // A bad setting names itself and writes nothing.
  EXPECT_EQ(run({EBM_EXPORT_EXE, work + "/m4.safetensors", "--out", work + "/m8.safetensors",
                 "--sampler", R"({"steps": -3})"},
                &out),
            1);
  EXPECT_NE(out.find("steps"), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(work + "/m8.safetensors"));
}

// ebm-export --autoguide: a denoiser file carries a weaker one (format 3) for the samplers'
// autoguidance, or drops it; what cannot be carried is refused by name and nothing is written.
TEST(Programs, ExportCarriesAWeakerNetworkForAutoguidanceAndDropsIt) {
  const std::string work = scratch_dir("autoguide");
  const std::string models = std::string(EBM_TEST_PRESETS_DIR) + "/..";
  const std::string fashion = models + "/fashion-mnist.safetensors";
  std::string out;
  ASSERT_EQ(run({EBM_EXPORT_EXE, fashion, "--out", work + "/ag.safetensors", "--autoguide", fashion,
                 "--sampler", R"({"autoguide": 2, "autoguide_sigma_max": 10})"},
                &out),
            0)
      << out;
  const std::vector<uint8_t> bytes = read_file(work + "/ag.safetensors");
  EXPECT_EQ(parse_safetensors(bytes.data(), bytes.size()).metadata.at("ebm.format"), "3");
  const Model strong = load_model(fashion), ag = load_model(work + "/ag.safetensors");
  ASSERT_TRUE(ag.autoguide);
  EXPECT_EQ(ag.sampler.autoguide, 2.0f);
  EXPECT_EQ(ag.sampler.autoguide_sigma_max, 10.0f);
  for (const Tensor& t : strong.tensors) {
    EXPECT_EQ(ag.tensor(t.name).data, t.data) << t.name;
    EXPECT_EQ(ag.autoguide->tensor(t.name).data, t.data) << t.name;
  }
  EXPECT_EQ(ag.autoguide->card["name"], strong.card["name"]);
  EXPECT_FALSE(ag.autoguide->card.contains("evaluation"));

  // Dropped again: format 2, the weights as they were.
  ASSERT_EQ(run({EBM_EXPORT_EXE, work + "/ag.safetensors", "--out", work + "/plain.safetensors",
                 "--autoguide", "none", "--sampler", R"({"autoguide": 1})"},
                &out),
            0)
      << out;
  const std::vector<uint8_t> pb = read_file(work + "/plain.safetensors");
  EXPECT_EQ(parse_safetensors(pb.data(), pb.size()).metadata.at("ebm.format"), "2");
  EXPECT_FALSE(load_model(work + "/plain.safetensors").autoguide);

  auto refused = [&](std::vector<std::string> args, std::vector<std::string> words) {
    std::vector<std::string> cmd = {EBM_EXPORT_EXE};
    cmd.insert(cmd.end(), args.begin(), args.end());
    cmd.insert(cmd.end(), {"--out", work + "/bad.safetensors"});
    EXPECT_EQ(run(cmd, &out), 1) << out;
    for (const std::string& w : words) EXPECT_NE(out.find(w), std::string::npos) << w << " in " << out;
    EXPECT_FALSE(std::filesystem::exists(work + "/bad.safetensors"));
  };
  // Settings that still ask for it without the network.
  refused({work + "/ag.safetensors", "--autoguide", "none"}, {"autoguidance", "--autoguide MODEL"});
  refused({fashion, "--sampler", R"({"autoguide": 3})"}, {"autoguidance", "--autoguide MODEL"});
  refused({fashion, "--autoguide", models + "/bridge-classifier.safetensors"}, {"denoiser energy", "a classifier"});
  refused({fashion, "--autoguide", models + "/bridges-cd.safetensors"}, {"denoiser energy", "a scalar energy"});
  refused({fashion, "--autoguide", work + "/ag.safetensors"}, {"of its own"});
  refused({models + "/bridges-cd.safetensors", "--autoguide", fashion}, {"only a denoiser energy"});
  refused({fashion, "--autoguide", work + "/missing.safetensors"}, {"missing.safetensors"});
}

#ifdef EBM_SERVE_EXE
// The first line ebm-serve prints names its port: "... on http://127.0.0.1:PORT/ ...".
int wait_for_port(const std::string& log) {
  for (int i = 0; i < 200; ++i) {
    const std::string text = read_text(log);
    const size_t k = text.find("http://127.0.0.1:");
    if (k != std::string::npos && text.find('/', k + 17) != std::string::npos)
      return std::atoi(text.c_str() + k + 17);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return 0;
}

TEST(Programs, ExportPublishesToAModelsFolderAndToARunningServer) {
  const std::string work = scratch_dir("publish");
  const std::string dir = work + "/run";
  std::string out;
  ASSERT_EQ(run(train_args(dir, {"--max-steps", "2"}), &out), 0) << out;

  // Into a models folder (which must exist).
  std::filesystem::create_directories(work + "/models");
  ASSERT_EQ(run({EBM_EXPORT_EXE, dir, "--out", work + "/m.safetensors", "--publish",
                 work + "/models", "--publish-name", "small"},
                &out),
            0)
      << out;
  EXPECT_NO_THROW(load_model(work + "/models/small.safetensors"));
  EXPECT_NE(read_text(work + "/models/index.json").find("small"), std::string::npos);

  // To a running ebm-serve with a publish token; a wrong token is refused.
  std::filesystem::create_directories(work + "/served");
  ::setenv("EBM_PUBLISH_TOKEN", "secret", 1);
  const pid_t server =
      spawn({EBM_SERVE_EXE, "--port", "0", "--web", work, "--models", work + "/served"},
            work + "/serve.log");
  ::unsetenv("EBM_PUBLISH_TOKEN");
  const int port = wait_for_port(work + "/serve.log");
  ASSERT_GT(port, 0) << read_text(work + "/serve.log");
  const std::string url = "http://127.0.0.1:" + std::to_string(port);
  EXPECT_EQ(run({EBM_EXPORT_EXE, dir, "--out", work + "/m.safetensors", "--publish", url, "--token",
                 "wrong", "--publish-name", "srv"},
                &out),
            1);
  EXPECT_NE(out.find("refused"), std::string::npos) << out;
  EXPECT_EQ(run({EBM_EXPORT_EXE, dir, "--out", work + "/m.safetensors", "--publish", url, "--token",
                 "secret", "--publish-name", "srv"},
                &out),
            0)
      << out;
  kill(server, SIGTERM);
  wait_for(server);
  EXPECT_NO_THROW(load_model(work + "/served/srv.safetensors"));
}
#endif

// Writes a checkpoint by hand with a given configuration and model tensors.
void write_checkpoint(const std::string& path, const TrainConfig& cfg, const std::string& kind,
                      const std::vector<std::pair<std::string, torch::Tensor>>& tensors) {
  torch::serialize::OutputArchive out, model;
  out.write("format", c10::IValue(std::string(kCheckpointFormat)));
  out.write("config", c10::IValue(cfg.to_json().dump()));
  out.write("kind", c10::IValue(kind));
  out.write("labels", c10::IValue(std::string("[]")));
  for (auto [name, t] : tensors) {
    std::replace(name.begin(), name.end(), '.', '_');
    model.write(name, t, true);
  }
  out.write("model", model);
  for (const char* k : {"step", "epoch", "step_in_epoch", "rollbacks"})
    out.write(k, c10::IValue(int64_t(1)));
  out.write("wall_seconds", c10::IValue(1.0));
  out.write("summary", c10::IValue(std::string("{}")));
  out.save_to(path);
}

TEST(Programs, ExportRefusesACheckpointWhoseArchitectureTheRuntimeCannotRun) {
  const std::string work = scratch_dir("export_refuse");
  std::string out;
  // A layer type the runtime does not have.
  TrainConfig c;
  c.architecture = nlohmann::json::parse(R"({"input": {"channels": 1, "height": 8, "width": 8},
      "layers": [{"type": "flatten"}, {"type": "dropout", "p": 0.5}, {"type": "dense", "out_features": 1}]})");
  write_checkpoint(work + "/dropout.pt", c, "energy", {});
  EXPECT_EQ(run({EBM_EXPORT_EXE, work + "/dropout.pt", "--out", work + "/a.safetensors"}, &out), 1);
  EXPECT_NE(out.find("runtime cannot run"), std::string::npos) << out;
  EXPECT_NE(out.find("dropout"), std::string::npos) << out;

  // Valid layers, but an "energy" model with three outputs.
  const Architecture three = resolve_architecture(
      {1, 8, 8},
      nlohmann::json::parse(R"([{"type": "flatten"}, {"type": "dense", "out_features": 3}])"));
  c.architecture = architecture_json(three);
  EnergyNet net(three, 1);
  write_checkpoint(work + "/three.pt", c, "energy", net->state());
  EXPECT_EQ(run({EBM_EXPORT_EXE, work + "/three.pt", "--out", work + "/b.safetensors"}, &out), 1);
  EXPECT_NE(out.find("one number per image"), std::string::npos) << out;

  // Not a checkpoint at all.
  write_file_atomic(work + "/junk.pt", std::string("not a zip archive"));
  EXPECT_EQ(run({EBM_EXPORT_EXE, work + "/junk.pt", "--out", work + "/c.safetensors"}, &out), 1);
  EXPECT_NE(out.find("junk.pt"), std::string::npos) << out;
  for (const char* f : {"/a.safetensors", "/b.safetensors", "/c.safetensors"})
    EXPECT_FALSE(std::ifstream(work + f).good()) << "nothing may be written: " << f;
}

}  // namespace
}  // namespace ebm::train
