// What a run writes without LibTorch: the metrics CSV, the curve plots, captioned grids and the
// runtime samples shown at each epoch.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "../process_temp.h"
#include "config.h"
#include "curves.h"
#include "ebm/architecture.h"
#include "ebm/error.h"
#include "ebm/fileio.h"
#include "ebm/model.h"
#include "metrics_csv.h"
#include "plot.h"
#include "sample_pngs.h"

namespace ebm::train {
namespace {

std::string temp(const std::string& name) {
  const std::string p = (test::process_dir() / name).string();
  std::filesystem::remove_all(p);
  return p;
}

int count_color(const Image& img, Rgb c) {
  int n = 0;
  for (size_t i = 0; i < img.pixels.size(); i += 3)
    n += img.pixels[i] == c.r && img.pixels[i + 1] == c.g && img.pixels[i + 2] == c.b;
  return n;
}

TEST(MetricsCsv, AppendsRowsUnderAHeaderAndReadsThemBack) {
  const std::string path = temp("m.csv");
  {
    MetricsCsv csv(path, {"step", "loss"});
    csv.append({1, 0.5});
    csv.append({2, NAN});
  }
  {
    MetricsCsv again(path, {"step", "loss"});  // reopening appends, no second header
    again.append({3, -1.25e-7});
  }
  const MetricsTable t = read_metrics(path);
  ASSERT_EQ(t.columns, (std::vector<std::string>{"step", "loss"}));
  ASSERT_EQ(t.rows.size(), 3u);
  EXPECT_EQ(t.column("step"), (std::vector<double>{1, 2, 3}));
  EXPECT_TRUE(std::isnan(t.rows[1][1]));
  EXPECT_DOUBLE_EQ(t.rows[2][1], -1.25e-7);
  EXPECT_THROW(MetricsCsv(path, {"step", "cdiv"}), Error);
}

TEST(MetricsCsv, ATornLastLineIsIgnoredAndTheNextRowStartsCleanly) {
  const std::string path = temp("torn.csv");
  write_file_atomic(path, std::string("step,loss\n1,0.5\n2,0.2"));  // killed mid-row
  EXPECT_EQ(read_metrics(path).rows.size(), 1u);
  MetricsCsv csv(path, {"step", "loss"});
  csv.append({3, 0.1});
  const MetricsTable t = read_metrics(path);
  ASSERT_EQ(t.rows.size(), 3u);  // "2,0.2" was complete once the newline was added
  EXPECT_EQ(t.column("step"), (std::vector<double>{1, 2, 3}));
}

TEST(MetricsCsv, TruncateKeepsRowsUpToTheRestoredStep) {
  const std::string path = temp("trunc.csv");
  {
    MetricsCsv csv(path, {"step", "loss"});
    for (int s = 1; s <= 10; ++s) csv.append({double(s), s * 0.1});
  }
  truncate_metrics(path, "step", 6);
  EXPECT_EQ(read_metrics(path).column("step"), (std::vector<double>{1, 2, 3, 4, 5, 6}));
  EXPECT_THROW(truncate_metrics(path, "nope", 1), Error);
}

TEST(TrainConfig, RoundTripsThroughJsonAndRefusesUnknownKeys) {
  TrainConfig c;
  c.task = Task::kClassify;
  c.lr = 3e-4;
  c.sampler.form = SamplerForm::kTextbook;
  c.buffer_size = 777;
  const TrainConfig d = TrainConfig::from_json(c.to_json());
  EXPECT_EQ(d.to_json(), c.to_json());
  nlohmann::json j = c.to_json();
  j["learning_rate"] = 1;
  EXPECT_THROW(TrainConfig::from_json(j), Error);
}

TEST(Canvas, TextDrawsGlyphsInsideItsBox) {
  Canvas cv(300, 40, {255, 255, 255});
  const std::string s = "loss 0.5 10000";
  const int end = cv.text(10, 10, s, {0, 0, 0}, 2);
  EXPECT_EQ(end, 10 + Canvas::text_width(s, 2));
  const Image& img = cv.image();
  int dark = 0, outside = 0, rightmost = 0;
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < img.width; ++x)
      if (img.at(x, y)[0] == 0) {
        ++dark;
        rightmost = std::max(rightmost, x);
        outside += x < 10 || x >= end || y < 10 || y >= 10 + Canvas::text_height(2);
      }
  EXPECT_GT(dark, 150);
  EXPECT_EQ(outside, 0);
  // The last glyph is drawn whole (the font's vertex buffer was once too small for "0"s).
  EXPECT_GE(rightmost, end - 4 * 2);
}

TEST(Canvas, LinesAreAntiAliasedAndClipped) {
  Canvas cv(50, 50, {255, 255, 255});
  cv.clip(0, 0, 25, 50);
  cv.line(5, 10.3, 45, 10.3, {0, 0, 0}, 1.5);
  const Image& img = cv.image();
  EXPECT_LT(img.at(10, 10)[0], 80);  // on the line
  EXPECT_GT(img.at(10, 11)[0], 80);  // partly covered edge pixel
  EXPECT_LT(img.at(10, 11)[0], 255);
  EXPECT_EQ(img.at(30, 10)[0], 255);  // clipped
  EXPECT_EQ(img.at(10, 20)[0], 255);  // far away
}

TEST(Curves, DrawsEveryPanelWithItsSeries) {
  MetricsTable steps{{"step", "loss", "reg", "cdiv", "real", "fake", "lr", "image_steps_per_s"},
                     {}};
  for (int s = 1; s <= 200; ++s)
    steps.rows.push_back({double(s), 0.1 / s, 0.01, -0.5 + 0.001 * s, -1.0, 1.0, 1e-4, 5000});
  MetricsTable val{{"epoch", "step", "cdiv", "real", "fake"},
                   {{1, 100, -0.8, -1, 0.2}, {2, 200, -1.1, -1.2, 0.3}}};
  const std::vector<Panel> panels = run_panels(Task::kEnergy, Objective::kContrastiveDivergence, steps, val);
  ASSERT_EQ(panels.size(), 6u);
  EXPECT_EQ(panels[2].series.size(), 2u);  // cdiv: train and validation
  EXPECT_EQ(panels[3].series.size(), 4u);  // energies
  const Image img = draw_panels(panels, 3);
  EXPECT_EQ(img.width, 3 * 600);
  EXPECT_EQ(img.height, 2 * 340);
  // The legend swatches are solid rectangles in the series colours.
  EXPECT_GT(count_color(img, panels[3].series[0].color), 50);
  EXPECT_GT(count_color(img, panels[3].series[1].color), 50);
  EXPECT_EQ(panels[0].title, "loss = cdiv + reg");

  // A run with the KL term: its loss says so, and its entropy estimate gets a seventh panel.
  MetricsTable kl = steps;
  kl.columns.push_back("kl_entropy");
  for (std::vector<double>& r : kl.rows) r.push_back(3.5);
  const std::vector<Panel> with = run_panels(Task::kEnergy, Objective::kContrastiveDivergence, kl, val);
  ASSERT_EQ(with.size(), 7u);
  EXPECT_NE(with[0].title.find("log d_nn"), std::string::npos) << with[0].title;
  ASSERT_EQ(with[6].series.size(), 1u);
  EXPECT_EQ(with[6].series[0].y, std::vector<double>(200, 3.5));
  EXPECT_EQ(draw_panels(with, 3).height, 3 * 340);

  // A multi-grid run: the loss sums the grids', each coarser grid's cdiv beside the full one's.
  MetricsTable mg = steps;
  mg.columns.insert(mg.columns.end(), {"cdiv_48x12", "cdiv_96x24"});
  for (std::vector<double>& r : mg.rows) r.insert(r.end(), {0.25, 0.5});
  const std::vector<Panel> grids = run_panels(Task::kEnergy, Objective::kMultigrid, mg, val);
  ASSERT_EQ(grids.size(), 6u);
  EXPECT_NE(grids[0].title.find("sum over the grids"), std::string::npos) << grids[0].title;
  ASSERT_EQ(grids[2].series.size(), 4u);
  EXPECT_EQ(grids[2].series[2].label, "train, 48x12");
  EXPECT_EQ(grids[2].series[3].y, std::vector<double>(200, 0.5));
  EXPECT_EQ(panels[2].series[0].label, "train (buffer)");
}

TEST(Curves, WritesAPngEvenBeforeTheFirstStep) {
  const std::string dir = temp("run");
  std::filesystem::create_directories(dir);
  write_curves_png(dir, Task::kClassify);
  EXPECT_TRUE(std::filesystem::file_size(dir + "/curves.png") > 1000);
}

TEST(Grids, CaptionedGridUpscalesSmallImagesAndKeepsPixelValues) {
  const Shape s{1, 8, 16};
  std::vector<float> imgs(size_t(3 * s.size()), -1.0f);  // black
  imgs[0] = 1.0f;                                        // one white pixel in image 0
  const Image g = captioned_grid(imgs.data(), 3, s, 2, "caption");
  const int scale = grid_scale(s);
  EXPECT_EQ(grid_scale({1, 48, 192}), 2);
  EXPECT_EQ(grid_scale({1, 32, 32}), 5);
  EXPECT_EQ(g.channels, 3);
  EXPECT_GE(g.width, 2 * 16 * scale);
  // Tile 0 starts below the caption, 6 pixels in; its first pixel is a white scale x scale block.
  const int x0 = 6, y0 = Canvas::text_height(2) + 12;
  EXPECT_EQ(g.at(x0, y0)[0], 255);
  EXPECT_EQ(g.at(x0 + scale - 1, y0 + scale - 1)[0], 255);
  EXPECT_EQ(g.at(x0 + scale, y0)[0], 0);
  EXPECT_EQ(g.at(x0, y0 + scale)[0], 0);
  EXPECT_EQ(grid_columns(16, {1, 48, 192}), 2);
  EXPECT_EQ(grid_columns(16, {1, 32, 32}), 4);
}

TEST(Samples, RuntimeSamplesFromNoiseRecordOneChain) {
  const Preset p = load_preset("book");
  const Model m = random_model(p.arch, 3);
  SamplerParams sp;
  sp.steps = 20;
  const NoiseSamples ns = sample_from_noise(m, sp, 3, 9, 1, 4);
  ASSERT_EQ(ns.images.size(), size_t(3 * p.arch.input.size()));
  EXPECT_EQ(ns.energies.size(), 3u);
  EXPECT_EQ(ns.snapshot_steps, (std::vector<int>{0, 5, 10, 15, 20}));
  EXPECT_EQ(ns.snapshots.back(),
            std::vector<float>(ns.images.begin(), ns.images.begin() + p.arch.input.size()));
  for (float v : ns.images) ASSERT_TRUE(v >= -1.0f && v <= 1.0f);
}

}  // namespace
}  // namespace ebm::train
