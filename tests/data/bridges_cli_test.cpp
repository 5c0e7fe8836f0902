// ebm-bridges as a user runs it: files written, reproducible bytes, usage errors.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "ebm/fileio.h"
#include "ebm/image_io.h"

namespace fs = std::filesystem;

namespace {

struct CliResult {
  int code;
  std::string output;  // stdout and stderr
};

CliResult run_bridges(const std::string& args) {
  const std::string cmd = std::string(EBM_BRIDGES_EXE) + " " + args + " 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) return {-1, "popen failed"};
  std::string out;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, pipe)) > 0;) out.append(buf, n);
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

// A fresh folder per test, so tests may run in parallel.
std::string scratch(const std::string& name) {
  const fs::path dir =
      fs::path(testing::TempDir()) / ("ebm_bridges_cli_" + name + "_" + std::to_string(getpid()));
  fs::remove_all(dir);
  return dir.string();
}

std::vector<std::string> lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

size_t fields(const std::string& line) {
  return size_t(std::count(line.begin(), line.end(), ',')) + 1;
}

}  // namespace

TEST(BridgesCli, WritesImagesLabelsAndAPreviewWithOneRowPerSubtype) {
  const std::string out = scratch("files");
  const CliResult r = run_bridges("--out " + out + " --per-subtype 3 --quiet");
  ASSERT_EQ(r.code, 0) << r.output;
  const ebm::Image img = ebm::read_gray_image(out + "/suspension_inclined/00002.png");
  EXPECT_EQ(img.width, 192);
  EXPECT_EQ(img.height, 48);
  EXPECT_FALSE(fs::exists(out + "/suspension_inclined/00003.png"));

  const std::vector<std::string> csv = lines(out + "/labels.csv");
  ASSERT_EQ(csv.size(), 1u + 8 * 3);
  EXPECT_EQ(csv[0].rfind("file,subtype,family,width_fraction,deck_line,stroke,deck_height", 0), 0u)
      << csv[0];
  for (const std::string& row : csv) EXPECT_EQ(fields(row), fields(csv[0])) << row;
  EXPECT_EQ(csv[1].rfind("beam_girder/00000.png,beam_girder,beam,", 0), 0u) << csv[1];
  EXPECT_EQ(csv[24].rfind("suspension_inclined/00002.png,suspension_inclined,suspension,", 0), 0u)
      << csv[24];

  // make_grid: 3 columns of 192 + 2 padding, 8 rows of 48 + 2, plus the outer 2.
  const ebm::Image preview = ebm::read_gray_image(out + "/preview.png");
  EXPECT_EQ(preview.width, 2 + 3 * 194);
  EXPECT_EQ(preview.height, 2 + 8 * 50);
  fs::remove_all(out);
}

TEST(BridgesCli, SameSeedWritesByteIdenticalFilesWhateverTheThreadsOrSubset) {
  const std::string a = scratch("det_a"), b = scratch("det_b"), c = scratch("det_c"),
                    d = scratch("det_d");
  ASSERT_EQ(run_bridges("--out " + a + " --per-subtype 4 --seed 11 --threads 1 --quiet").code, 0);
  ASSERT_EQ(run_bridges("--out " + b + " --per-subtype 4 --seed 11 --threads 3 --quiet").code, 0);
  ASSERT_EQ(run_bridges("--out " + c +
                        " --per-subtype 2 --seed 11 --subtypes "
                        "cable_fan,arch_deck --quiet")
                .code,
            0);
  ASSERT_EQ(run_bridges("--out " + d + " --per-subtype 4 --seed 12 --quiet").code, 0);
  for (const std::string rel : {"labels.csv", "preview.png", "beam_girder/00000.png",
                                "cable_fan/00003.png", "suspension_vertical/00001.png"})
    EXPECT_EQ(ebm::read_file(a + "/" + rel), ebm::read_file(b + "/" + rel)) << rel;
  for (const std::string rel : {"cable_fan/00001.png", "arch_deck/00000.png"}) {
    EXPECT_EQ(ebm::read_file(a + "/" + rel), ebm::read_file(c + "/" + rel)) << rel;
    EXPECT_NE(ebm::read_file(a + "/" + rel), ebm::read_file(d + "/" + rel)) << rel;
  }
  EXPECT_FALSE(fs::exists(c + "/beam_girder"));
  for (const std::string& dir : {a, b, c, d}) fs::remove_all(dir);
}

