// The replay buffer of the book's Example 7-5: capacity, the fresh-noise fraction, uniform draws
// with replacement, and prepend-then-truncate order.
#include <gtest/gtest.h>

#include <cmath>
#include <deque>

#include "replay_buffer.h"

namespace ebm::train {
namespace {

const Shape kShape{1, 4, 6};

// A batch whose image i is filled with the value tag + i (tags far outside [-1, 1], so they can
// never be mistaken for noise).
torch::Tensor tagged(int64_t n, double tag) {
  return (torch::arange(n, torch::kFloat32) + tag)
      .view({n, 1, 1, 1})
      .expand({n, 1, 4, 6})
      .contiguous();
}

double tag_of(const torch::Tensor& img) {
  return img.flatten()[0].item<double>();
}

TEST(ReplayBuffer, StartsAsOneBatchOfUniformNoise) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(1);
  ReplayBuffer buf(8192, kShape);
  buf.reset_uniform(128, gen);
  EXPECT_EQ(buf.size(), 128);
  const torch::Tensor x = buf.ordered();
  EXPECT_GE(x.min().item<double>(), -1.0);
  EXPECT_LT(x.max().item<double>(), 1.0);
  // Uniform on [-1, 1): mean 0, standard deviation 1/sqrt(3), over 3072 values.
  EXPECT_NEAR(x.mean().item<double>(), 0.0, 0.05);
  EXPECT_NEAR(x.std().item<double>(), 1.0 / std::sqrt(3.0), 0.02);
}

TEST(ReplayBuffer, PrependsNewestFirstAndTruncatesToCapacityLikeTheBooksList) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(2);
  ReplayBuffer buf(100, kShape);
  std::deque<double> reference;  // the book: examples = split(batch) + examples; examples[:cap]
  for (int b = 0; b < 9; ++b) {
    const int64_t n = 7 + 5 * b;  // batches of varying size, wrapping the ring several times
    const torch::Tensor batch = tagged(n, 1000.0 * (b + 1));
    buf.push_front(batch);
    for (int64_t i = n - 1; i >= 0; --i) reference.push_front(1000.0 * (b + 1) + double(i));
    while (reference.size() > 100) reference.pop_back();
    ASSERT_EQ(buf.size(), int64_t(reference.size())) << "after batch " << b;
    const torch::Tensor all = buf.ordered();
    for (size_t i = 0; i < reference.size(); ++i)
      ASSERT_EQ(tag_of(all[int64_t(i)]), reference[i]) << "image " << i << " after batch " << b;
  }
  EXPECT_EQ(buf.size(), 100);
  EXPECT_EQ(tag_of(buf.at(0)), reference.front());
  EXPECT_EQ(tag_of(buf.at(99)), reference.back());
}

TEST(ReplayBuffer, ABatchLargerThanTheCapacityKeepsItsFirstImages) {
  ReplayBuffer buf(10, kShape);
  buf.push_front(tagged(25, 100));
  EXPECT_EQ(buf.size(), 10);
  EXPECT_EQ(tag_of(buf.at(0)), 100);
  EXPECT_EQ(tag_of(buf.at(9)), 109);
}

TEST(ReplayBuffer, FreshNoiseCountIsBinomialWithTheConfiguredFraction) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(3);
  ReplayBuffer buf(512, kShape);
  buf.push_front(tagged(512, 10));
  const int64_t B = 128, draws = 3000;
  const double p = 0.05;
  double sum = 0, sum2 = 0;
  for (int d = 0; d < draws; ++d) {
    int64_t n_new = -1;
    const torch::Tensor x = buf.draw(B, p, gen, &n_new);
    // The fresh images come first and are noise in [-1, 1); the rest are buffer images.
    const torch::Tensor first = x.flatten(1).select(1, 0);
    const int64_t noise = first.lt(1.5).sum().item<int64_t>();
    ASSERT_EQ(noise, n_new);
    if (n_new > 0) {
      ASSERT_LT(first.narrow(0, 0, n_new).max().item<double>(), 1.0);
    }
    if (n_new < B) {
      ASSERT_GE(first.narrow(0, n_new, B - n_new).min().item<double>(), 10.0);
    }
    sum += double(n_new);
    sum2 += double(n_new) * double(n_new);
  }
  const double mean = sum / draws, var = sum2 / draws - mean * mean;
  // Binomial(128, 0.05): mean 6.4, variance 6.08; the mean's standard error is 0.045.
  EXPECT_NEAR(mean, B * p, 0.2) << "mean fresh count";
  EXPECT_NEAR(var, B * p * (1 - p), 0.6) << "variance of the fresh count";
}

TEST(ReplayBuffer, OldImagesAreDrawnUniformlyWithReplacement) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(4);
  ReplayBuffer buf(64, kShape);
  buf.push_front(tagged(10, 100));  // only 10 images so far: draws must stay among them
  std::vector<double> count(10, 0);
  const int draws = 400, B = 50;
  bool repeated_within_batch = false;
  for (int d = 0; d < draws; ++d) {
    const torch::Tensor x = buf.draw(B, 0.0, gen);
    std::vector<int> seen(10, 0);
    for (int64_t i = 0; i < B; ++i) {
      const int k = int(tag_of(x[i]) - 100);
      ASSERT_GE(k, 0);
      ASSERT_LT(k, 10);
      count[size_t(k)] += 1;
      if (++seen[size_t(k)] > 1) repeated_within_batch = true;
    }
  }
  EXPECT_TRUE(repeated_within_batch);  // 50 draws from 10 images: with replacement
  // Chi-square with 9 degrees of freedom; 27.9 is its 0.999 quantile.
  const double expected = double(draws) * B / 10;
  double chi2 = 0;
  for (double c : count) chi2 += (c - expected) * (c - expected) / expected;
  EXPECT_LT(chi2, 27.9);
}

TEST(ReplayBuffer, FreshFractionZeroAndOne) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(5);
  ReplayBuffer buf(16, kShape);
  buf.push_front(tagged(16, 10));
  int64_t n = -1;
  EXPECT_GE(buf.draw(32, 0.0, gen, &n).min().item<double>(), 10.0);
  EXPECT_EQ(n, 0);
  EXPECT_LT(buf.draw(32, 1.0, gen, &n).max().item<double>(), 1.0);
  EXPECT_EQ(n, 32);
}

TEST(ReplayBuffer, RestoreGivesBackTheSameOrder) {
  ReplayBuffer a(50, kShape), b(50, kShape);
  for (int k = 0; k < 4; ++k) a.push_front(tagged(17, 100.0 * (k + 1)));
  b.restore(a.ordered());
  EXPECT_TRUE(torch::equal(a.ordered(), b.ordered()));
  a.push_front(tagged(3, 7000));
  b.push_front(tagged(3, 7000));
  EXPECT_TRUE(torch::equal(a.ordered(), b.ordered()));
}

}  // namespace
}  // namespace ebm::train
