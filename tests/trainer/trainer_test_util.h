// Helpers shared by the trainer tests: scratch folders, small bridge sets drawn by the dataset
// generator itself, and small architectures that train in seconds.
#pragma once

#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../process_temp.h"
#include "bridges/bridges.h"
#include "ebm/fileio.h"
#include "ebm/image_io.h"
#include "metrics_csv.h"
#include "run.h"

namespace ebm::test {

// A text file's whole contents; empty when it cannot be read (a log not yet written).
inline std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// An empty folder for one test (removed first if it exists).
inline std::string scratch_dir(const std::string& name) {
  const std::filesystem::path p = process_dir() / name;
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p.string();
}

// `per_subtype` drawings of each of the eight subtypes at width x height, laid out as ebm-bridges
// writes them (DIR/<subtype>/NNNNN.png).
inline void write_bridge_set(const std::string& dir, int per_subtype, int width, int height,
                             uint64_t seed = 1) {
  for (int s = 0; s < bridges::kSubtypeCount; ++s) {
    const bridges::Subtype st = bridges::subtype_at(s);
    const std::string sub = dir + "/" + bridges::subtype_name(st);
    std::filesystem::create_directories(sub);
    for (int i = 0; i < per_subtype; ++i) {
      char name[32];
      std::snprintf(name, sizeof name, "/%05d.png", i);
      write_png(sub + name, bridges::draw_bridge(st, seed, uint64_t(i), width, height).image);
    }
  }
}

// A bridge set at 64x16 (8 subtypes x per_subtype), written once per test process and shared by
// the tests that ask for the same size.
inline const std::string& bridge_set(int per_subtype = 16) {
  static std::map<int, std::string> dirs;
  std::string& dir = dirs[per_subtype];
  if (dir.empty()) {
    dir = scratch_dir("bridges_" + std::to_string(per_subtype));
    write_bridge_set(dir, per_subtype, 64, 16);
  }
  return dir;
}

// A small strided conv net for W x H gray images: trains in seconds on two cores.
inline nlohmann::json small_preset(int width, int height, const std::string& act = "swish") {
  return {{"name", "small"},
          {"input", {{"channels", 1}, {"height", height}, {"width", width}}},
          {"layers",
           {{{"type", "conv2d"},
             {"out_channels", 8},
             {"kernel", 3},
             {"stride", 2},
             {"padding", "same"}},
            {{"type", act}},
            {{"type", "conv2d"},
             {"out_channels", 16},
             {"kernel", 3},
             {"stride", 2},
             {"padding", "same"}},
            {{"type", act}},
            {{"type", "flatten"}},
            {{"type", "dense"}, {"out_features", 32}},
            {{"type", act}},
            {{"type", "dense"}, {"out_features", 1}}}}};
}

inline std::string write_preset(const std::string& dir, const nlohmann::json& preset) {
  const std::string path = dir + "/preset.json";
  write_file_atomic(path, preset.dump(2));
  return path;
}

// A two-level U-Net for 64x16 images with every graph layer the unet preset uses, trained by
// denoising score matching (its "train" settings).
inline nlohmann::json small_unet_preset() {
  return nlohmann::json::parse(R"({
    "name": "small-unet",
    "input": {"channels": 1, "height": 16, "width": 64},
    "energy": {"form": "denoiser", "sigma_data": 0.6, "noise_plane": true},
    "layers": [
      {"type": "space_to_depth", "factor": 2},
      {"type": "conv2d", "out_channels": 8, "kernel": 3, "padding": "same"},
      {"type": "swish", "id": "s1"},
      {"type": "conv2d", "out_channels": 16, "kernel": 3, "stride": 2, "padding": [1, 1]},
      {"type": "swish"},
      {"type": "conv2d", "out_channels": 8, "kernel": 3, "padding": "same"},
      {"type": "upsample", "factor": 2},
      {"type": "add", "skip": "s1"},
      {"type": "swish"},
      {"type": "conv2d", "out_channels": 4, "kernel": 3, "padding": "same"},
      {"type": "depth_to_space", "factor": 2}
    ],
    "train": {"objective": "dsm", "lr": 0.002, "beta1": 0.9, "sigma_min": 0.02, "sigma_max": 20,
              "sampler": {"form": "annealed", "steps": 20, "levels": 10, "sigma_max": 10,
                          "sigma_min": 0.02, "eps": 2e-4}}
  })");
}

// Starts a program with stdout and stderr going to `log`, with `env` added to the environment.
inline pid_t spawn(const std::vector<std::string>& args, const std::string& log,
                   const std::map<std::string, std::string>& env = {}) {
  const pid_t pid = fork();
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
    std::vector<char*> argv;
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

// Exit status, or 128 + signal number if killed by a signal.
inline int wait_for(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Waits until the run has logged at least `rows` steps (or 90 s pass).
inline size_t wait_for_rows(const std::string& run_dir, size_t rows) {
  const auto t0 = std::chrono::steady_clock::now();
  size_t n = 0;
  while (std::chrono::steady_clock::now() - t0 < std::chrono::seconds(90)) {
    n = train::read_metrics(run_dir + "/metrics.csv").rows.size();
    if (n >= rows) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return n;
}

// Options for a run in `dir` without a progress bar (tests print their own lines).
inline train::RunOptions quiet(const std::string& dir, bool resume = false) {
  train::RunOptions o;
  o.dir = dir;
  o.resume = resume;
  o.progress = false;
  return o;
}

// Contrastive-divergence settings for runs that take a second or two on bridge_set(): the small
// network, short chains, few pictures.
inline train::TrainConfig small_config(const std::string& work) {
  train::TrainConfig c;
  c.preset = write_preset(work, small_preset(64, 16));
  c.data = bridge_set();
  c.batch = 16;
  c.langevin_steps = 10;
  c.buffer_size = 256;
  c.sample_count = 2;
  c.sample_steps = 10;
  c.buffer_grid = 4;
  c.threads = 2;
  c.epochs = 100;
  return c;
}

}  // namespace ebm::test
