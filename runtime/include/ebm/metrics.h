// Measures of generated images used by the evaluation program and the page: Frechet distance
// between feature distributions, sharpness, nearest-neighbour novelty, and a classifier's family
// mix (which bridge families a sample combines). All in the runtime, so the page and ebm-eval run
// the same code.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ebm {

// Mean and covariance (unbiased, n - 1) of n feature vectors of dimension d, in double.
struct Gaussian {
  int dim = 0;
  std::vector<double> mean;  // [d]
  std::vector<double> cov;   // [d, d] row-major
};
Gaussian fit_gaussian(const float* features, int n, int d);

// Frechet distance between two Gaussians (the FID formula):
//   |mu1 - mu2|^2 + tr(C1 + C2 - 2 (C1 C2)^(1/2)),
// with tr((C1 C2)^(1/2)) computed as the sum of square roots of the eigenvalues of
// C1^(1/2) C2 C1^(1/2) (symmetric, so exact up to rounding). Never negative.
double frechet_distance(const Gaussian& a, const Gaussian& b);

// Mean |x| over all pixels of n images of `size` floats each in [-1, 1]: line drawings sit near
// -1 and +1 (about 1), blurry or grey images lower. One value per image.
std::vector<double> sharpness(const float* images, int n, int64_t size);

// Speckle: dark pixels (x < 0) with at most one dark pixel among their 8 neighbours, and all
// dark pixels, summed over n images of h x w (one channel). Clean strokes have almost no
// isolated dark pixels (0.09% in the bridge drawings); dithered hatching has many.
struct DarkPixels {
  int64_t isolated = 0, dark = 0;
  double isolated_share() const { return dark > 0 ? double(isolated) / double(dark) : 0.0; }
};
DarkPixels isolated_dark_pixels(const float* images, int n, int h, int w);

// For each of the nq query images, the distance to its nearest reference image: root mean square
// pixel difference (0 = identical, 2 = opposite). If `skip_self` is set, queries and references
// are the same set and an image is not its own neighbour.
std::vector<double> nearest_neighbour_distances(const float* queries, int nq, const float* refs,
                                                int nr, int64_t size, bool skip_self = false);

// The q-quantile (0..1) of values, linear between order statistics.
double quantile(std::vector<double> values, double q);

// A classifier's answer for one image, grouped by family. Labels name subtypes as
// "<family>_<subtype>" (e.g. "arch_through"); the family is the part before the first '_'.
struct FamilyMix {
  std::vector<double> subtype_probs;  // softmax of the logits, per label
  std::vector<std::string> families;  // distinct families, in label order
  std::vector<double> family_probs;   // per family: the sum of its subtypes' probabilities
  int top_subtype = 0;
  int first = 0, second = -1;  // the two most probable families
  // Two different families each with at least `threshold` probability.
  bool mixes(double threshold = 0.25) const;
  std::string describe() const;  // "arch 55% / cable 40%"
};
std::string family_of(const std::string& label);
FamilyMix family_mix(const float* logits, const std::vector<std::string>& labels);

}  // namespace ebm
