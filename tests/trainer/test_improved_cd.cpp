// Du et al. (2021)'s improvements to contrastive divergence (--kl-weight, --augment): the KL
// term's gradient is the derivative of the samples' energy through the last Langevin step
// (checked against finite differences in double precision), its entropy part is the nearest
// neighbour's log distance, the augmentation moves whole images and nothing else, and the options
// travel through a run, its checkpoint and the model card.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "../expect_error.h"
#include "checkpoint.h"
#include "export.h"
#include "langevin.h"
#include "metrics_csv.h"
#include "net.h"
#include "objective.h"
#include "run.h"
#include "trainer.h"
#include "trainer_test_util.h"

namespace ebm::train {
namespace {

using test::quiet;
using test::scratch_dir;

// The small 64x16 network of the training tests, initialised from `seed`.
EnergyNet small_net(uint64_t seed) {
  const std::string dir = scratch_dir("improved_cd_net_" + std::to_string(seed));
  return EnergyNet(load_preset(test::write_preset(dir, test::small_preset(64, 16))).arch, seed);
}

// The same with its weights in double precision.
EnergyNet double_net() {
  EnergyNet net = small_net(3);
  net->to(torch::kDouble);
  return net;
}

// Element j of t in row-major order, as a view (t may be strided).
torch::Tensor element(torch::Tensor t, int64_t j) {
  std::vector<int64_t> index(size_t(t.dim()));
  for (int64_t d = t.dim() - 1; d >= 0; --d) {
    index[size_t(d)] = j % t.size(d);
    j /= t.size(d);
  }
  for (int64_t i : index) t = t.select(0, i);
  return t;
}

// Images well inside (-1, 1), so that no clamp of a Langevin step is active.
torch::Tensor inner_images(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  return torch::rand({n, 1, 16, 64}, torch::kDouble) * 1.2 - 0.6;
}

TEST(ImprovedCd, TheKlTermsWeightGradientIsTheSamplesEnergyDifferentiatedThroughTheLastStep) {
  // f(w) = mean_i E_w0(x_K(w)_i), x_K the textbook step from fixed images and noise: the energy
  // read with the weights held at w0, so that only the step depends on w. kl_loss less its
  // entropy part must have f's gradient.
  EnergyNet net = double_net();
  SamplerParams p;
  p.form = SamplerForm::kTextbook;
  p.eps = 0.02f;
  const torch::Tensor x = inner_images(4, 11);
  torch::manual_seed(12);
  const torch::Tensor z = torch::randn(x.sizes(), torch::kDouble) * 0.1;
  const torch::Tensor bank = inner_images(8, 13);

  double entropy = 0;
  const torch::Tensor sample = last_langevin_step(*net, x, z, p);
  const torch::Tensor loss = kl_loss(*net, sample, bank, nullptr, &entropy);
  // The entropy part does not depend on the weights' values except through x_K; add it back so
  // that what is differentiated below is the energy part alone.
  const torch::Tensor xf = sample.flatten(1), bf = bank.flatten(1);
  const torch::Tensor log_nn = std::get<0>(torch::cdist(xf, bf).min(1)).log().mean();
  EXPECT_NEAR(entropy, log_nn.item<double>(), 1e-9);
  const std::vector<torch::Tensor> params = net->parameters();
  const std::vector<torch::Tensor> grads =
      torch::autograd::grad({loss + log_nn}, params, {}, false, false, true);

  auto f = [&] { return last_langevin_step(*net, x, z, p).detach(); };
  const torch::Tensor base = f();
  EnergyNet frozen = double_net();  // the same seed: w0
  auto energy_at = [&](const torch::Tensor& s) {
    torch::NoGradGuard no_grad;
    return frozen->forward(s).mean().item<double>();
  };
  EXPECT_NEAR(energy_at(base), energy_at(sample.detach()), 1e-12);
  int checked = 0;
  for (size_t k = 0; k < params.size(); ++k) {
    // The last bias does not change dE/dx: no gradient, and none by finite differences either.
    const torch::Tensor gk = grads[k].defined() ? grads[k] : torch::zeros_like(params[k]);
    const int64_t count = params[k].numel();
    for (int64_t j : {int64_t(0), count / 2, count - 1}) {
      torch::Tensor wj = element(params[k], j);
      const double h = 1e-5, w = wj.item<double>();
      double fp, fm;
      {
        torch::NoGradGuard no_grad;
        wj.fill_(w + h);
      }
      fp = energy_at(f());
      {
        torch::NoGradGuard no_grad;
        wj.fill_(w - h);
      }
      fm = energy_at(f());
      {
        torch::NoGradGuard no_grad;
        wj.fill_(w);
      }
      const double fd = (fp - fm) / (2 * h), an = element(gk, j).item<double>();
      EXPECT_NEAR(an, fd, 1e-6 + 1e-5 * std::abs(fd)) << "parameter " << k << " element " << j;
      ++checked;
    }
  }
  EXPECT_EQ(checked, 3 * int(params.size()));
  // And the step does move with the weights (the check above would hold for a constant).
  double total = 0;
  for (const torch::Tensor& g : grads)
    if (g.defined()) total += g.abs().sum().item<double>();
  EXPECT_GT(total, 1e-6);
}

TEST(ImprovedCd, TheEntropyPartPushesEachSampleAwayFromItsNearestBankImage) {
  // d/dx_i of -mean_j log |x_j - b(j)| is -(x_i - b(i)) / (n |x_i - b(i)|^2).
  EnergyNet net = double_net();
  const torch::Tensor bank = inner_images(6, 21);
  torch::Tensor x = inner_images(3, 22);
  x[1].copy_(bank[4] + 0.01);  // one sample right next to a bank image
  x.requires_grad_(true);
  double entropy = 0, energy = 0;
  const torch::Tensor loss = kl_loss(*net, x, bank, &energy, &entropy);
  const torch::Tensor g = torch::autograd::grad({loss}, {x})[0];
  // The energy part's input gradient, held constant inside kl_loss: dE/dx / n.
  const torch::Tensor xe = x.detach().requires_grad_(true);
  const torch::Tensor e = net->forward(xe).select(1, 0);
  const torch::Tensor ge = torch::autograd::grad({e.sum()}, {xe})[0] / 3.0;
  EXPECT_NEAR(energy, e.mean().item<double>(), 1e-12);
  double log_sum = 0;
  for (int64_t i = 0; i < 3; ++i) {
    const torch::Tensor d = (x[i].detach().unsqueeze(0) - bank).flatten(1).norm(2, 1);
    const int64_t nn = d.argmin().item<int64_t>();
    const double dn = d[nn].item<double>();
    log_sum += std::log(dn);
    if (i == 1) {
      EXPECT_EQ(nn, 4);
    }
    const torch::Tensor expect = ge[i] - (x[i].detach() - bank[nn]) / (3.0 * dn * dn);
    EXPECT_TRUE(torch::allclose(g[i], expect, 1e-9, 1e-12)) << "sample " << i;
  }
  EXPECT_NEAR(entropy, log_sum / 3.0, 1e-12);
}

TEST(ImprovedCd, TheLastStepIsTheTorchBackendsStepWithTheSameNoise) {
  // The paper form, clamps and gradient clip active, in single precision as training runs it.
  EnergyNet net = small_net(5);
  SamplerParams p;
  p.form = SamplerForm::kPaper;
  p.step_size = 10;
  p.noise = 0.05f;
  p.grad_clip = 0.003f;
  torch::manual_seed(31);
  const torch::Tensor x = torch::rand({5, 1, 16, 64}) * 2 - 1;
  at::Generator a = at::make_generator<at::CPUGeneratorImpl>(77), b = at::make_generator<at::CPUGeneratorImpl>(77);
  const torch::Tensor z = torch::randn(x.sizes(), a, torch::kFloat32);
  const torch::Tensor mine = last_langevin_step(*net, x, z, p);
  const torch::Tensor theirs = langevin(*net, x, p, 1, b, LangevinBackend::kTorch);
  EXPECT_TRUE(mine.requires_grad());
  EXPECT_TRUE(torch::allclose(mine.detach(), theirs, 1e-6, 1e-7));
  EXPECT_GT((mine.detach() - x).abs().max().item<float>(), 0.01f);  // it did move
  // The textbook form too.
  p.form = SamplerForm::kTextbook;
  p.eps = 0.01f;
  const torch::Tensor z2 = torch::randn(x.sizes(), a, torch::kFloat32);
  EXPECT_TRUE(torch::allclose(last_langevin_step(*net, x, z2, p).detach(),
                              langevin(*net, x, p, 1, b, LangevinBackend::kTorch), 1e-6, 1e-7));
  p.form = SamplerForm::kAnnealed;
  test::expect_error([&] { last_langevin_step(*net, x, z, p); }, {"paper or textbook"});
}

TEST(ImprovedCd, AugmentationMirrorsAndShiftsWholeImagesWithTheirEdgesRepeated) {
  torch::manual_seed(41);
  const torch::Tensor x = torch::rand({48, 1, 16, 64}) * 2 - 1;
  at::Generator g0 = at::make_generator<at::CPUGeneratorImpl>(5), g1 = at::make_generator<at::CPUGeneratorImpl>(5);
  EXPECT_TRUE(torch::equal(augment_images(x, 0.0, g0), x));
  const torch::Tensor y = augment_images(x, 1.0, g1);
  // The stream advances alike whatever p is.
  EXPECT_TRUE(torch::equal(g0.get_state(), g1.get_state()));
  const torch::Tensor padded = torch::nn::functional::pad(
      x, torch::nn::functional::PadFuncOptions({8, 8, 2, 2}).mode(torch::kReplicate));
  int mirrored = 0, moved = 0;
  for (int64_t i = 0; i < x.size(0); ++i) {
    bool found = false;
    for (int dy = -2; dy <= 2 && !found; ++dy)
      for (int dx = -8; dx <= 8 && !found; ++dx)
        for (bool flip : {false, true}) {
          torch::Tensor c = padded[i].narrow(1, 2 + dy, 16).narrow(2, 8 + dx, 64);
          if (flip) c = c.flip({2});
          if (torch::equal(c, y[i])) {
            found = true;
            mirrored += flip;
            moved += dx != 0 || dy != 0;
            break;
          }
        }
    EXPECT_TRUE(found) << "image " << i << " is not a shifted or mirrored copy of its own";
  }
  EXPECT_GT(mirrored, 12);
  EXPECT_LT(mirrored, 36);
  EXPECT_GT(moved, 40);
  // At p = 0.5 about half the images change.
  at::Generator g2 = at::make_generator<at::CPUGeneratorImpl>(6);
  const torch::Tensor h = augment_images(x, 0.5, g2);
  int changed = 0;
  for (int64_t i = 0; i < x.size(0); ++i) changed += !torch::equal(h[i], x[i]);
  EXPECT_GT(changed, 12);
  EXPECT_LT(changed, 36);
}

TrainConfig improved_cd_config(const std::string& work) {
  TrainConfig c = test::small_config(work);
  c.langevin_steps = 5;
  c.max_steps = 4;
  return c;
}

TEST(ImprovedCd, ARunLogsTheKlFiguresAndTheCardSaysHowItWasTrained) {
  const std::string work = scratch_dir("improved_cd_run");
  TrainConfig plain = improved_cd_config(work);
  TrainConfig improved = plain;
  improved.kl_weight = 0.5;
  improved.augment = 0.5;
  const TrainConfig back = TrainConfig::from_json(improved.to_json());
  EXPECT_EQ(back.kl_weight, 0.5);
  EXPECT_EQ(back.augment, 0.5);
  ASSERT_EQ(run_training(plain, quiet(work + "/plain")), RunResult::kStepLimit);
  ASSERT_EQ(run_training(improved, quiet(work + "/improved")), RunResult::kStepLimit);
  const MetricsTable m = read_metrics(work + "/improved/metrics.csv");
  const std::vector<double> kl = m.column("kl_energy"), ent = m.column("kl_entropy"),
                            fake = m.column("fake");
  ASSERT_EQ(kl.size(), 4u);
  for (size_t i = 0; i < kl.size(); ++i) {
    EXPECT_TRUE(std::isfinite(kl[i]) && std::isfinite(ent[i])) << "step " << i + 1;
    EXPECT_NEAR(kl[i], fake[i], 1e-4 + 1e-4 * std::abs(fake[i])) << "step " << i + 1;
    EXPECT_GT(ent[i], 0.0) << "step " << i + 1;  // images of 1024 pixels are far apart
  }
  EXPECT_EQ(read_metrics(work + "/plain/metrics.csv").index("kl_energy"), -1);
  auto card = [&](const std::string& run) {
    ExportOptions opt;
    opt.source = work + "/" + run + "/checkpoint.pt";
    return export_checkpoint(read_checkpoint(opt.source), opt).card;
  };
  const nlohmann::json with = card("improved");
  EXPECT_EQ(with["training"]["kl_weight"], 0.5) << with.dump();
  EXPECT_EQ(with["training"]["augment"], 0.5) << with.dump();
  EXPECT_FALSE(card("plain")["training"].contains("kl_weight"));
  EXPECT_FALSE(card("plain")["training"].contains("augment"));
}

TEST(ImprovedCd, TheOptionsAreRefusedWhereThereAreNoContrastiveDivergenceChains) {
  const std::string work = scratch_dir("improved_cd_refused");
  TrainConfig c = improved_cd_config(work);
  c.task = Task::kClassify;
  c.augment = 0.5;
  test::expect_error([&] { run_training(c, quiet(work + "/a")); },
                     {"--augment", "this run is classify", "--objective cd"});
  TrainConfig d = improved_cd_config(work);
  d.kl_weight = 1;
  d.sampler.form = SamplerForm::kAnnealed;
  test::expect_error([&] { run_training(d, quiet(work + "/b")); },
                     {"--kl-weight", "annealed", "--form paper or textbook"});
}

}  // namespace
}  // namespace ebm::train
