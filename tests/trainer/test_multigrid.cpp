// Multi-grid contrastive divergence (--objective multigrid, Gao et al. 2018): the coarser grids
// are the run's (or --grid-presets') layers on the images averaged down; the sampler walks them
// coarse to fine with each pixel repeated over a 2x2 block in between, chunk by chunk the same
// chains as in one call; a run trains every grid, resumes bit for bit, and exports each grid as
// a model file of its own size.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "../expect_error.h"
#include "checkpoint.h"
#include "ebm/sampler.h"
#include "export.h"
#include "metrics_csv.h"
#include "net.h"
#include "objective.h"
#include "run.h"
#include "sample_pngs.h"
#include "trainer.h"
#include "trainer_test_util.h"

namespace ebm::train {
namespace {

using test::quiet;
using test::scratch_dir;

// A run's architecture as run.cpp stores it: the small 64x16 network, and its layers as written
// for both coarser grids.
nlohmann::json small_multigrid_architecture() {
  const nlohmann::json preset = test::small_preset(64, 16);
  nlohmann::json a = {{"input", preset["input"]}, {"layers", preset["layers"]}};
  a["grids"] = {preset["layers"], preset["layers"]};
  return a;
}

// A 5x5 convolution without padding, then an energy: fits 64x16 and 32x8, not 16x4.
nlohmann::json valid_5x5_layers() {
  return nlohmann::json::parse(R"([{"type":"conv2d","out_channels":4,"kernel":5,"padding":[0,0]},
                                   {"type":"flatten"},{"type":"dense","out_features":1}])");
}

TEST(Multigrid, TheCoarserGridsAreTheLayersOnTheImagesAveragedDown) {
  const nlohmann::json a = small_multigrid_architecture();
  EXPECT_EQ(multigrid_architecture(a, 0).input, (Shape{1, 4, 16}));
  EXPECT_EQ(multigrid_architecture(a, 1).input, (Shape{1, 8, 32}));
  // "same" padding resolved on the grid's own input: the dense layer reads what the grid gives.
  EXPECT_EQ(multigrid_architecture(a, 0).layers.back().out, (Shape{1, 1, 1}));
  EXPECT_EQ(multigrid_architecture(a, 1).parameter_count(),
            resolve_architecture({1, 8, 32}, a["layers"]).parameter_count());

  test::expect_error([&] { multigrid_architecture(a, 2); }, {"grid 2", "0 to 1", "without --grid"});
  nlohmann::json odd = a;
  odd["input"]["width"] = 62;
  test::expect_error([&] { multigrid_architecture(odd, 0); }, {"multiples of 4", "62x16"});
  nlohmann::json denoiser = a;
  denoiser["energy"] = {{"form", "denoiser"}};
  test::expect_error([&] { multigrid_architecture(denoiser, 0); }, {"--objective dsm"});
  nlohmann::json none = a;
  none.erase("grids");
  test::expect_error([&] { multigrid_architecture(none, 0); }, {"no layers for its 2 coarser"});
  // Layers that do not fit the smaller input: a 5x5 kernel without padding on 4 rows.
  nlohmann::json unfit = a;
  unfit["grids"][0] = valid_5x5_layers();
  test::expect_error([&] { multigrid_architecture(unfit, 0); }, {"16x4 grid", "--grid-presets"});
  EXPECT_EQ(multigrid_architecture(unfit, 1).input, (Shape{1, 8, 32}));
  // The bridge run's grids: the compact network at 96x24, its shallower form at 48x12.
  nlohmann::json bridges = {{"input", {{"channels", 1}, {"height", 48}, {"width", 192}}},
                            {"layers", load_preset("compact").layers}};
  bridges["grids"] = {load_preset("compact-grid").layers, load_preset("compact").layers};
  EXPECT_EQ(multigrid_architecture(bridges, 0).input, (Shape{1, 12, 48}));
  EXPECT_EQ(multigrid_architecture(bridges, 1).input, (Shape{1, 24, 96}));
}

// The runtime networks of a fresh small net on each of the three grids.
struct Grids {
  std::vector<Model> models;
  std::vector<Network> nets;
  std::vector<const Network*> ptrs;
  explicit Grids(uint64_t seed) {
    const nlohmann::json a = small_multigrid_architecture();
    for (int k = 0; k < 2; ++k)
      models.push_back(EnergyNet(multigrid_architecture(a, k), seed + uint64_t(k))
                           ->to_model(ModelKind::kEnergy));
    models.push_back(EnergyNet(resolve_architecture({1, 16, 64}, a["layers"]), seed + 2)
                         ->to_model(ModelKind::kEnergy));
    for (const Model& m : models) nets.emplace_back(m);
    for (const Network& n : nets) ptrs.push_back(&n);
  }
};

SamplerParams paper_steps(int steps) {
  SamplerParams p;
  p.steps = steps;
  p.step_size = 100;
  p.grad_clip = 0.003f;
  return p;
}

TEST(Multigrid, TheSamplerRepeatsEachPixelOverABlockAndGivesTheSameChainsInChunks) {
  const Grids g(5);
  // With no steps on the finer grids the samples are the coarsest grid's, each pixel over a 4x4
  // block, and those are the runtime sampler's own on that grid (grid 0 draws with the seed).
  const std::vector<SamplerParams> coarse_only = {paper_steps(6), paper_steps(0), paper_steps(0)};
  const NoiseSamples up = sample_multigrid(g.ptrs, coarse_only, 3, 42, 1);
  LangevinSampler alone(g.nets[0], coarse_only[0], 42, 1);
  alone.start_uniform(3);
  alone.run();
  const std::vector<float>& c = alone.images();
  ASSERT_EQ(up.images.size(), size_t(3 * 16 * 64));
  for (int i = 0; i < 3; ++i)
    for (int y = 0; y < 16; ++y)
      for (int x = 0; x < 64; ++x)
        ASSERT_EQ(up.images[size_t((i * 16 + y) * 64 + x)], c[size_t((i * 4 + y / 4) * 16 + x / 4)])
            << "image " << i << " pixel " << y << "," << x;
  // Chain 0 recorded at each grid's start and end (and between), shown at the full size.
  ASSERT_FALSE(up.snapshots.empty());
  EXPECT_EQ(up.snapshot_names.front(), "16x4, step 0");
  EXPECT_EQ(up.snapshot_names.back(), "64x16, step 0");
  for (const std::vector<float>& s : up.snapshots) EXPECT_EQ(s.size(), size_t(16 * 64));

  // Every grid walking: chains 0-4 in one call, or as 0-2 and 3-4, on one thread or two.
  const std::vector<SamplerParams> walk(3, paper_steps(5));
  const NoiseSamples one = sample_multigrid(g.ptrs, walk, 5, 9, 1);
  const NoiseSamples a = sample_multigrid(g.ptrs, walk, 3, 9, 2);
  const NoiseSamples b = sample_multigrid(g.ptrs, walk, 2, 9, 1, 4, nullptr, 3);
  std::vector<float> chunks = a.images;
  chunks.insert(chunks.end(), b.images.begin(), b.images.end());
  EXPECT_EQ(one.images, chunks);
  EXPECT_EQ(one.walk, "coarse to fine over 3 grids, 5 steps each");
  EXPECT_EQ(up.walk, "coarse to fine over 3 grids, 6, 0, 0 steps");
  EXPECT_NE(one.images, sample_multigrid(g.ptrs, walk, 5, 10, 1).images);  // another seed
  ASSERT_EQ(one.energies.size(), 5u);
  for (float e : one.energies) EXPECT_TRUE(std::isfinite(e));
  // The finer grids move the chains: not the coarse result repeated any more.
  EXPECT_NE(one.images, sample_multigrid(g.ptrs, {paper_steps(5), paper_steps(0), paper_steps(0)},
                                         5, 9, 1)
                            .images);

  int64_t last_done = 0, total = 0;
  sample_multigrid(g.ptrs, walk, 2, 9, 1, 4, nullptr, 0, [&](int64_t done, int64_t all) {
    EXPECT_GE(done, last_done);
    last_done = done;
    total = all;
    return true;
  });
  EXPECT_EQ(total, 2 * 15);
  EXPECT_EQ(last_done, total);

  test::expect_error([&] { sample_multigrid({g.ptrs[1], g.ptrs[0]}, {walk[0], walk[1]}, 1, 1, 1); },
                     {"grid 1 takes 1x4x16", "not twice the 1x8x32", "coarsest first"});
  test::expect_error([&] { sample_multigrid(g.ptrs, {walk[0]}, 1, 1, 1); },
                     {"3 grids, 1 settings"});
}

TrainConfig multigrid_config(const std::string& work) {
  TrainConfig c = test::small_config(work);
  c.objective = Objective::kMultigrid;
  c.langevin_steps = 5;
  c.sampler.step_size = 100;
  c.sampler.grad_clip = 0.003f;
  return c;
}

TEST(Multigrid, ARunTrainsEveryGridResumesBitForBitAndExportsEach) {
  const std::string work = scratch_dir("multigrid_run");
  TrainConfig c = multigrid_config(work);
  c.spectral_norm = true;
  c.max_steps = 8;  // past the first epoch (7 steps of 16 of the 115 training images)
  ASSERT_EQ(run_training(c, quiet(work + "/straight")), RunResult::kStepLimit);
  TrainConfig half = c;
  half.max_steps = 4;
  ASSERT_EQ(run_training(half, quiet(work + "/split")), RunResult::kStepLimit);
  TrainConfig again = read_run_config(work + "/split");
  again.max_steps = 8;
  ASSERT_EQ(run_training(again, quiet(work + "/split", true)), RunResult::kStepLimit);

  const std::string straight = work + "/straight/checkpoint.pt", split = work + "/split/checkpoint.pt";
  for (int grid = -1; grid < 2; ++grid) {
    const CheckpointInfo a = read_checkpoint(straight, grid), b = read_checkpoint(split, grid);
    ASSERT_EQ(a.tensors.size(), b.tensors.size());
    for (size_t i = 0; i < a.tensors.size(); ++i)
      EXPECT_TRUE(torch::equal(a.tensors[i].second, b.tensors[i].second))
          << "grid " << grid << " " << a.tensors[i].first;
  }
  const MetricsTable ma = read_metrics(work + "/straight/metrics.csv");
  EXPECT_EQ(ma.column("loss"), read_metrics(work + "/split/metrics.csv").column("loss"));
  // Every grid has its contrastive divergence in the log, and every grid learns.
  for (const char* f : {"cdiv_16x4", "cdiv_32x8", "cdiv"}) {
    const std::vector<double> v = ma.column(f);
    ASSERT_EQ(v.size(), 8u) << f;
    for (double x : v) EXPECT_TRUE(std::isfinite(x)) << f;
  }
  TrainConfig once = c;
  once.max_steps = 1;
  ASSERT_EQ(run_training(once, quiet(work + "/one")), RunResult::kStepLimit);
  for (int grid = -1; grid < 2; ++grid) {
    const CheckpointInfo one = read_checkpoint(work + "/one/checkpoint.pt", grid);
    const CheckpointInfo eight = read_checkpoint(straight, grid);
    bool moved = false;
    for (size_t i = 0; i < one.tensors.size(); ++i)
      moved = moved || !torch::equal(one.tensors[i].second, eight.tensors[i].second);
    EXPECT_TRUE(moved) << "grid " << grid << " kept its weights from step 1 to step 8";
  }

  // The epoch's pictures: samples and one chain through the grids.
  EXPECT_TRUE(std::filesystem::exists(work + "/straight/epoch_001_samples.png"));
  EXPECT_TRUE(std::filesystem::exists(work + "/straight/epoch_001_chain.png"));

  // Each grid as a model file of its own size, the card saying which; sampled as trained.
  for (int grid = 0; grid < 2; ++grid) {
    ExportOptions opt;
    opt.source = straight;
    const Model m = export_checkpoint(read_checkpoint(straight, grid), opt);
    EXPECT_EQ(m.image_shape(), grid == 0 ? (Shape{1, 4, 16}) : (Shape{1, 8, 32}));
    EXPECT_EQ(m.card["training"]["grid"], grid);
    EXPECT_EQ(m.card["training"]["grids"], 3);
    EXPECT_EQ(m.sampler.steps, 5);
  }
  ExportOptions opt;
  const Model fine = export_checkpoint(read_checkpoint(straight), opt);
  EXPECT_EQ(fine.card["training"]["grid"], 2);
  EXPECT_EQ(fine.card["training"]["objective"], "multi-grid contrastive divergence (Gao et al. 2018)");
  EXPECT_EQ(fine.sampler.steps, 5);
}

TrainConfig cd_one(const std::string& work) {
  TrainConfig c = test::small_config(work);
  c.max_steps = 1;
  return c;
}

TEST(Multigrid, RefusedWhereItCannotRun) {
  const std::string work = scratch_dir("multigrid_refused");
  TrainConfig cd = cd_one(work);
  cd.grid_presets = {"compact-grid", "compact"};
  test::expect_error([&] { run_training(cd, quiet(work + "/a")); },
                     {"--grid-presets", "multigrid", "this run is cd"});
  TrainConfig two = multigrid_config(work);
  two.grid_presets = {"compact-grid"};
  test::expect_error([&] { run_training(two, quiet(work + "/b")); }, {"needs 2 presets", "got 1"});
  // A grid preset whose layers do not fit its grid.
  TrainConfig unfit = multigrid_config(work);
  nlohmann::json valid = test::small_preset(64, 16);
  valid["layers"] = valid_5x5_layers();
  const std::string valid_dir = scratch_dir("multigrid_refused_preset");
  unfit.grid_presets = {test::write_preset(valid_dir, valid), unfit.preset};
  test::expect_error([&] { run_training(unfit, quiet(work + "/c")); },
                     {"16x4 grid", "--grid-presets"});

  // One process only.
  TrainConfig mg = multigrid_config(work);
  mg.architecture = small_multigrid_architecture();
  EnergyNet net(config_architecture(mg), 1);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(1);
  test::expect_error([&] { make_objective(mg, net, gen, Shard{0, 2}); }, {"one process", "WORLD_SIZE"});

  // --grid belongs to multi-grid checkpoints.
  ASSERT_EQ(run_training(cd_one(work), quiet(work + "/cd")), RunResult::kStepLimit);
  test::expect_error([&] { read_checkpoint(work + "/cd/checkpoint.pt", 0); },
                     {"--grid 0", "this run (cd) has one network", "--objective multigrid"});
}

}  // namespace
}  // namespace ebm::train
