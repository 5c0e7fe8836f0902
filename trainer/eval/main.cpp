// ebm-eval: how good is a trained energy model? Samples it from fresh noise with the runtime (the
// page's own code), labels the samples with a bridge classifier and measures coverage,
// confidence, sharpness, Frechet distance, novelty and new bridge types (issue 6's targets).
#include <iostream>

#include "ebm/cli.h"
#include "ebm/error.h"
#include "ebm/sampler.h"
#include "ebm/sampler_flags.h"
#include "evaluate.h"

int main(int argc, char** argv) {
  ebm::eval::EvalOptions opt;
  opt.classifier = "models/bridge-classifier.safetensors";
  std::string out = "eval", inpaint;
  ebm::SamplerFlags flags;
  double val_fraction = -1;
  uint64_t split_seed = 0;
  bool quiet = false, reference_hybrids = false;

  ebm::ArgParser args(
      "ebm-eval",
      "Evaluates an energy model: draws --count samples from fresh noise with the model's own "
      "sampler (the runtime, as the page does), labels them with --classifier, and compares them "
      "with the dataset the model was trained on (from its card, split the same way).\n"
      "Writes DIR/report.json, DIR/report.md, DIR/samples.png, DIR/candidates.png, DIR/real.png.\n"
      "A new bridge type is a sample whose top two classifier families each carry at least "
      "--mix-threshold, at least 0.9 of the real images' sharpness (mean |x|), and farther from "
      "every training image than 95% of held-out real images are.");
  args.option("model", "FILE", "energy model (.safetensors)", &opt.model, true);
  args.option("classifier", "FILE", "subtype classifier (.safetensors)", &opt.classifier);
  args.option("data", "DIR", "dataset (default: the path in the model card)", &opt.data);
  args.option("out", "DIR", "where the report and pictures go", &out);
  args.option("count", "N", "samples from noise", &opt.count, 2, 100000);
  args.option("seed", "S", "sampling seed", &opt.seed);
  flags.add_to(args);
  args.option("val-fraction", "F", "held-out share of the dataset (default: the model card's)",
              &val_fraction, 0, 0.9);
  args.option("split-seed", "S", "seed of the train/held-out split (default: the card's)",
              &split_seed);
  args.option("mix-threshold", "P", "family probability both top families need", &opt.mix_threshold,
              0, 0.5);
  std::string grids;
  args.option("grids", "FILE[,FILE]",
              "multi-grid sampling (a model of ebm-train --objective multigrid): the coarser "
              "grids' model files, coarsest first (ebm-export --grid K); chains start from noise "
              "on the first, each grid's samples upsampled to start the next, and end on --model",
              &grids);
  args.option("inpaint", "left|right|top|bottom", "instead: regenerate this half of --count "
              "held-out drawings, keep the rest, and measure whether the kept half stays "
              "unchanged and the completion keeps the original's subtype", &inpaint);
  args.option("guide", "MIX", "instead: guided sampling toward a mix of families and/or subtypes "
              "(e.g. arch:0.5,suspension:0.5 or cable_fan; shares > 0, normalised), judged by "
              "--classifier: the share of that subtype (one subtype) or of clean hybrids of the "
              "pair (two families)", &opt.guide);
  double guide_scale = ebm::kDefaultNoiseGuideScale;  // shown; a clean guide's default is 3000
  args.option("guide-scale", "L", "with --guide: the guide's strength (3000 for a clean guide "
              "when not given)", &guide_scale, 0, 1e6);
  args.option("guide-sigma", "S", "with --guide: full strength at noise levels up to S, tapered as "
              "(S/sigma)^2 above", &opt.guide_sigma, 1e-6, 1e6);
  args.flag("guide-denoised", "with --guide: the classifier reads each step's denoised estimate",
            &opt.guide_denoised);
  args.option("guide-classifier", "FILE", "with --guide: the guide (default: "
              "bridge-guide.safetensors beside --classifier, the noise-conditional guide, where "
              "it exists; else --classifier, which then judges its own guidance)",
              &opt.guide_classifier);
  args.flag("reference-hybrids", "instead: no sampling; for each pair of families, --count "
            "hybrids built from held-out drawings (both drawn in full, side by side, and the "
            "50/50 pixel blend), judged as --guide judges a pair's samples: how far that target "
            "can go with --classifier when the samples are such drawings", &reference_hybrids);
  args.option("threads", "T", "sampling threads (0: one per core)", &opt.threads, 0, 256);
  args.flag("quiet", "no progress bar", &quiet);
  args.example("ebm-eval --model models/bridges.safetensors --out models/bridges-eval");
  args.example(
      "ebm-eval --model runs/compact/model.safetensors --count 64 --steps 200 --out /tmp/ev");
  args.example("ebm-eval --model models/bridges.safetensors --inpaint right --count 64 --out /tmp/inp");
  args.example("ebm-eval --model models/bridges.safetensors --guide arch:0.5,suspension:0.5 "
               "--guide-classifier models/bridge-guide.safetensors --count 256 --out /tmp/guided");
  args.example("ebm-eval --model mg.safetensors --grids mg-grid0.safetensors,mg-grid1.safetensors "
               "--out /tmp/mg");
  args.example("ebm-eval --model models/bridges.safetensors --reference-hybrids --count 512 "
               "--out /tmp/built");
  args.parse(argc, argv);
  for (const char* f : {"guide-scale", "guide-sigma", "guide-classifier", "guide-denoised"})
    if (args.given(f) && opt.guide.empty()) args.fail(std::string("--") + f + " goes with --guide MIX");
  if (args.given("guide-scale")) opt.guide_scale = guide_scale;  // else the guide's kind decides
  if (!opt.guide.empty() && !inpaint.empty()) args.fail("--guide and --inpaint are two different modes; give one");
  if (reference_hybrids && (!opt.guide.empty() || !inpaint.empty()))
    args.fail("--reference-hybrids is a mode of its own; give it without --guide or --inpaint");
  if (!grids.empty() && (!opt.guide.empty() || !inpaint.empty() || reference_hybrids))
    args.fail("--grids draws samples from noise coarse to fine; give it without --guide, "
              "--inpaint or --reference-hybrids");
  if (!grids.empty()) opt.grids = ebm::split(grids, ',');
  if (!inpaint.empty() && !ebm::is_region_name(inpaint))
    args.fail("--inpaint: expected left, right, top or bottom (the half to regenerate), got '" +
              inpaint + "'");

  return ebm::run_main("ebm-eval", [&]() {
    opt.sampler = flags.overrides(args);
    if (args.given("val-fraction")) opt.val_fraction = val_fraction;
    if (args.given("split-seed")) opt.split_seed = int64_t(split_seed);

    std::unique_ptr<ebm::ProgressBar> bar;
    std::string stage;
    const ebm::eval::Progress progress = [&](const std::string& s, int64_t done, int64_t total) {
      if (quiet) return;
      if (s != stage) {
        if (bar) bar->finish();
        stage = s;
        bar = std::make_unique<ebm::ProgressBar>(s, total, s == "sampling" ? "image-step" : "part");
      }
      bar->update(done);
    };
    const ebm::eval::EvalResult r =
        reference_hybrids ? ebm::eval::evaluate_reference_hybrids(opt, progress)
        : inpaint.empty() ? ebm::eval::evaluate(opt, progress)
                          : ebm::eval::evaluate_inpainting(opt, inpaint, progress);
    if (bar) bar->finish();
    ebm::eval::write_result(out, r);
    std::cout << r.markdown << "\nwrote " << out
              << "/report.json, report.md, samples.png, candidates.png, real.png\n";
    return 0;
  });
}
