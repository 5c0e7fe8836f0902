#include "ebm/metrics.h"

#include <Eigen/Eigenvalues>
#include <algorithm>
#include <cmath>
#include <limits>

#include "ebm/error.h"
#include "gemm.h"

namespace ebm {

namespace {
using MatrixD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Square root of a symmetric positive semi-definite matrix (negative rounding noise clipped).
MatrixD sqrt_psd(const MatrixD& m) {
  Eigen::SelfAdjointEigenSolver<MatrixD> eig(m);
  const Eigen::VectorXd roots = eig.eigenvalues().cwiseMax(0.0).cwiseSqrt();
  return eig.eigenvectors() * roots.asDiagonal() * eig.eigenvectors().transpose();
}
}  // namespace

Gaussian fit_gaussian(const float* features, int n, int d) {
  if (n < 2) throw Error("fitting a Gaussian needs at least 2 samples, got " + std::to_string(n));
  if (d < 1) throw Error("fitting a Gaussian needs at least one feature");
  Gaussian g;
  g.dim = d;
  Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> x(
      features, n, d);
  const MatrixD xd = x.cast<double>();
  const Eigen::RowVectorXd mean = xd.colwise().mean();
  const MatrixD centred = xd.rowwise() - mean;
  const MatrixD cov = centred.transpose() * centred / double(n - 1);
  g.mean.assign(mean.data(), mean.data() + d);
  g.cov.assign(cov.data(), cov.data() + size_t(d) * d);
  return g;
}

double frechet_distance(const Gaussian& a, const Gaussian& b) {
  if (a.dim != b.dim || a.dim < 1)
    throw Error("Frechet distance between Gaussians of dimension " + std::to_string(a.dim) +
                " and " + std::to_string(b.dim));
  const int d = a.dim;
  Eigen::Map<const Eigen::VectorXd> m1(a.mean.data(), d), m2(b.mean.data(), d);
  Eigen::Map<const MatrixD> c1(a.cov.data(), d, d), c2(b.cov.data(), d, d);
  const MatrixD s1 = sqrt_psd(c1);
  const MatrixD inner = s1 * c2 * s1;
  Eigen::SelfAdjointEigenSolver<MatrixD> eig(0.5 * (inner + inner.transpose()),
                                             Eigen::EigenvaluesOnly);
  const double tr_sqrt = eig.eigenvalues().cwiseMax(0.0).cwiseSqrt().sum();
  const double value = (m1 - m2).squaredNorm() + c1.trace() + c2.trace() - 2.0 * tr_sqrt;
  return std::max(value, 0.0);
}

std::vector<double> sharpness(const float* images, int n, int64_t size) {
  std::vector<double> out(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    double s = 0;
    for (int64_t k = 0; k < size; ++k) s += std::abs(double(images[i * size + k]));
    out[size_t(i)] = s / double(size);
  }
  return out;
}

std::vector<double> nearest_neighbour_distances(const float* queries, int nq, const float* refs,
                                                int nr, int64_t size, bool skip_self) {
  if (nr < (skip_self ? 2 : 1)) throw Error("nearest-neighbour distances need reference images");
  // |q - r|^2 = |q|^2 + |r|^2 - 2 q.r, with q.r for blocks of references by the packed GEMM.
  auto norms = [size](const float* x, int n) {
    std::vector<double> out(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
      double s = 0;
      for (int64_t k = 0; k < size; ++k) s += double(x[i * size + k]) * x[i * size + k];
      out[size_t(i)] = s;
    }
    return out;
  };
  const std::vector<double> qn = norms(queries, nq), rn = norms(refs, nr);
  std::vector<double> best(static_cast<size_t>(nq), std::numeric_limits<double>::infinity());
  constexpr int kBlock = 256;
  std::vector<float> dots(size_t(nq) * kBlock);
  for (int r0 = 0; r0 < nr; r0 += kBlock) {
    const int nb = std::min(kBlock, nr - r0);
    gemm_nt(nq, nb, int(size), queries, int(size), refs + r0 * size, int(size), dots.data(), nb);
    for (int i = 0; i < nq; ++i)
      for (int j = 0; j < nb; ++j) {
        if (skip_self && i == r0 + j) continue;
        const double d2 = qn[size_t(i)] + rn[size_t(r0 + j)] - 2.0 * dots[size_t(i) * nb + j];
        best[size_t(i)] = std::min(best[size_t(i)], d2);
      }
  }
  for (double& b : best) b = std::sqrt(std::max(b, 0.0) / double(size));
  return best;
}

double quantile(std::vector<double> values, double q) {
  if (values.empty()) throw Error("quantile of no values");
  std::sort(values.begin(), values.end());
  const double pos = std::clamp(q, 0.0, 1.0) * double(values.size() - 1);
  const size_t lo = size_t(std::floor(pos)), hi = std::min(lo + 1, values.size() - 1);
  return values[lo] + (values[hi] - values[lo]) * (pos - double(lo));
}

std::string family_of(const std::string& label) {
  return label.substr(0, label.find('_'));
}

bool FamilyMix::mixes(double threshold) const {
  return second >= 0 && family_probs[size_t(first)] >= threshold &&
         family_probs[size_t(second)] >= threshold;
}

std::string FamilyMix::describe() const {
  auto part = [&](int f) {
    return families[size_t(f)] + " " +
           std::to_string(int(std::lround(100 * family_probs[size_t(f)]))) + "%";
  };
  return second >= 0 && family_probs[size_t(second)] >= 0.005 ? part(first) + " / " + part(second)
                                                              : part(first);
}

FamilyMix family_mix(const float* logits, const std::vector<std::string>& labels) {
  if (labels.empty()) throw Error("family_mix needs classifier labels");
  FamilyMix m;
  const size_t k = labels.size();
  const double top = *std::max_element(logits, logits + k);
  double z = 0;
  m.subtype_probs.resize(k);
  for (size_t i = 0; i < k; ++i) z += m.subtype_probs[i] = std::exp(double(logits[i]) - top);
  for (double& p : m.subtype_probs) p /= z;
  m.top_subtype = int(std::max_element(m.subtype_probs.begin(), m.subtype_probs.end()) -
                      m.subtype_probs.begin());
  for (size_t i = 0; i < k; ++i) {
    const std::string f = family_of(labels[i]);
    auto it = std::find(m.families.begin(), m.families.end(), f);
    if (it == m.families.end()) {
      m.families.push_back(f);
      m.family_probs.push_back(0.0);
      it = m.families.end() - 1;
    }
    m.family_probs[size_t(it - m.families.begin())] += m.subtype_probs[i];
  }
  for (size_t f = 0; f < m.families.size(); ++f) {
    if (m.family_probs[f] > m.family_probs[size_t(m.first)]) m.first = int(f);
  }
  for (size_t f = 0; f < m.families.size(); ++f) {
    if (int(f) == m.first) continue;
    if (m.second < 0 || m.family_probs[f] > m.family_probs[size_t(m.second)]) m.second = int(f);
  }
  return m;
}

DarkPixels isolated_dark_pixels(const float* images, int n, int h, int w) {
  DarkPixels r;
  for (int b = 0; b < n; ++b) {
    const float* x = images + size_t(b) * size_t(h) * size_t(w);
    for (int i = 0; i < h; ++i)
      for (int j = 0; j < w; ++j) {
        if (!(x[size_t(i) * w + j] < 0.0f)) continue;
        ++r.dark;
        int neighbours = 0;
        for (int di = -1; di <= 1; ++di)
          for (int dj = -1; dj <= 1; ++dj) {
            const int y = i + di, z = j + dj;
            if ((di || dj) && y >= 0 && y < h && z >= 0 && z < w && x[size_t(y) * w + z] < 0.0f)
              ++neighbours;
          }
        r.isolated += neighbours <= 1;
      }
  }
  return r;
}

}  // namespace ebm
