// ebm-sample: Langevin sampling from a model file to PNG, natively (the same runtime the page runs
// as WebAssembly).
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>

#include "ebm/cli.h"
#include "ebm/error.h"
#include "ebm/image_io.h"
#include "ebm/network.h"
#include "ebm/sampler.h"
#include "ebm/sampler_flags.h"

namespace {

// "0.5" -> every chain at 0.5; "0.2:0.8" -> evenly spread over the chains.
std::vector<float> blend_weights(const std::string& spec, int count, const ebm::ArgParser& args) {
  const std::vector<std::string> parts = ebm::split(spec, ':');
  auto number = [&](const std::string& s) {
    char* end = nullptr;
    const double v = std::strtod(s.c_str(), &end);
    if (s.empty() || *end != '\0' || !(v >= 0.0 && v <= 1.0))
      args.fail("--mix: expected a number in [0, 1] or a range A:B, got '" + spec + "'");
    return float(v);
  };
  if (parts.size() == 1) return std::vector<float>(size_t(count), number(parts[0]));
  if (parts.size() != 2) args.fail("--mix: expected T or A:B, got '" + spec + "'");
  const float a = number(parts[0]), b = number(parts[1]);
  std::vector<float> t(static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) t[size_t(i)] = count == 1 ? 0.5f * (a + b) : a + (b - a) * float(i) / float(count - 1);
  return t;
}

std::vector<float> read_image(const std::string& path, const ebm::Shape& in) {
  return ebm::image_to_unit(ebm::resize_gray(ebm::read_gray_image(path), in.w, in.h));
}

// --mask: a named half to regenerate, or a PNG whose light pixels (>= 50% gray) are regenerated
// and dark ones kept. Returns the sampler's form: 1 = keep.
std::vector<float> keep_mask(const std::string& spec, const ebm::Shape& in) {
  if (ebm::is_region_name(spec)) return ebm::region_keep_mask(spec, in);
  std::vector<float> keep = read_image(spec, in);
  for (float& k : keep) k = k >= 0.0f ? 0.0f : 1.0f;
  return keep;
}

ebm::Image upscale(const ebm::Image& img, int factor) {
  if (factor == 1) return img;
  ebm::Image out(img.width * factor, img.height * factor, img.channels);
  for (int y = 0; y < out.height; ++y)
    for (int x = 0; x < out.width; ++x)
      std::copy_n(img.at(x / factor, y / factor), img.channels, out.at(x, y));
  return out;
}

std::string short_number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

void ensure_dir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST)
    throw ebm::Error("cannot create folder '" + dir + "': " + std::strerror(errno));
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_path, out = "samples.png", frames, from, mix = "0.5", keep, mask, vary, guide;
  // The noise-conditional guide where it is shipped, else the clean classifier.
  std::string classifier_path = "models/bridge-guide.safetensors";
  struct stat guide_file {};
  if (::stat(classifier_path.c_str(), &guide_file) != 0) classifier_path = "models/bridge-classifier.safetensors";
  double strength = 0.5, guide_scale = ebm::kDefaultGuideScale, guide_sigma = ebm::kDefaultGuideSigma;
  int count = 16, cols = 0, scale = 1, frame_every = 0, threads = 0;
  uint64_t seed = 1;
  ebm::SamplerFlags flags;
  bool quiet = false, guide_denoised = false, noisy_frames = false;

  ebm::ArgParser args("ebm-sample",
                      "Draws images from an energy model by Langevin sampling (SPEC section 1) and "
                      "writes them as a PNG grid.\nSampler settings default to the model's "
                      "ebm.sampler; each flag below overrides one.");
  args.option("model", "FILE", "energy model (.safetensors)", &model_path, true);
  args.option("count", "N", "number of samples", &count, 1, 4096);
  args.option("seed", "S", "random seed; the same seed gives the same samples", &seed);
  args.option("out", "PNG", "grid of the final samples", &out);
  args.option("cols", "C", "grid columns (default: about square)", &cols, 0, 4096);
  args.option("scale", "F", "enlarge the written PNGs F times (nearest neighbour)", &scale, 1, 16);
  args.option("frames", "DIR", "also write snapshots, noise to bridge: DIR/frame_NNNNNN.png and "
              "DIR/strip.png (rows: samples, columns: time); under the noise-level forms each "
              "chain's denoised estimate at its level, as the page shows them", &frames);
  args.flag("noisy-frames", "--frames shows the chains' noisy states instead of their denoised "
            "estimates", &noisy_frames);
  args.option("frame-every", "K", "steps between snapshots (default: steps / 10)", &frame_every, 0, 1000000);
  args.option("from", "A.png,B.png", "start from blends of two images instead of noise", &from);
  args.option("mix", "T|A:B", "blend weight of B for --from: one value, or a range spread over "
              "the samples", &mix);
  args.option("keep", "IMAGE", "inpainting: keep this drawing where --mask says and let the model "
              "complete the rest", &keep);
  args.option("mask", "left|right|top|bottom|MASK.png", "with --keep: the region to regenerate, a "
              "named half or a PNG whose light pixels are regenerated (dark ones kept)", &mask);
  args.option("vary", "IMAGE", "variations of this drawing: restart the sampler part way from it",
              &vary);
  args.option("strength", "S", "with --vary, or --from under the ddim and annealed forms (blend, "
              "then restart): the share of the sampler's walk to redo, 0 to 1 (small: close "
              "variations, large: new designs)", &strength, 0.0, 1.0);
  args.option("guide", "MIX", "guided sampling toward a mix of families and/or subtypes by "
              "--classifier, e.g. arch:0.5,suspension:0.5 or cable_fan (shares > 0, normalised; a "
              "family spreads evenly over its subtypes)", &guide);
  args.option("guide-scale", "L", "with --guide: the guide's strength (0: unguided; default " +
              short_number(ebm::kDefaultNoiseGuideScale) + " for a noise-conditional guide, " +
              short_number(ebm::kDefaultGuideScale) + " for a clean one)", &guide_scale,
              0.0, 1e6);
  args.option("guide-sigma", "S", "with --guide and a clean classifier: full strength at noise "
              "levels up to S, tapered as (S/sigma)^2 above (the ddim and annealed forms; a "
              "noise-conditional guide is at full strength at every level)", &guide_sigma, 1e-6, 1e6);
  args.option("classifier", "FILE", "with --guide: the guide classifier (.safetensors): "
              "models/bridge-guide.safetensors, trained on noised drawings (ebm-train --task "
              "classify --noise-conditional), is the one to use with the ddim and annealed forms "
              "and the default where it exists; models/bridge-classifier.safetensors (clean "
              "drawings) for the paper and textbook forms",
              &classifier_path);
  args.flag("guide-denoised", "with --guide (ddim, annealed): the classifier reads each step's "
            "denoised estimate instead of the noisy state", &guide_denoised);
  flags.add_to(args);
  args.option("threads", "T", "threads (0: one per core); the samples do not depend on it", &threads, 0, 256);
  args.flag("quiet", "no progress bar", &quiet);
  args.example("ebm-sample --model models/bridges.safetensors --count 16 --out grid.png");
  args.example("ebm-sample --model m.safetensors --count 8 --frames frames/ --frame-every 100");
  args.example("ebm-sample --model m.safetensors --from arch.png,cable.png --mix 0.2:0.8 --count 8");
  args.example("ebm-sample --model models/bridges.safetensors --keep arch.png --mask right --count 8");
  args.example("ebm-sample --model models/bridges.safetensors --vary arch.png --strength 0.4");
  args.example("ebm-sample --model models/bridges.safetensors --guide arch:0.5,suspension:0.5 "
               "--classifier models/bridge-guide.safetensors");
  args.parse(argc, argv);
  if (keep.empty() != mask.empty())
    args.fail(keep.empty() ? "--mask needs --keep IMAGE (the drawing to complete)"
                           : "--keep needs --mask (the region to regenerate: left, right, top, "
                             "bottom or a PNG)");
  if (!from.empty() && !vary.empty()) args.fail("--from and --vary are two different starts; give one");
  if (args.given("strength") && vary.empty() && from.empty())
    args.fail("--strength goes with --vary IMAGE or --from A.png,B.png");
  for (const char* f : {"guide-scale", "guide-sigma", "classifier", "guide-denoised"})
    if (args.given(f) && guide.empty()) args.fail(std::string("--") + f + " goes with --guide MIX");

  return ebm::run_main("ebm-sample", [&]() {
    ebm::Network net = ebm::Network::from_file(model_path);
    if (net.kind() != ebm::ModelKind::kEnergy)
      throw ebm::Error("'" + model_path + "' is a classifier; ebm-sample needs an energy model");
    const ebm::Shape in = net.input_shape();
    if (in.c != 1)
      throw ebm::Error("ebm-sample writes grayscale images; this model takes " +
                       std::to_string(in.c) + " channels");

    // The model's own settings with the flags applied, validated.
    const ebm::SamplerParams p = ebm::parse_sampler_params(flags.overrides(args), net.sampler());

    ebm::LangevinSampler sampler(net, p, seed, threads);
    std::unique_ptr<ebm::Network> classifier;  // the guide; outlives the sampler's steps
    if (!guide.empty()) {
      classifier = std::make_unique<ebm::Network>(ebm::Network::from_file(classifier_path));
      if (classifier->kind() != ebm::ModelKind::kClassifier)
        throw ebm::Error("'" + classifier_path + "' is an energy model; --classifier needs a classifier");
      if (classifier->noise_conditional() && !args.given("guide-scale"))
        guide_scale = ebm::kDefaultNoiseGuideScale;
      sampler.set_guide(*classifier, ebm::parse_guide_target(guide, classifier->labels()),
                        float(guide_scale), float(guide_sigma), guide_denoised);
    }
    if (!keep.empty()) sampler.set_keep(read_image(keep, in), keep_mask(mask, in));
    if (!vary.empty()) {
      const std::vector<float> image = read_image(vary, in);
      std::vector<float> images;
      for (int i = 0; i < count; ++i) images.insert(images.end(), image.begin(), image.end());
      sampler.start_variation(images.data(), count, float(strength));
    } else if (!from.empty()) {
      if (args.given("strength") && !ebm::walks_noise_levels(p.form))
        throw ebm::Error("--strength with --from redraws each blend part way down a noise-level "
                         "walk (--form ddim or annealed); the " + std::string(ebm::sampler_form_name(p.form)) +
                         " form walks from the blends themselves: drop --strength");
      const std::vector<std::string> files = ebm::split(from, ',');
      if (files.size() != 2) args.fail("--from: expected two images A.png,B.png, got '" + from + "'");
      std::vector<std::vector<float>> ends;
      for (const std::string& f : files)
        ends.push_back(read_image(f, in));
      sampler.start_blend(ends[0].data(), ends[1].data(), blend_weights(mix, count, args), 0,
                          float(strength));
    } else {
      sampler.start_uniform(count);
    }

    if (cols == 0)
      cols = std::max(1, int(std::lround(std::sqrt(double(count) * in.h / in.w))));
    if (!frames.empty()) ensure_dir(frames);
    if (frame_every == 0) frame_every = std::max(1, p.steps / 10);

    std::cerr << "model: " << model_path << " (" << net.architecture().parameter_count()
              << " parameters, input " << in.str() << ")\nsampler: "
              << ebm::sampler_params_json(p).dump() << ", seed " << seed << ", " << count
              << " samples\n";
    if (classifier)
      std::cerr << "guide: " << guide << " by " << classifier_path << ", scale " << guide_scale
                << (classifier->noise_conditional()
                        ? std::string(", noise-conditional: full strength at every level")
                        : ", full strength below sigma " + short_number(guide_sigma))
                << (guide_denoised ? ", on the denoised estimate" : "") << "\n";
    const int strip_rows = std::min(count, 8);
    std::vector<std::vector<float>> strip;  // per snapshot, the first strip_rows images
    ebm::ProgressBar bar("sampling", p.steps, "step");
    const size_t d = size_t(net.input_size());
    sampler.run(1, [&](const ebm::SamplerProgress& s) {
      if (!frames.empty() && (s.step % frame_every == 0 || s.step == s.total)) {
        // A noise-level walk's states are mostly noise until its last levels; its denoised
        // estimates are whole drawings from the first levels on. The last frame is the samples.
        const float* shown = !noisy_frames && s.denoised && s.step < s.total ? s.denoised : s.images;
        char name[64];
        std::snprintf(name, sizeof name, "/frame_%06d.png", s.step);
        ebm::write_png(frames + name,
                       upscale(ebm::make_grid(shown, s.count, in.h, in.w, cols), scale));
        strip.emplace_back(shown, shown + size_t(strip_rows) * d);
      }
      if (!quiet) {
        float mean = 0;
        for (int i = 0; i < s.count; ++i) mean += s.energies[i];
        char suffix[48] = "";  // no energies yet at the start of a noise-level walk
        if (std::isfinite(mean)) std::snprintf(suffix, sizeof suffix, "mean E %.4f", double(mean) / s.count);
        bar.update(s.step, suffix);
      }
      return true;
    });
    if (!quiet) bar.finish();

    const std::vector<float> energies = sampler.final_energies();
    ebm::write_png(out, upscale(ebm::make_grid(sampler.images().data(), count, in.h, in.w, cols), scale));
    if (!frames.empty() && !strip.empty()) {
      // Column t of row r is sample r at snapshot t: one row per chain, noise on the left.
      const int cols_t = int(strip.size());
      std::vector<float> tiles(size_t(strip_rows) * cols_t * d);
      for (int r = 0; r < strip_rows; ++r)
        for (int t = 0; t < cols_t; ++t)
          std::copy_n(strip[size_t(t)].data() + size_t(r) * d, d,
                      tiles.data() + (size_t(r) * cols_t + t) * d);
      ebm::write_png(frames + "/strip.png",
                     upscale(ebm::make_grid(tiles.data(), strip_rows * cols_t, in.h, in.w, cols_t), scale));
    }

    std::cout << "sample\tenergy\n";
    for (int i = 0; i < count; ++i) std::printf("%d\t%.6f\n", i, double(energies[size_t(i)]));
    std::cerr << "wrote " << out << (frames.empty() ? "" : " and snapshots in " + frames) << "\n";
    return 0;
  });
}
