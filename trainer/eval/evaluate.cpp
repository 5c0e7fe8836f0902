#include "evaluate.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <numeric>
#include <sstream>

#include "data_source.h"
#include "ebm/error.h"
#include "ebm/fileio.h"
#include "ebm/metrics.h"
#include "ebm/model.h"
#include "ebm/network.h"
#include "ebm/rng.h"
#include "ebm/sampler.h"
#include "sample_pngs.h"

namespace ebm::eval {

using nlohmann::json;

namespace {

bool is_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// Where the chains start, in words.
std::string start_description(const SamplerParams& p) {
  if (walks_noise_levels(p.form))
    return "the mean image plus N(0, " + std::to_string(p.sigma_max) + "^2) noise";
  return p.start_cell > 1 ? "uniform noise smoothed over " + std::to_string(p.start_cell) + "x" +
                                std::to_string(p.start_cell) + "-pixel cells"
                          : "uniform noise";
}

constexpr int kChunk = 64;  // chains per sampler batch (chain i's path does not depend on it)

double mean_of(const std::vector<double>& v) {
  return v.empty() ? 0.0 : std::accumulate(v.begin(), v.end(), 0.0) / double(v.size());
}

double sd_of(const std::vector<double>& v) {
  if (v.size() < 2) return 0.0;
  const double m = mean_of(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / double(v.size() - 1));
}

json stats(const std::vector<double>& v) {
  return {{"mean", mean_of(v)},
          {"sd", sd_of(v)},
          {"min", v.empty() ? 0.0 : *std::min_element(v.begin(), v.end())},
          {"max", v.empty() ? 0.0 : *std::max_element(v.begin(), v.end())}};
}

// Calls fn(first image, count) over n images in batches of 256.
template <class Fn>
void in_batches(int n, Fn fn) {
  for (int i = 0; i < n; i += 256) fn(i, std::min(256, n - i));
}

struct Classified {
  std::vector<FamilyMix> mix;
  std::vector<float> features;  // [n, feature_size]
};

Classified classify(const Network& net, const float* images, int n) {
  Classified c;
  const size_t d = size_t(net.input_size());
  const int k = net.outputs(), f = net.feature_size();
  std::vector<float> logits(size_t(n) * size_t(k));
  c.features.resize(size_t(n) * size_t(f));
  Network::Workspace ws;
  in_batches(n, [&](int i, int m) {
    net.logits(ws, images + size_t(i) * d, m, logits.data() + size_t(i) * k);
    net.features(ws, images + size_t(i) * d, m, c.features.data() + size_t(i) * f);
  });
  for (int i = 0; i < n; ++i)
    c.mix.push_back(family_mix(logits.data() + size_t(i) * k, net.labels()));
  return c;
}

// Energies at the sampler's smallest noise level where the model is noise-conditional.
std::vector<double> energies_of(const Network& net, const float* images, int n, float sigma) {
  std::vector<float> e(static_cast<size_t>(n));
  Network::Workspace ws;
  const size_t d = size_t(net.input_size());
  in_batches(n, [&](int i, int m) { net.energy(ws, images + size_t(i) * d, m, e.data() + i, sigma); });
  return std::vector<double>(e.begin(), e.end());
}

std::string percent(double x) {
  std::ostringstream s;
  s.precision(3);
  s << 100 * x << "%";
  return s.str();
}

std::string fixed(double x, int digits = 3) {
  std::ostringstream s;
  s.setf(std::ios::fixed);
  s.precision(digits);
  s << x;
  return s.str();
}

// The models and the dataset split an evaluation reads, checked against each other.
struct Inputs {
  Model energy_model, classifier_model;
  DatasetSplit split;
  std::string data;       // the dataset folder
  double val_fraction;    // its split
  uint64_t split_seed;
};

Inputs load_inputs(const EvalOptions& opt) {
  Inputs in;
  in.energy_model = load_model(opt.model);
  const Model& energy_model = in.energy_model;
  if (energy_model.kind != ModelKind::kEnergy)
    throw Error("'" + opt.model + "' is a classifier; --model needs an energy model");
  in.classifier_model = load_model(opt.classifier);
  const Model& classifier_model = in.classifier_model;
  if (classifier_model.kind != ModelKind::kClassifier)
    throw Error("'" + opt.classifier + "' is an energy model; --classifier needs a classifier");
  if (classifier_model.image_shape() != energy_model.image_shape())
    throw Error("the classifier takes " + classifier_model.image_shape().str() +
                " images but the energy model makes " + energy_model.image_shape().str());
  if (opt.count < 2)
    throw Error("--count must be at least 2 (the Frechet distance needs a spread)");

  // The dataset and its split, as the energy model was trained (from its card unless given).
  const json& card = energy_model.card;
  const json dataset = card.value("dataset", json::object());
  train::TrainConfig cfg;
  cfg.data = !opt.data.empty() ? opt.data : dataset.value("path", std::string());
  if (cfg.data.empty()) throw Error("the energy model's card names no dataset; give --data DIR");
  if (opt.val_fraction >= 0)
    cfg.val_fraction = opt.val_fraction;
  else if (dataset.contains("held_out") && dataset.value("images", 0) > 0)
    cfg.val_fraction = dataset["held_out"].get<double>() / dataset["images"].get<double>();
  cfg.seed = opt.split_seed >= 0
                 ? uint64_t(opt.split_seed)
                 : card.value("training", json::object()).value("seed", uint64_t(1));
  in.split = train::split_training_data(
      train::load_training_data(cfg, energy_model.image_shape()), cfg);
  const int n_train = int(in.split.train.size()), n_real = int(in.split.val.size());
  if (n_real < 2 || n_train < 2)
    throw Error("the split of '" + cfg.data + "' leaves " + std::to_string(n_train) +
                " training and " + std::to_string(n_real) +
                " held-out images; need at least 2 of each");
  in.data = cfg.data;
  in.val_fraction = cfg.val_fraction;
  in.split_seed = cfg.seed;
  return in;
}

// A clean hybrid of families fa and fb, as the guide's pair target counts one: they are the
// drawing's two most probable families, each with at least opt.mix_threshold, and the drawing is
// at least opt.sharp_fraction as sharp as the real ones.
bool is_clean_pair_hybrid(const FamilyMix& m, int fa, int fb, double sharp, double sharp_real,
                          const EvalOptions& opt) {
  const bool pair = (m.first == fa && m.second == fb) || (m.first == fb && m.second == fa);
  return pair && m.mixes(opt.mix_threshold) && sharp >= opt.sharp_fraction * sharp_real;
}

// The held-out drawings by family, in the order of the classifier's families (from its labels).
// A drawing of a family the classifier does not know is an error when `strict`, else left out.
struct HeldOutFamilies {
  std::vector<std::string> families;
  std::vector<std::vector<int>> by_family;  // held-out indices per family
  HeldOutFamilies(const DatasetSplit& split, const std::vector<std::string>& labels, bool strict) {
    std::vector<float> zero(labels.size(), 0.0f);
    families = family_mix(zero.data(), labels).families;
    by_family.resize(families.size());
    const int n = int(split.val.size());
    for (int i = 0; i < n; ++i) {
      const std::string f = family_of(split.val.label_names[size_t(split.val.labels[size_t(i)])]);
      const auto it = std::find(families.begin(), families.end(), f);
      if (it == families.end() && !strict) continue;
      if (it == families.end()) {
        std::string known;
        for (const std::string& g : families) known += (known.empty() ? "" : ", ") + g;
        throw Error("the dataset's family '" + f + "' is not one of the classifier's families (" +
                    known + "); give the classifier trained on this dataset");
      }
      by_family[size_t(it - families.begin())].push_back(i);
    }
  }
};

// The ways of building a two-family hybrid from two held-out drawings.
constexpr const char* kBuiltKinds[] = {"overlay", "sides", "blend"};
const char* built_kind_what(const std::string& kind) {
  return kind == "overlay" ? "both drawn in full (the darker pixel of the two)"
         : kind == "sides"
             ? "the left half of one beside the right half of the other (each way for half)"
             : "the 50/50 pixel blend";
}

// opt.count hybrids of each kind for families fa and fb, judged as a guided pair's samples are
// (sharp_real: the held-out drawings' mean sharpness).
struct BuiltHybrids {
  json report;               // per kind: count, clean_hybrids, share, mixed, top_family, examples
  std::vector<float> shown;  // two whole and two side by side
  std::vector<std::string> shown_tags;
  std::vector<float> hits;  // clean hybrids among the first 8 of each kind
  std::vector<std::string> hit_tags;
};

BuiltHybrids build_pair_hybrids(const Network& classifier, const DatasetSplit& split,
                                const HeldOutFamilies& held, int fa, int fb, double sharp_real,
                                const EvalOptions& opt) {
  const Shape shape = split.val.shape;
  const size_t d = size_t(shape.size());
  const std::vector<int>&va = held.by_family[size_t(fa)], &vb = held.by_family[size_t(fb)];
  // Drawing k of each kind: held-out drawings ia[k] (family a) and ib[k] (family b), drawn by a
  // stream of its own per pair, so a pair gets the same drawings whichever mode asks.
  Pcg32 rng(opt.seed, 77 + uint64_t(fa) * 64 + uint64_t(fb));
  std::vector<int> ia(size_t(opt.count)), ib(size_t(opt.count));
  for (int k = 0; k < opt.count; ++k) {
    ia[size_t(k)] = va[rng.below(uint32_t(va.size()))];
    ib[size_t(k)] = vb[rng.below(uint32_t(vb.size()))];
  }
  BuiltHybrids out;
  for (const char* key : kBuiltKinds) {
    const std::string kind = key;
    std::vector<float> built(size_t(opt.count) * d);
    for (int k = 0; k < opt.count; ++k) {
      const float* a = split.val.image(ia[size_t(k)]);
      const float* b = split.val.image(ib[size_t(k)]);
      float* o = built.data() + size_t(k) * d;
      if (kind == "overlay") {
        for (size_t p = 0; p < d; ++p) o[p] = std::min(a[p], b[p]);
      } else if (kind == "sides") {  // drawing k: the left half from a when k is even, b when odd
        for (size_t p = 0; p < d; ++p)
          o[p] = (int(p % size_t(shape.w)) < shape.w / 2) == (k % 2 == 0) ? a[p] : b[p];
      } else {
        for (size_t p = 0; p < d; ++p) o[p] = 0.5f * (a[p] + b[p]);
      }
    }
    const Classified cb = classify(classifier, built.data(), opt.count);
    const std::vector<double> sharp_b = sharpness(built.data(), opt.count, int64_t(d));
    int clean = 0, mixed = 0;
    json top = json::object(), examples = json::array();
    for (int k = 0; k < opt.count; ++k) {
      const FamilyMix& m = cb.mix[size_t(k)];
      const bool hybrid = is_clean_pair_hybrid(m, fa, fb, sharp_b[size_t(k)], sharp_real, opt);
      clean += hybrid;
      mixed += m.mixes(opt.mix_threshold);
      const std::string t = held.families[size_t(m.first)];
      top[t] = top.value(t, 0) + 1;
      if (k < 4)
        examples.push_back({{"held_out", {ia[size_t(k)], ib[size_t(k)]}},
                            {"read_as", m.describe()},
                            {"clean_hybrid", hybrid}});
      const float* img = built.data() + size_t(k) * d;
      if (kind != "blend" && k < 2) {
        out.shown.insert(out.shown.end(), img, img + d);
        out.shown_tags.push_back((kind == "overlay" ? "whole: " : "sides: ") + m.describe());
      }
      if (hybrid && k < 8) {
        out.hits.insert(out.hits.end(), img, img + d);
        out.hit_tags.push_back(kind + ": " + m.describe());
      }
    }
    out.report[kind] = {{"count", opt.count},
                        {"clean_hybrids", clean},
                        {"share", double(clean) / opt.count},
                        {"mixed", mixed},
                        {"top_family", top},
                        {"examples", examples}};
  }
  return out;
}

}  // namespace

std::string guide_classifier_path(const EvalOptions& opt) {
  if (!opt.guide_classifier.empty()) return opt.guide_classifier;
  const size_t slash = opt.classifier.find_last_of('/');
  const std::string beside =
      (slash == std::string::npos ? std::string() : opt.classifier.substr(0, slash + 1)) +
      kDefaultGuideFile;
  return is_file(beside) ? beside : opt.classifier;
}

EvalResult evaluate(const EvalOptions& opt, const Progress& progress) {
  const auto start = std::chrono::steady_clock::now();
  const Inputs inputs = load_inputs(opt);
  const Model& energy_model = inputs.energy_model;
  const Model& classifier_model = inputs.classifier_model;
  const DatasetSplit& split = inputs.split;
  const json& card = energy_model.card;
  const Shape shape = energy_model.image_shape();
  const int n_train = int(split.train.size()), n_real = int(split.val.size());
  const size_t d = size_t(shape.size());

  // Samples from fresh uniform noise (smoothed if the sampler's start_cell says so) with the
  // model's own sampler settings (overridden if asked).
  const Network energy(energy_model);
  const SamplerParams params = parse_sampler_params(opt.sampler, energy.sampler());
  const bool guided = !opt.guide.empty();
  const std::string guide_path = guide_classifier_path(opt);
  std::unique_ptr<Network> guide;
  std::vector<float> guide_target;
  if (guided) {
    guide = std::make_unique<Network>(guide_path == opt.classifier ? classifier_model
                                                                   : load_model(guide_path));
    if (guide->kind() != ModelKind::kClassifier)
      throw Error("'" + guide_path + "' is an energy model; the guide must be a classifier");
    guide_target = parse_guide_target(opt.guide, guide->labels());
  }
  // A negative scale: the default for the guide's kind.
  const double guide_scale = opt.guide_scale >= 0 ? opt.guide_scale
                             : guide && guide->noise_conditional() ? kDefaultNoiseGuideScale
                                                                   : kDefaultGuideScale;
  std::vector<float> samples(size_t(opt.count) * d);
  // Multi-grid: the coarser grids' networks before the model's, each with its own sampler.
  std::vector<Network> grid_nets;
  std::vector<SamplerParams> grid_params;
  if (!opt.grids.empty()) {
    if (guided)
      throw Error("--grids samples coarse to fine without a guide; drop --guide or --grids");
    for (const std::string& path : opt.grids) {
      grid_nets.emplace_back(load_model(path));
      if (grid_nets.back().kind() != ModelKind::kEnergy)
        throw Error("--grids: '" + path + "' is a classifier, not a coarser grid's energy model");
      grid_params.push_back(parse_sampler_params(opt.sampler, grid_nets.back().sampler()));
    }
    grid_params.push_back(params);
  }
  if (!grid_nets.empty()) {
    std::vector<const Network*> nets;
    for (const Network& n : grid_nets) nets.push_back(&n);
    nets.push_back(&energy);
    int64_t grid_steps = 0;
    for (const SamplerParams& p : grid_params) grid_steps += p.steps;
    for (int c0 = 0; c0 < opt.count; c0 += kChunk) {
      const int m = std::min(kChunk, opt.count - c0);
      const train::NoiseSamples ns = train::sample_multigrid(
          nets, grid_params, m, opt.seed, opt.threads, 1, nullptr, uint64_t(c0),
          [&](int64_t done, int64_t) {
            if (progress)
              progress("sampling", int64_t(c0) * grid_steps + done, opt.count * grid_steps);
            return true;
          });
      std::copy(ns.images.begin(), ns.images.end(), samples.begin() + long(c0 * d));
    }
  } else {
    for (int c0 = 0; c0 < opt.count; c0 += kChunk) {
      const int m = std::min(kChunk, opt.count - c0);
      LangevinSampler sampler(energy, params, opt.seed, opt.threads);
      if (guided)
        sampler.set_guide(*guide, guide_target, float(guide_scale), float(opt.guide_sigma),
                          opt.guide_denoised);
      sampler.start_uniform(m, uint64_t(c0));
      sampler.run(10, [&](const SamplerProgress& p) {
        if (progress)
          progress("sampling", int64_t(c0) * params.steps + int64_t(p.step) * m,
                   int64_t(opt.count) * params.steps);
        return true;
      });
      std::copy(sampler.images().begin(), sampler.images().end(), samples.begin() + long(c0 * d));
    }
  }
  const double sample_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  // A random subset of the training images as large as the sample set: the real-vs-real floor.
  std::vector<int64_t> order(static_cast<size_t>(n_train));
  std::iota(order.begin(), order.end(), 0);
  Pcg32 rng(opt.seed, 4242);
  for (size_t i = order.size() - 1; i > 0; --i)
    std::swap(order[i], order[rng.below(uint32_t(i + 1))]);
  const int n_floor = std::min(opt.count, n_train);
  std::vector<float> floor_images(size_t(n_floor) * d);
  for (int i = 0; i < n_floor; ++i)
    std::copy_n(split.train.image(order[size_t(i)]), d, floor_images.begin() + long(size_t(i) * d));

  if (progress) progress("features", 0, 3);
  const Network classifier(classifier_model);
  const Classified cs = classify(classifier, samples.data(), opt.count);
  const Classified cr = classify(classifier, split.val.images.data(), n_real);
  const Classified cf = classify(classifier, floor_images.data(), n_floor);
  if (progress) progress("features", 3, 3);
  const int f = classifier.feature_size();
  const Gaussian g_samples = fit_gaussian(cs.features.data(), opt.count, f);
  const Gaussian g_real = fit_gaussian(cr.features.data(), n_real, f);
  const Gaussian g_floor = fit_gaussian(cf.features.data(), n_floor, f);
  const double fd = frechet_distance(g_samples, g_real);
  const double fd_floor = frechet_distance(g_floor, g_real);

  // Coverage and confidence.
  const std::vector<std::string>& labels = classifier.labels();
  std::vector<int> histogram(labels.size(), 0);
  double confidence = 0;
  for (const FamilyMix& m : cs.mix) {
    ++histogram[size_t(m.top_subtype)];
    confidence += m.subtype_probs[size_t(m.top_subtype)];
  }
  confidence /= opt.count;
  int present = 0;
  json hist = json::object();
  for (size_t i = 0; i < labels.size(); ++i) {
    hist[labels[i]] = histogram[i];
    present += histogram[i] > 0;
  }
  double real_confidence = 0;
  for (const FamilyMix& m : cr.mix) real_confidence += m.subtype_probs[size_t(m.top_subtype)];
  real_confidence /= n_real;

  // Sharpness.
  const std::vector<double> sharp_s = sharpness(samples.data(), opt.count, int64_t(d));
  const std::vector<double> sharp_r = sharpness(split.val.images.data(), n_real, int64_t(d));
  const double sharp_real = mean_of(sharp_r);

  // Novelty: distance to the nearest training image, against the held-out images' distances.
  if (progress) progress("novelty", 0, 2);
  const std::vector<double> nn_s = nearest_neighbour_distances(
      samples.data(), opt.count, split.train.images.data(), n_train, int64_t(d));
  if (progress) progress("novelty", 1, 2);
  const std::vector<double> nn_r = nearest_neighbour_distances(
      split.val.images.data(), n_real, split.train.images.data(), n_train, int64_t(d));
  if (progress) progress("novelty", 2, 2);
  const double novel_threshold = quantile(nn_r, opt.novel_quantile);
  int novel = 0;
  for (double v : nn_s) novel += v > novel_threshold;

  // New bridge types: hybrid (two families), sharp and novel.
  struct Candidate {
    int index;
    double balance;  // the smaller of the two family probabilities
  };
  std::vector<Candidate> candidates;
  int hybrids = 0, sharp_count = 0;
  for (int i = 0; i < opt.count; ++i) {
    const FamilyMix& m = cs.mix[size_t(i)];
    const bool hybrid = m.mixes(opt.mix_threshold);
    const bool sharp = sharp_s[size_t(i)] >= opt.sharp_fraction * sharp_real;
    const bool is_novel = nn_s[size_t(i)] > novel_threshold;
    hybrids += hybrid;
    sharp_count += sharp;
    if (hybrid && sharp && is_novel)
      candidates.push_back(
          {i, std::min(m.family_probs[size_t(m.first)], m.family_probs[size_t(m.second)])});
  }
  std::stable_sort(candidates.begin(), candidates.end(),
                   [](const Candidate& a, const Candidate& b) { return a.balance > b.balance; });

  const std::vector<double> e_s = energies_of(energy, samples.data(), opt.count, params.sigma_min);
  const std::vector<double> e_r = energies_of(energy, split.val.images.data(), n_real, params.sigma_min);

  // Clean strokes: isolated dark pixels per dark pixel, against the held-out drawings'.
  const DarkPixels dark_s = isolated_dark_pixels(samples.data(), opt.count * shape.c, shape.h, shape.w);
  const DarkPixels dark_r = isolated_dark_pixels(split.val.images.data(), n_real * shape.c, shape.h, shape.w);
  const double speckle_ratio =
      dark_r.isolated_share() > 0 ? dark_s.isolated_share() / dark_r.isolated_share() : INFINITY;
  // Copies: samples nearer a training drawing than the nearest 1% of held-out drawings are.
  const double copy_threshold = quantile(nn_r, 0.01);
  int copies = 0;
  for (double v : nn_s) copies += v < copy_threshold;
  const double copy_share = double(copies) / opt.count;
  const int rarest = *std::min_element(histogram.begin(), histogram.end());
  const double rarest_share = double(rarest) / opt.count;
  const double total_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  const double new_share = double(candidates.size()) / opt.count;
  const double sharp_ratio = sharp_real > 0 ? mean_of(sharp_s) / sharp_real : 0.0;
  const double fd_ratio = fd_floor > 0 ? fd / fd_floor : INFINITY;
  json targets = json::array();
  auto target = [&](const std::string& what, const std::string& goal, const std::string& value,
                    bool met) {
    targets.push_back({{"target", what}, {"goal", goal}, {"measured", value}, {"met", met}});
  };
  // The guide's target, judged by `labels` (the judge's): the samples that meet it become the
  // candidates shown.
  json guide_report;
  std::vector<int> hits;
  bool hybrid_target = false;
  json reach = json::object();  // a pair target: the share of built hybrids that meet it
  if (guided) {
    const std::vector<float> judged = parse_guide_target(opt.guide, labels);
    std::vector<std::string> target_families;
    int only_subtype = -1, subtypes = 0;
    for (size_t i = 0; i < labels.size(); ++i) {
      if (judged[i] <= 0) continue;
      ++subtypes;
      only_subtype = int(i);
      const std::string family = family_of(labels[i]);
      if (std::find(target_families.begin(), target_families.end(), family) == target_families.end())
        target_families.push_back(family);
    }
    const FamilyMix& any = cs.mix.front();
    auto family_index = [&](const std::string& family) {
      return int(std::find(any.families.begin(), any.families.end(), family) - any.families.begin());
    };
    std::string what, goal;
    double want = 0;
    if (subtypes == 1) {
      what = "samples whose top-1 subtype is " + labels[size_t(only_subtype)];
      goal = ">= 90%";
      want = 0.9;
      for (int i = 0; i < opt.count; ++i)
        if (cs.mix[size_t(i)].top_subtype == only_subtype) hits.push_back(i);
    } else if (target_families.size() == 2) {
      hybrid_target = true;
      const int fa = family_index(target_families[0]), fb = family_index(target_families[1]);
      what = "clean " + target_families[0] + "+" + target_families[1] +
             " hybrids (the top two families, each >= " + percent(opt.mix_threshold) + ", sharpness >= " +
             fixed(opt.sharp_fraction, 2) + " of real)";
      goal = ">= 50%";
      want = 0.5;
      for (int i = 0; i < opt.count; ++i)
        if (is_clean_pair_hybrid(cs.mix[size_t(i)], fa, fb, sharp_s[size_t(i)], sharp_real, opt))
          hits.push_back(i);
      // How far the target goes on this judge: the pair's hybrids built from held-out drawings
      // (the same as --reference-hybrids with this --count and --seed).
      const HeldOutFamilies held(split, labels, false);
      if (!held.by_family[size_t(fa)].empty() && !held.by_family[size_t(fb)].empty()) {
        const json built = build_pair_hybrids(classifier, split, held, std::min(fa, fb),
                                              std::max(fa, fb), sharp_real, opt).report;
        for (const char* key : kBuiltKinds) reach[key] = built[key]["share"];
      }
    } else {
      what = "samples whose top family is one of the target's";
      for (int i = 0; i < opt.count; ++i)
        if (std::find(target_families.begin(), target_families.end(),
                      cs.mix[size_t(i)].families[size_t(cs.mix[size_t(i)].first)]) !=
            target_families.end())
          hits.push_back(i);
    }
    // Most balanced first for a hybrid target, most confident first otherwise.
    auto score = [&](int i) {
      const FamilyMix& m = cs.mix[size_t(i)];
      if (target_families.size() == 2 && subtypes > 1)
        return std::min(m.family_probs[size_t(family_index(target_families[0]))],
                        m.family_probs[size_t(family_index(target_families[1]))]);
      return m.subtype_probs[size_t(m.top_subtype)];
    };
    std::stable_sort(hits.begin(), hits.end(), [&](int a, int b) { return score(a) > score(b); });
    const double share = double(hits.size()) / opt.count;
    target(what, goal.empty() ? "(none)" : goal, percent(share), want > 0 ? share >= want : true);
    json dist = json::object();
    for (size_t i = 0; i < labels.size(); ++i)
      if (judged[i] > 0) dist[labels[i]] = judged[i];
    const bool same = guide_path == opt.classifier;
    guide_report = {{"mix", opt.guide},
                    {"target", dist},
                    {"scale", guide_scale},
                    {"sigma", opt.guide_sigma},
                    {"on", opt.guide_denoised ? "the denoised estimate" : "the noisy state"},
                    {"weight", guide->noise_conditional()
                                   ? "scale at every level (a noise-conditional guide reads the "
                                     "chains' states with their sigma)"
                                   : "scale * min(1, (sigma_guide / sigma)^2) under the noise-level forms"},
                    {"guide_noise_conditional", guide->noise_conditional()},
                    {"guide_classifier", guide_path},
                    {"judge_classifier", opt.classifier},
                    {"judged_by_the_guide", same},
                    {"hits", hits.size()},
                    {"share", share}};
    if (!reach.empty()) guide_report["reach_of_built_hybrids"] = reach;
  } else {
    target("every subtype is at least 4% of the samples", ">= 4% each",
           "rarest " + percent(rarest_share) + ", " + std::to_string(present) + " of " +
               std::to_string(labels.size()) + " present",
           rarest_share >= 0.04);
  }
  target("sample sharpness / real sharpness", ">= 0.9", fixed(sharp_ratio), sharp_ratio >= 0.9);
  target("Frechet distance / real-vs-real floor", "<= 3", fixed(fd_ratio, 2), fd_ratio <= 3.0);
  target("isolated dark pixels per dark pixel / real", "<= 2", fixed(speckle_ratio, 2),
         speckle_ratio <= 2.0);
  target("copies (nearer a training image than the nearest 1% of held-out ones)", "<= 1%",
         percent(copy_share), copy_share <= 0.01);
  if (!guided)
    target("new bridge types (hybrid, sharp, novel)", ">= 5%", percent(new_share), new_share >= 0.05);

  EvalResult r;
  r.report = {
      {"model", {{"path", opt.model}, {"card", card}}},
      {"classifier",
       {{"path", opt.classifier}, {"labels", labels}, {"held_out_confidence", real_confidence}}},
      {"dataset",
       {{"path", inputs.data},
        {"train", n_train},
        {"held_out", n_real},
        {"val_fraction", inputs.val_fraction},
        {"split_seed", inputs.split_seed}}},
      {"sampling",
       {{"count", opt.count},
        {"seed", opt.seed},
        {"from", grid_nets.empty() ? start_description(params)
                                   : start_description(grid_params[0]) + " on the coarsest grid (" +
                                         grid_nets[0].input_shape().str() + "), grid by grid to " +
                                         shape.str()},
        {"sampler", sampler_params_json(params)},
        {"grids", opt.grids},
        {"seconds", sample_seconds}}},
      {"coverage",
       {{"histogram", hist},
        {"subtypes_present", present},
        {"rarest_share", rarest_share},
        {"all_present", present == int(labels.size())}}},
      {"confidence", {{"samples", confidence}, {"held_out", real_confidence}}},
      {"sharpness",
       {{"samples", mean_of(sharp_s)},
        {"real", sharp_real},
        {"ratio", sharp_ratio},
        {"sharp_samples", sharp_count}}},
      {"frechet",
       {{"samples_vs_real", fd},
        {"real_vs_real", fd_floor},
        {"ratio", fd_ratio},
        {"features", "classifier penultimate layer (" + std::to_string(f) + ")"},
        {"sizes",
         {{"samples", opt.count}, {"floor_train_subset", n_floor}, {"held_out", n_real}}}}},
      {"novelty",
       {{"metric", "RMS pixel distance to the nearest training image"},
        {"held_out_quantile", opt.novel_quantile},
        {"threshold", novel_threshold},
        {"samples", stats(nn_s)},
        {"held_out", stats(nn_r)},
        {"novel_samples", novel},
        {"novel_share", double(novel) / opt.count}}},
      {"new_types",
       {{"count", candidates.size()},
        {"share", new_share},
        {"hybrids", hybrids},
        {"criteria",
         {{"mix_threshold", opt.mix_threshold},
          {"sharp_fraction_of_real", opt.sharp_fraction},
          {"novel_above_held_out_quantile", opt.novel_quantile}}}}},
      {"energies", {{"samples", stats(e_s)}, {"held_out", stats(e_r)}, {"sigma", params.sigma_min}}},
      {"speckle",
       {{"metric", "dark pixels (x < 0) with at most one dark 8-neighbour, per dark pixel"},
        {"samples", dark_s.isolated_share()},
        {"held_out", dark_r.isolated_share()},
        {"ratio", speckle_ratio}}},
      {"copies",
       {{"threshold", copy_threshold},
        {"held_out_quantile", 0.01},
        {"count", copies},
        {"share", copy_share}}},
      {"targets", targets},
      {"seconds", total_seconds}};
  if (guided) r.report["guide"] = guide_report;

  // Summary.
  std::ostringstream md;
  md << "# Evaluation of " << card.value("name", opt.model) << "\n\n";
  if (guided)
    md << "Guided toward " << opt.guide << " by " << guide_path << " (scale " << guide_scale
       << (guide->noise_conditional() ? ", noise-conditional: full strength at every level"
                                      : ", full strength below sigma " + std::to_string(opt.guide_sigma))
       << (opt.guide_denoised ? ", on the denoised estimate" : "") << "), judged by " << opt.classifier
       << (guide_path == opt.classifier
               ? ": the SAME classifier as the guide (a guide can fool its own judge)"
               : " (another classifier than the guide)")
       << ".\n\n";
  md << opt.count << " samples from " << start_description(params) << " (seed " << opt.seed << ", "
     << sampler_params_json(params).dump() << "), labelled by " << opt.classifier << "; dataset "
     << inputs.data << " (" << n_train << " training, " << n_real << " held-out images).\n\n"
     << "| target | goal | measured | met |\n| --- | --- | --- | --- |\n";
  for (const json& t : targets)
    md << "| " << t["target"].get<std::string>() << " | " << t["goal"].get<std::string>() << " | "
       << t["measured"].get<std::string>() << " | " << (t["met"].get<bool>() ? "yes" : "no")
       << " |\n";
  if (!reach.empty())
    md << "\nThe pair target on this judge, for hybrids built from held-out drawings "
       << "(`--reference-hybrids`): both bridges drawn whole "
       << percent(reach["overlay"].get<double>()) << ", a half of each side by side "
       << percent(reach["sides"].get<double>())
       << ", their 50/50 pixel blend " << percent(reach["blend"].get<double>())
       << " are clean hybrids of the pair.\n";
  md << "\n- subtypes (top-1): ";
  for (size_t i = 0; i < labels.size(); ++i)
    md << (i ? ", " : "") << labels[i] << " " << histogram[i];
  md << "\n- mean top-1 probability: samples " << fixed(confidence) << ", held-out real "
     << fixed(real_confidence) << "\n- sharpness (mean |x|): samples " << fixed(mean_of(sharp_s))
     << ", real " << fixed(sharp_real) << "\n- Frechet distance (classifier features): samples "
     << fixed(fd) << ", real-vs-real floor " << fixed(fd_floor)
     << "\n- novelty: " << percent(double(novel) / opt.count)
     << " of samples farther from the training set than " << int(opt.novel_quantile * 100)
     << "% of held-out images (threshold " << fixed(novel_threshold, 4)
     << " RMS); copies " << copies << " (" << percent(copy_share) << ", nearer than "
     << fixed(copy_threshold, 4) << ")\n- speckle (isolated dark pixels per dark pixel): samples "
     << percent(dark_s.isolated_share()) << ", real " << percent(dark_r.isolated_share())
     << "\n- rarest subtype " << percent(rarest_share) << "\n- new bridge types: " << candidates.size() << " (" << percent(new_share) << "); "
     << hybrids << " samples mix two families, " << sharp_count
     << " are sharp\n- energies: samples " << fixed(mean_of(e_s)) << " +- " << fixed(sd_of(e_s))
     << ", held-out real " << fixed(mean_of(e_r)) << " +- " << fixed(sd_of(e_r))
     << "\n- time: sampling " << fixed(sample_seconds, 1) << " s, total " << fixed(total_seconds, 1)
     << " s\n";
  r.markdown = md.str();

  // Pictures.
  const int shown = std::min(opt.count, 48);
  std::vector<std::string> tags;
  for (int i = 0; i < shown; ++i) tags.push_back(cs.mix[size_t(i)].describe());
  r.samples_png =
      train::captioned_grid(samples.data(), shown, shape, train::grid_columns(shown, shape),
                            (guided ? "guided toward " + opt.guide + ": samples (first "
                                    : std::string("samples from noise (first ")) +
                                std::to_string(shown) + " of " + std::to_string(opt.count) +
                                ") and their family mix",
                            tags);
  const int n_cand = std::min<int>(int(candidates.size()), 24);
  if (guided) {
    const int n_hits = std::min<int>(int(hits.size()), 24);
    std::vector<float> tiles(size_t(std::max(n_hits, 1)) * d, 1.0f);
    std::vector<std::string> htags;
    for (int j = 0; j < n_hits; ++j) {
      const int k = hits[size_t(j)];
      std::copy_n(samples.begin() + long(size_t(k) * d), d, tiles.begin() + long(size_t(j) * d));
      const FamilyMix& m = cs.mix[size_t(k)];  // a subtype target names the subtype (short tags)
      htags.push_back("#" + std::to_string(k) + " " +
                      (hybrid_target ? m.describe()
                                     : labels[size_t(m.top_subtype)] + " " +
                                           std::to_string(int(std::lround(
                                               100 * m.subtype_probs[size_t(m.top_subtype)]))) +
                                           "%"));
    }
    r.candidates_png = train::captioned_grid(
        tiles.data(), std::max(n_hits, 1), shape, train::grid_columns(std::max(n_hits, 1), shape),
        n_hits > 0 ? "samples meeting the guide's target, best first (" +
                         std::to_string(hits.size()) + ")"
                   : "no sample meets the guide's target",
        htags);
  } else if (n_cand > 0) {
    std::vector<float> tiles(size_t(n_cand) * d);
    std::vector<std::string> ctags;
    for (int i = 0; i < n_cand; ++i) {
      const int k = candidates[size_t(i)].index;
      std::copy_n(samples.begin() + long(size_t(k) * d), d, tiles.begin() + long(size_t(i) * d));
      ctags.push_back("#" + std::to_string(k) + " " + cs.mix[size_t(k)].describe());
    }
    r.candidates_png =
        train::captioned_grid(tiles.data(), n_cand, shape, train::grid_columns(n_cand, shape),
                              "new bridge type candidates: hybrid, sharp, novel (" +
                                  std::to_string(candidates.size()) + ")",
                              ctags);
  } else {
    std::vector<float> blank(d, 1.0f);
    r.candidates_png =
        train::captioned_grid(blank.data(), 1, shape, 1, "no new bridge type candidates");
  }
  const int n_show_real = std::min(n_real, 24);
  std::vector<std::string> rtags;
  for (int i = 0; i < n_show_real; ++i) rtags.push_back(cr.mix[size_t(i)].describe());
  r.real_png =
      train::captioned_grid(split.val.images.data(), n_show_real, shape,
                            train::grid_columns(n_show_real, shape), "held-out real images", rtags);
  return r;
}

EvalResult evaluate_inpainting(const EvalOptions& opt, const std::string& region,
                               const Progress& progress) {
  const auto start = std::chrono::steady_clock::now();
  const Inputs inputs = load_inputs(opt);
  const DatasetSplit& split = inputs.split;
  const Shape shape = inputs.energy_model.image_shape();
  const size_t d = size_t(shape.size());
  const int n = std::min(opt.count, int(split.val.size()));
  const std::vector<float> keep = region_keep_mask(region, shape);

  // Held-out drawing i, its `region` regenerated by chain i (one kept image per chain).
  const Network energy(inputs.energy_model);
  const SamplerParams params = parse_sampler_params(opt.sampler, energy.sampler());
  std::vector<float> done(size_t(n) * d);
  for (int c0 = 0; c0 < n; c0 += kChunk) {
    const int m = std::min(kChunk, n - c0);
    LangevinSampler sampler(energy, params, opt.seed, opt.threads);
    sampler.set_keep(std::vector<float>(split.val.image(c0), split.val.image(c0 + m)), keep);
    sampler.start_uniform(m, uint64_t(c0));
    sampler.run(10, [&](const SamplerProgress& p) {
      if (progress)
        progress("sampling", int64_t(c0) * params.steps + int64_t(p.step) * m,
                 int64_t(n) * params.steps);
      return true;
    });
    std::copy(sampler.images().begin(), sampler.images().end(), done.begin() + long(c0 * d));
  }
  const double sample_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  // The kept part unchanged, bit for bit; the completion of the original's subtype.
  int unchanged = 0;
  for (int i = 0; i < n; ++i) {
    bool same = true;
    for (size_t k = 0; k < d; ++k)
      if (keep[k] > 0.5f)
        same = same && done[size_t(i) * d + k] == std::clamp(split.val.image(i)[k], -1.0f, 1.0f);
    unchanged += same;
  }
  const Network classifier(inputs.classifier_model);
  const std::vector<std::string>& labels = classifier.labels();
  const Classified cd = classify(classifier, done.data(), n);
  int same_subtype = 0;
  std::vector<std::string> tags;
  std::vector<int> wrong;
  for (int i = 0; i < n; ++i) {
    const std::string& original = split.val.label_names[size_t(split.val.labels[size_t(i)])];
    const std::string& got = labels[size_t(cd.mix[size_t(i)].top_subtype)];
    same_subtype += got == original;
    if (got != original) wrong.push_back(i);
    tags.push_back(original + " -> " + got);
  }
  const double share = double(same_subtype) / n;
  const DarkPixels dp = isolated_dark_pixels(done.data(), n, shape.h, shape.w);
  const DarkPixels dr = isolated_dark_pixels(split.val.images.data(), int(split.val.size()),
                                             shape.h, shape.w);
  const double speckle_ratio =
      dr.isolated_share() > 0 ? dp.isolated_share() / dr.isolated_share() : 0.0;

  EvalResult r;
  r.report = {{"mode", "inpaint"},
              {"region", region},
              {"model", {{"path", opt.model}, {"card", inputs.energy_model.card}}},
              {"classifier", {{"path", opt.classifier}, {"labels", labels}}},
              {"dataset", {{"path", inputs.data}, {"held_out", split.val.size()}}},
              {"sampling",
               {{"count", n},
                {"seed", opt.seed},
                {"sampler", sampler_params_json(params)},
                {"seconds", sample_seconds}}},
              {"kept_unchanged", unchanged},
              {"same_subtype", same_subtype},
              {"same_subtype_share", share},
              {"speckle", {{"completed", dp.isolated_share()},
                           {"real", dr.isolated_share()},
                           {"ratio", speckle_ratio}}}};
  std::ostringstream md;
  md << "# Inpainting: " << opt.model << "\n\n"
     << "The " << region << " half of " << n << " held-out drawings regenerated (the rest kept), "
     << "seed " << opt.seed << ", sampler " << sampler_params_json(params).dump() << ".\n\n"
     << "| target | goal | measured | met |\n| --- | --- | --- | --- |\n"
     << "| kept pixels unchanged, bit for bit | every drawing | " << unchanged << " of " << n
     << " | " << (unchanged == n ? "yes" : "no") << " |\n"
     << "| completed drawing classified as the original's subtype | >= 80% | " << percent(share)
     << " (" << same_subtype << " of " << n << ") | " << (share >= 0.8 ? "yes" : "no") << " |\n"
     << "| isolated dark pixels per dark pixel / real | | " << fixed(speckle_ratio, 2)
     << " | |\n\n- time: sampling " << fixed(sample_seconds, 1) << " s\n";
  r.markdown = md.str();

  // Pictures: each original above its completion; then the completions of another subtype.
  const int shown = std::min(n, 24);
  std::vector<float> pairs(size_t(2 * shown) * d);
  std::vector<std::string> pair_tags;
  for (int i = 0; i < shown; ++i) {
    std::copy_n(split.val.image(i), d, pairs.begin() + long(size_t(2 * i) * d));
    std::copy_n(done.begin() + long(size_t(i) * d), d, pairs.begin() + long(size_t(2 * i + 1) * d));
    pair_tags.push_back("original " + std::to_string(i));
    pair_tags.push_back(tags[size_t(i)]);
  }
  r.samples_png = train::captioned_grid(
      pairs.data(), 2 * shown, shape, 2,
      "held-out drawings (left) with their " + region + " half regenerated (right)", pair_tags);
  const int n_wrong = std::min<int>(int(wrong.size()), 24);
  if (n_wrong > 0) {
    std::vector<float> tiles(size_t(n_wrong) * d);
    std::vector<std::string> wtags;
    for (int j = 0; j < n_wrong; ++j) {
      const int i = wrong[size_t(j)];
      std::copy_n(done.begin() + long(size_t(i) * d), d, tiles.begin() + long(size_t(j) * d));
      wtags.push_back("#" + std::to_string(i) + " " + tags[size_t(i)]);
    }
    r.candidates_png = train::captioned_grid(tiles.data(), n_wrong, shape,
                                             train::grid_columns(n_wrong, shape),
                                             "completions of another subtype", wtags);
  } else {
    std::vector<float> blank(d, 1.0f);
    r.candidates_png = train::captioned_grid(blank.data(), 1, shape, 1,
                                             "every completion kept its subtype");
  }
  r.real_png = train::captioned_grid(split.val.images.data(), shown, shape,
                                     train::grid_columns(shown, shape), "held-out real images");
  return r;
}

EvalResult evaluate_reference_hybrids(const EvalOptions& opt, const Progress& progress) {
  const Inputs inputs = load_inputs(opt);
  const DatasetSplit& split = inputs.split;
  const Shape shape = inputs.energy_model.image_shape();
  const size_t d = size_t(shape.size());
  const int n_real = int(split.val.size());
  const Network classifier(inputs.classifier_model);
  const std::vector<std::string>& labels = classifier.labels();
  const HeldOutFamilies held(split, labels, true);
  const std::vector<std::string>& families = held.families;
  const double sharp_real = mean_of(sharpness(split.val.images.data(), n_real, int64_t(d)));

  const int n_pairs_max = int(families.size() * (families.size() - 1) / 2);
  int pair_index = 0;
  json pairs = json::array();
  std::vector<float> shown, hybrid_tiles;
  std::vector<std::string> shown_tags, hybrid_tags;
  std::ostringstream table;
  std::string pair_names;
  double lowest = 1, highest = 0;
  for (size_t fa = 0; fa < families.size(); ++fa)
    for (size_t fb = fa + 1; fb < families.size(); ++fb, ++pair_index) {
      if (progress) progress("judging", pair_index, n_pairs_max);
      if (held.by_family[fa].empty() || held.by_family[fb].empty()) continue;
      const std::string name = families[fa] + "+" + families[fb];
      pair_names += (pair_names.empty() ? "" : ", ") + name;  // samples.png's rows
      BuiltHybrids built =
          build_pair_hybrids(classifier, split, held, int(fa), int(fb), sharp_real, opt);
      table << "| " << name;
      for (const char* key : kBuiltKinds) {
        const json& c = built.report[key];
        table << " | " << percent(c["share"].get<double>()) << " ("
              << percent(c["mixed"].get<double>() / opt.count) << ")";
        if (std::string(key) != "blend") {
          lowest = std::min(lowest, c["share"].get<double>());
          highest = std::max(highest, c["share"].get<double>());
        }
      }
      table << " | ";
      bool first = true;
      for (const auto& [f, n] : built.report["overlay"]["top_family"].items()) {
        table << (first ? "" : ", ") << f << " " << n.get<int>();
        first = false;
      }
      table << " |\n";
      shown.insert(shown.end(), built.shown.begin(), built.shown.end());
      shown_tags.insert(shown_tags.end(), built.shown_tags.begin(), built.shown_tags.end());
      for (size_t j = 0; j < built.hit_tags.size() && hybrid_tags.size() < 24; ++j) {
        hybrid_tiles.insert(hybrid_tiles.end(), built.hits.begin() + long(j * d),
                            built.hits.begin() + long((j + 1) * d));
        hybrid_tags.push_back(built.hit_tags[j]);
      }
      json entry = built.report;
      entry["pair"] = name;
      pairs.push_back(entry);
    }
  if (progress) progress("judging", n_pairs_max, n_pairs_max);
  if (pairs.empty())
    throw Error("the held-out drawings of '" + inputs.data +
                "' hold fewer than two families; no pair to build hybrids from");
  EvalResult r;
  r.report = {{"mode", "reference_hybrids"},
              {"model", {{"path", opt.model}}},
              {"classifier", {{"path", opt.classifier}, {"labels", labels}}},
              {"dataset",
               {{"path", inputs.data},
                {"held_out", n_real},
                {"val_fraction", inputs.val_fraction},
                {"split_seed", inputs.split_seed}}},
              {"seed", opt.seed},
              {"criteria",
               {{"mix_threshold", opt.mix_threshold},
                {"sharp_fraction_of_real", opt.sharp_fraction},
                {"real_sharpness", sharp_real}}},
              {"constructions",
               {{"overlay", built_kind_what("overlay")},
                {"sides", built_kind_what("sides")},
                {"blend", built_kind_what("blend")}}},
              {"pairs", pairs},
              {"clean_hybrid_share_built",
               {{"lowest", lowest}, {"highest", highest}}}};
  std::ostringstream md;
  md << "# Hybrids built from held-out drawings, judged as `--guide A:0.5,B:0.5` judges samples\n\n"
     << "For each pair of families, " << opt.count << " hybrids of each kind from held-out "
     << "drawings of " << inputs.data << " (seed " << opt.seed << "), labelled by "
     << opt.classifier << ". A clean hybrid of the pair: its two most probable families, each at "
     << "least " << percent(opt.mix_threshold) << ", and at least " << fixed(opt.sharp_fraction, 2)
     << " of the real drawings' sharpness. Each cell: clean hybrids (read as mixing any two "
     << "families).\n\n"
     << "| pair | " << built_kind_what("overlay") << " | " << built_kind_what("sides") << " | "
     << built_kind_what("blend") << " | top family of the first kind |\n"
     << "| --- | ---: | ---: | ---: | --- |\n"
     << table.str() << "\nDrawings that hold both structures whole count as clean hybrids of "
     << "their pair in " << percent(lowest) << " to " << percent(highest)
     << " of cases: what the guide's 50% target can reach with this classifier when the samples "
     << "are exactly such drawings.\n\nsamples.png: a pair per row (" << pair_names
     << "), two whole and two side by side, each with the classifier's reading.\n";
  r.markdown = md.str();

  const int n_shown = int(shown_tags.size());
  r.samples_png = train::captioned_grid(
      shown.data(), n_shown, shape, 4,
      "built hybrids: a pair per row, two whole, two side by side",
      shown_tags);
  if (!hybrid_tags.empty()) {
    r.candidates_png = train::captioned_grid(
        hybrid_tiles.data(), int(hybrid_tags.size()), shape,
        train::grid_columns(int(hybrid_tags.size()), shape),
        "built hybrids the classifier counts as clean hybrids of their pair", hybrid_tags);
  } else {
    std::vector<float> blank(d, 1.0f);
    r.candidates_png = train::captioned_grid(blank.data(), 1, shape, 1,
                                             "no built hybrid counts as a clean hybrid");
  }
  const int n_show_real = std::min(n_real, 24);
  r.real_png = train::captioned_grid(split.val.images.data(), n_show_real, shape,
                                     train::grid_columns(n_show_real, shape),
                                     "held-out real images");
  return r;
}

void write_result(const std::string& dir, const EvalResult& r) {
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST)
    throw Error("cannot create folder '" + dir + "': " + std::strerror(errno));
  write_file_atomic(dir + "/report.json", r.report.dump(2) + "\n");
  write_file_atomic(dir + "/report.md", r.markdown);
  write_png(dir + "/samples.png", r.samples_png);
  write_png(dir + "/candidates.png", r.candidates_png);
  write_png(dir + "/real.png", r.real_png);
}

}  // namespace ebm::eval