TEST(BridgesCli, WritesAnyRequestedSizeSuchAs512x128) {
  const std::string out = scratch("size");
  const CliResult r = run_bridges("--out " + out + " --per-subtype 1 --size 512x128 --quiet");
  ASSERT_EQ(r.code, 0) << r.output;
  const ebm::Image img = ebm::read_gray_image(out + "/arch_through/00000.png");
  EXPECT_EQ(img.width, 512);
  EXPECT_EQ(img.height, 128);
  fs::remove_all(out);
}

TEST(BridgesCli, BadArgumentsExitWithCode2AndNameTheBadInput) {
  const std::string out = scratch("bad");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--per-subtype 3", "--out"},                       // missing required option
      {"--out " + out + " --size 10x10", "'10x10'"},      // too small
      {"--out " + out + " --size 192by48", "'192by48'"},  // malformed
      {"--out " + out + " --size 192x", "'192x'"},        // malformed
      {"--out " + out + " --subtypes beam_girder,bridge", "'bridge'"},
      {"--out " + out + " --subtypes arch_deck,arch_deck", "'arch_deck'"},
      {"--out " + out + " --per-subtype 0", "'0'"},
      {"--out " + out + " --per-subtype many", "'many'"},
      {"--out " + out + " --seed -4", "'-4'"},
      {"--out " + out + " --bogus", "--bogus"},
  };
  for (const auto& [args, needle] : cases) {
    const CliResult r = run_bridges(args);
    EXPECT_EQ(r.code, 2) << args << "\n" << r.output;
    EXPECT_NE(r.output.find(needle), std::string::npos) << args << "\n" << r.output;
  }
  EXPECT_FALSE(fs::exists(out));
}

TEST(BridgesCli, HelpSaysTheImagesAreDarkOnLightAndExitsZero) {
  const CliResult r = run_bridges("--help");
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.output.find("dark structure on a light background"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("suspension_inclined"), std::string::npos) << r.output;
}

TEST(BridgesCli, RefusesToLeaveImagesOfALargerEarlierRunUnlessToldToOverwrite) {
  const std::string out = scratch("stale");
  ASSERT_EQ(run_bridges("--out " + out + " --per-subtype 3 --quiet").code, 0);
  const CliResult refused = run_bridges("--out " + out + " --per-subtype 2 --quiet");
  EXPECT_EQ(refused.code, 1) << refused.output;
  EXPECT_NE(refused.output.find("--overwrite"), std::string::npos) << refused.output;
  EXPECT_TRUE(fs::exists(out + "/beam_girder/00002.png"));

  const CliResult again = run_bridges("--out " + out +
                                      " --per-subtype 2 --subtypes cable_fan "
                                      "--overwrite --quiet");
  EXPECT_EQ(again.code, 0) << again.output;
  EXPECT_FALSE(fs::exists(out + "/beam_girder/00000.png"));
  EXPECT_FALSE(fs::exists(out + "/cable_fan/00002.png"));
  EXPECT_TRUE(fs::exists(out + "/cable_fan/00001.png"));
  EXPECT_EQ(lines(out + "/labels.csv").size(), 3u);
  fs::remove_all(out);
}

TEST(BridgesCli, AnOutputPathThatIsAFileIsAnErrorNamingIt) {
  const std::string out = scratch("file");
  ebm::write_file_atomic(out, std::string("not a folder"));
  const CliResult r = run_bridges("--out " + out + " --per-subtype 1 --quiet");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find(out), std::string::npos) << r.output;
  fs::remove(out);
}
