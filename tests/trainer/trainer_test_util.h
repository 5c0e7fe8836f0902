// Helpers shared by the trainer tests: scratch folders, small bridge sets drawn by the dataset
// generator itself, and small architectures that train in seconds.
#pragma once

#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "../process_temp.h"
#include "bridges/bridges.h"
#include "ebm/fileio.h"
#include "ebm/image_io.h"
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

// Options for a run in `dir` without a progress bar (tests print their own lines).
inline train::RunOptions quiet(const std::string& dir, bool resume = false) {
  train::RunOptions o;
  o.dir = dir;
  o.resume = resume;
  o.progress = false;
  return o;
}

}  // namespace ebm::test
