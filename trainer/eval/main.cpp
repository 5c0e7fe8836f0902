// ebm-eval: how good is a trained energy model? Samples it from fresh noise with the runtime (the
// page's own code), labels the samples with a bridge classifier and measures coverage,
// confidence, sharpness, Frechet distance, novelty and new bridge types (issue 6's targets).
#include <iostream>

#include "ebm/cli.h"
#include "ebm/error.h"
#include "evaluate.h"

int main(int argc, char** argv) {
  ebm::eval::EvalOptions opt;
  opt.classifier = "models/bridge-classifier.safetensors";
  std::string out = "eval", form;
  int steps = -1, start_cell = 0;
  double step_size = -1, noise = -1, grad_clip = -1, eps = -1, val_fraction = -1;
  uint64_t split_seed = 0;
  bool quiet = false;

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
  args.option("steps", "K", "Langevin steps (default: the model's)", &steps, 0, 1000000);
  args.option("form", "NAME", "sampler form: paper or textbook (default: the model's)", &form);
  args.option("step-size", "X", "paper form: step size (default: the model's)", &step_size, 0, 1e6);
  args.option("noise", "X", "paper form: noise standard deviation (default: the model's)", &noise,
              0, 10);
  args.option("grad-clip", "X", "paper form: gradient clip (default: the model's)", &grad_clip, 0,
              1e6);
  args.option("eps", "X", "textbook form: eps (default: the model's)", &eps, 0, 10);
  args.option("start-cell", "K",
              "start from uniform noise smoothed over KxK-pixel cells, 1 = every pixel its own "
              "(default: the model's)",
              &start_cell, 1, 4096);
  args.option("val-fraction", "F", "held-out share of the dataset (default: the model card's)",
              &val_fraction, 0, 0.9);
  args.option("split-seed", "S", "seed of the train/held-out split (default: the card's)",
              &split_seed);
  args.option("mix-threshold", "P", "family probability both top families need", &opt.mix_threshold,
              0, 0.5);
  args.option("threads", "T", "sampling threads (0: one per core)", &opt.threads, 0, 256);
  args.flag("quiet", "no progress bar", &quiet);
  args.example("ebm-eval --model models/bridges.safetensors --out models/bridges-eval");
  args.example(
      "ebm-eval --model runs/compact/model.safetensors --count 64 --steps 200 --out /tmp/ev");
  args.parse(argc, argv);

  return ebm::run_main("ebm-eval", [&]() {
    if (steps >= 0) opt.sampler["steps"] = steps;
    if (!form.empty()) opt.sampler["form"] = form;
    if (args.given("step-size")) opt.sampler["step_size"] = step_size;
    if (args.given("noise")) opt.sampler["noise"] = noise;
    if (args.given("grad-clip")) opt.sampler["grad_clip"] = grad_clip;
    if (args.given("eps")) opt.sampler["eps"] = eps;
    if (args.given("start-cell")) opt.sampler["start_cell"] = start_cell;
    if (args.given("val-fraction")) opt.val_fraction = val_fraction;
    if (args.given("split-seed")) opt.split_seed = int64_t(split_seed);

    std::unique_ptr<ebm::ProgressBar> bar;
    std::string stage;
    const ebm::eval::EvalResult r = ebm::eval::evaluate(opt, [&](const std::string& s, int64_t done,
                                                                 int64_t total) {
      if (quiet) return;
      if (s != stage) {
        if (bar) bar->finish();
        stage = s;
        bar = std::make_unique<ebm::ProgressBar>(s, total, s == "sampling" ? "image-step" : "part");
      }
      bar->update(done);
    });
    if (bar) bar->finish();
    ebm::eval::write_result(out, r);
    std::cout << r.markdown << "\nwrote " << out
              << "/report.json, report.md, samples.png, candidates.png, real.png\n";
    return 0;
  });
}
