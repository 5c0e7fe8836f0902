// ebm-train: trains an energy-based model (or a classifier) with LibTorch on the CPU, in a run
// folder a person can judge by its pictures; resumable, interrupt-safe, guarded against divergence;
// alone or as one of N data-parallel processes (distributed.h).
#include <cctype>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <map>
#include <optional>
#include <string>

#include "config.h"
#include "ebm/architecture.h"
#include "ebm/cli.h"
#include "ebm/error.h"
#include "ebm/thread_pool.h"
#include "langevin.h"
#include "run.h"
#include "trainer.h"

namespace {

std::atomic<bool> g_stop{false};

// First SIGINT/SIGTERM: finish cleanly (checkpoint, exit 130). The default action is restored,
// so a second one ends the program at once; the last checkpoint on disk is still whole.
void on_signal(int sig) {
  g_stop.store(true);
  std::signal(sig, SIG_DFL);
}

}  // namespace

int main(int argc, char** argv) {
  return ebm::run_main("ebm-train", [&]() -> int {
    using ebm::train::TrainConfig;
    TrainConfig cfg;
    std::string run_dir, task = "energy", form = ebm::sampler_form_name(cfg.sampler.form),
                         objective = ebm::train::objective_name(cfg.objective);
    int limit = 0, buffer_size = int(cfg.buffer_size), max_steps = 0, inject_nan = -1,
        inject_drift = -1;
    double dist_timeout = 60;
    // Data parallelism: the variables torchrun and Slurm wrappers set, or flags of those names.
    std::map<std::string, std::string> dist_flags = {{"RANK", ""},        {"WORLD_SIZE", ""},
                                                     {"MASTER_ADDR", ""}, {"MASTER_PORT", ""},
                                                     {"LOCAL_RANK", ""},  {"LOCAL_WORLD_SIZE", ""}};
    auto flag_of = [](std::string var) {
      for (char& ch : var)
        ch = ch == '_' ? '-' : char(std::tolower(static_cast<unsigned char>(ch)));
      return var;
    };
    bool resume = false, quiet = false;
    double step_size = cfg.sampler.step_size, noise = cfg.sampler.noise,
           grad_clip = cfg.sampler.grad_clip, eps = cfg.sampler.eps;

    ebm::ArgParser args(
        "ebm-train",
        "Trains an energy-based model E(x) (low for real images) by contrastive "
        "divergence with a replay buffer and Langevin sampling, or a classifier "
        "with --task classify (then Adam defaults to lr 1e-3 and beta1 0.9). CPU, every "
        "core by default; --device cuda trains dsm and classify on a GPU.");
    args.option("data", "PATH",
                "training images: a folder (sub-folders are labels), or an IDX "
                "images file such as Fashion-MNIST's train-images-idx3-ubyte.gz",
                &cfg.data);
    args.option("run", "DIR", "the run folder (default runs/<preset>)", &run_dir);
    args.flag("resume",
              "continue the run in --run DIR from its checkpoint with its settings "
              "(only --epochs, --lr-decay-epochs, --max-steps, --threads, --device, "
              "--checkpoint-minutes, --sample-count, --sample-steps and --quiet may change)",
              &resume);
    args.option("task", "NAME",
                "energy (contrastive divergence) or classify (cross-entropy on "
                "the folder labels)",
                &task);
    args.option(
        "preset", "NAME|FILE",
        "architecture: a name in models/presets (" +
            [] {
              std::string s;
              for (const std::string& n : ebm::list_presets()) s += (s.empty() ? "" : ", ") + n;
              return s;
            }() +
            ") or a preset JSON file",
        &cfg.preset);
    args.option("init-from", "MODEL",
                "start from a trained model's weights (a .safetensors file from ebm-export) "
                "instead of random ones: the same preset, or a wider one (more filters per "
                "layer, e.g. unet-wide from a unet-global model), whose extra channels start "
                "so that the network computes what the model did, or a deeper one (the model's "
                "layers, then new ones summed onto its output, e.g. unet-wide-fine from a "
                "unet-wide model; the summed ones start at zero); give the model's own --seed "
                "to hold out the images it held out",
                &cfg.init_from);
    args.option("freeze-layers", "N",
                "keep the weights of the first N layers as they are and train only the later "
                "ones (with --init-from a deeper network: N = the model's layer count trains "
                "only the added layers)",
                &cfg.freeze_layers, 0, 1 << 20);
    args.option("labels", "FILE", "IDX labels file (default: beside the images file)", &cfg.labels);
    args.option("val-fraction", "F", "fraction held out for validation", &cfg.val_fraction, 0.0,
                0.9);
    args.option("limit", "N", "use at most N images, stratified (0 = all)", &limit, 0, 1 << 30);

    args.option("epochs", "N", "epochs to train to", &cfg.epochs, 1, 1000000);
    args.option("batch", "B",
                "real images per step (and as many fakes); with N processes each takes B/N",
                &cfg.batch, 1, 65536);
    args.option("lr", "LR", "Adam learning rate", &cfg.lr, 1e-9, 1.0);
    args.option("lr-decay-epochs", "N",
                "let the learning rate fall along a half cosine to 0 over the last N epochs "
                "(0 = constant; may change on --resume: the decay then ends at the new --epochs)",
                &cfg.lr_decay_epochs, 0, 1000000);
    args.option("beta1", "B1", "Adam beta1 (0.0 as in the Lippe tutorial the notebook adapts)",
                &cfg.beta1, 0.0, 0.9999);
    args.option("beta2", "B2", "Adam beta2", &cfg.beta2, 0.0, 0.999999);
    args.option("adam-eps", "E", "Adam epsilon", &cfg.adam_eps, 1e-12, 1.0);
    args.option("clip-grad-norm", "N", "clip the parameter gradient to this global norm (0 = off)",
                &cfg.clip_grad_norm, 0.0, 1e9);
    args.flag("spectral-norm",
              "divide every conv and dense weight by its largest singular value "
              "(power iteration; the exported weight is W / sigma)",
              &cfg.spectral_norm);

    args.option("objective", "NAME",
                "how an energy model learns: cd (contrastive divergence with a replay buffer, the "
                "paper's), dsm (denoising score matching of a noise-conditional denoiser energy, "
                "for presets such as unet, which choose it themselves) or multigrid (Gao et al. "
                "2018: the preset's network on three grids, a quarter, half and full size, each "
                "by contrastive divergence, every batch's chains from noise on the coarsest grid "
                "and --langevin-steps on each, upsampled between; no replay buffer; --init-from "
                "and --freeze-layers act on the full-size network; ebm-export --grid K writes the "
                "coarser ones)",
                &objective);
    args.option("sigma-mean", "M", "dsm: mean of log sigma, the training noise level",
                &cfg.sigma_mean, -20.0, 20.0);
    args.option("sigma-std", "S", "dsm: standard deviation of log sigma", &cfg.sigma_std, 0.0, 20.0);
    args.option("sigma-min", "S",
                "dsm, --noise-conditional: smallest training noise level (--noise-conditional: "
                "default 0.02, the shipped sampler's last level)",
                &cfg.sigma_min, 1e-6, 1e4);
    args.option("sigma-max", "S",
                "dsm, --noise-conditional: largest training noise level (--noise-conditional: "
                "default 80, the shipped sampler's first level)",
                &cfg.sigma_max, 1e-6, 1e4);
    args.flag("noise-conditional",
              "classify: train the guide of a noise-level sampler (ebm-sample --guide): each "
              "drawing as x + sigma z, sigma log-uniform in [--sigma-min, --sigma-max], with the "
              "log-sigma plane as one more input channel, as the denoiser energies read it; the "
              "exported file says it takes the noise level (see models/bridge-guide.safetensors)",
              &cfg.noise_conditional);
    args.option("loss-sigma-floor", "S",
                "dsm: the loss weights noise level sigma by (sigma^2 + S^2) / sigma_data^2",
                &cfg.loss_sigma_floor, 0.0, 1e4);
    args.option("stroke-weight", "A",
                "dsm: weight each pixel's error 1 + A where the clean drawing is dark (x < 0) or "
                "next to a dark pixel, normalised per image, so that thin strokes count for more "
                "than their area (0 = every pixel alike)",
                &cfg.stroke_weight, 0.0, 1e3);
    args.option("ema", "D", "dsm: decay of the weights' moving average (what is exported)",
                &cfg.ema, 0.0, 0.999999);
    args.option("alpha", "A", "cd: weight of the regulariser mean(E_real^2 + E_fake^2)", &cfg.alpha,
                0.0, 1e6);
    args.option("kl-weight", "W",
                "cd: weight of Du et al. (2021)'s KL term: the last Langevin step differentiated "
                "with respect to the weights, lowering the samples' energy and raising their "
                "spread (nearest-neighbour entropy against the replay buffer); 0 = off",
                &cfg.kl_weight, 0.0, 1e6);
    args.option("augment", "P",
                "cd: mirror and shift each replay-buffer image a chain starts from with "
                "probability P (up to 8 columns and 2 rows), so chains move between modes; 0 = off",
                &cfg.augment, 0.0, 1.0);
    std::string grid_presets;
    args.option("grid-presets", "A,B",
                "multigrid: the networks of the two coarser grids (preset names or JSON paths, "
                "coarsest first), their layers run on a quarter and half the images' size; "
                "default: --preset on every grid (a preset with four stride-2 convolutions does "
                "not fit a 48x12 grid: give the coarsest one a shallower network)",
                &grid_presets);
    args.option("buffer-size", "N", "replay buffer capacity", &buffer_size, 1, 1 << 24);
    args.option("fresh", "P", "expected fraction of fresh uniform noise per batch", &cfg.fresh, 0.0,
                1.0);
    args.option("langevin-steps", "K", "Langevin steps per training batch", &cfg.langevin_steps, 1,
                100000);
    args.option(
        "langevin-backend", "NAME",
        "who computes dE/dx in the training loop: runtime "
        "(the exported network's own code, about twice as fast) or torch (LibTorch autograd)",
        &cfg.langevin_backend);
    args.option("form", "NAME",
                "Langevin form: paper (clipped gradient steps), textbook (Du & Mordatch), or "
                "annealed (noise levels, for dsm models; its settings come from the preset)",
                &form);
    args.option("step-size", "S", "paper form: step size", &step_size, 0.0, 1e6);
    args.option("noise", "SIGMA", "paper form: noise standard deviation per step", &noise, 0.0,
                10.0);
    args.option("grad-clip", "G", "paper form: element-wise gradient clip", &grad_clip, 0.0, 1e6);
    args.option("eps", "EPS", "textbook form: x = x - eps/2 dE/dx + sqrt(eps) N(0,1)", &eps, 1e-9,
                10.0);
    args.option("start-cell", "K",
                "generating (the epoch grids and the exported default): start from uniform noise "
                "smoothed over KxK-pixel cells (1: every pixel its own); the replay buffer's fresh "
                "noise stays per pixel",
                &cfg.sampler.start_cell, 1, 4096);
    args.option("real-noise", "SIGMA", "noise added to real images", &cfg.real_noise, 0.0, 10.0);

    args.option("sample-count", "N", "fresh samples from noise drawn at each epoch (0 = none)",
                &cfg.sample_count, 0, 1024);
    args.option("sample-steps", "K", "Langevin steps for them (also the exported default)",
                &cfg.sample_steps, 0, 1000000);
    args.option("buffer-grid", "N", "replay-buffer images shown at each epoch", &cfg.buffer_grid, 0,
                1024);
    args.option("checkpoint-minutes", "M", "also checkpoint every M minutes",
                &cfg.checkpoint_minutes, 0.0, 1e6);
    args.option("max-energy", "E", "divergence guard: |mean energy| above E counts as diverged",
                &cfg.max_energy, 1e-3, 1e30);
    args.option("max-loss-ratio", "R",
                "divergence guard (dsm): a step whose loss is above R times the running mean "
                "of the steps before it counts as diverged (0 = off)",
                &cfg.max_loss_ratio, 0.0, 1e30);
    args.option("max-rollbacks", "N", "divergence guard: give up after N rollbacks",
                &cfg.max_rollbacks, 0, 1000);
    args.option("rollback-lr-factor", "F", "divergence guard: learning rate factor per rollback",
                &cfg.rollback_lr_factor, 1e-6, 1.0);
    args.option("seed", "S", "seed of every random choice (same seed, same run)", &cfg.seed);
    args.option("threads", "N", "CPU threads (0 = every core)", &cfg.threads, 0, 1024);
    args.option("device", "D",
                "where the network trains: cpu, or cuda (cuda:N) with a CUDA build of LibTorch, "
                "for dsm and classify; a CUDA run draws the same noise but is not bit for bit "
                "the CPU's",
                &cfg.device);
    args.option("max-steps", "N", "stop (with a checkpoint) after N steps in all (0 = no limit)",
                &max_steps, 0, 1 << 30);
    args.option("inject-nan", "STEP",
                "testing the guard: poison a weight with NaN before STEP, once", &inject_nan, -1,
                1 << 30);
    args.flag("quiet", "no progress bar", &quiet);
    const struct {
      const char *var, *metavar, *help;
    } dist_help[] = {
        {"RANK", "R", "data parallel: this process's rank, 0 to WORLD_SIZE-1 (default $RANK)"},
        {"WORLD_SIZE", "N",
         "data parallel: the number of processes (default $WORLD_SIZE; unset or 1: this process "
         "alone)"},
        {"MASTER_ADDR", "HOST",
         "data parallel: rank 0's address as the other machines reach it (default $MASTER_ADDR)"},
        {"MASTER_PORT", "PORT",
         "data parallel: a free TCP port on rank 0's machine, the same for every process (default "
         "$MASTER_PORT)"},
        {"LOCAL_RANK", "R",
         "data parallel: this process's rank on its machine (default $LOCAL_RANK)"},
        {"LOCAL_WORLD_SIZE", "N",
         "data parallel: processes on this machine, which share its cores when --threads is 0 "
         "(default $LOCAL_WORLD_SIZE)"}};
    for (const auto& d : dist_help)
      args.option(flag_of(d.var), d.metavar, d.help, &dist_flags[d.var]);
    args.option("dist-timeout", "S",
                "data parallel: a rank that dies or stalls stops the others within S seconds "
                "(a dead process's connections close at once)",
                &dist_timeout, 1.0, 86400.0);
    args.option("inject-drift", "STEP",
                "testing the replica check: the last rank nudges a weight before STEP, once",
                &inject_drift, -1, 1 << 30);
    args.example(
        "ebm-bridges --out data/bridges && ebm-train --data data/bridges --run runs/paper");
    args.example("ebm-train --data data/bridges --preset compact --run runs/compact --epochs 20");
    args.example("ebm-train --run runs/paper --resume --epochs 80");
    args.example(
        "ebm-train --data /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz "
        "--preset book --run runs/fashion");
    args.example("ebm-train --task classify --data data/bridges --preset compact --run runs/cls");
    args.example(
        "ebm-train --task classify --noise-conditional --data data/bridges --preset compact "
        "--run runs/guide   (the guide classifier)");
    args.example(
        "MASTER_ADDR=10.0.0.1 MASTER_PORT=29500 WORLD_SIZE=2 RANK=0 ebm-train --data data/bridges "
        "--run runs/paper   (and RANK=1 on the second machine)");
    args.epilog(
        "Defaults follow the book and the paper (SPEC section 1): Adam 1e-4 with betas "
        "(0.0, 0.999), alpha 0.1, buffer 8192 with 5% fresh noise, 60 Langevin steps of "
        "size 10 with noise 0.005 and gradient clip 0.03, batch 128. A preset may carry its "
        "own defaults (\"train\" in its JSON); options given here win. Ctrl-C saves a "
        "checkpoint and exits with status 130; --resume continues bit for bit. Data parallel: "
        "N processes, one per machine or several on one, run the same command with RANK 0..N-1; "
        "--batch is the global batch; rank 0 alone writes the run folder, the others need only "
        "the data. A checkpoint resumes at the same world size (dsm and classify at any).");
    args.parse(argc, argv);

    ebm::train::DistOptions dist;
    try {
      dist = ebm::train::parse_dist_options(
          [&](const std::string& var) -> std::optional<ebm::train::DistSetting> {
            const std::string flag = flag_of(var);
            if (args.given(flag)) return ebm::train::DistSetting{dist_flags[var], "--" + flag};
            if (const char* v = std::getenv(var.c_str())) return ebm::train::DistSetting{v, var};
            return std::nullopt;
          },
          dist_timeout);
    } catch (const ebm::Error& e) {
      args.fail(e.what());
    }
    // Ranks other than 0 take the run's settings from rank 0 (run_training); they keep their
    // own --threads and, where given, their own path to the data.
    const bool follower = dist.rank > 0;

    if (follower) {
      // Nothing to resolve: rank 0's configuration comes through the store.
    } else if (run_dir.empty()) {
      if (resume) args.fail("--resume needs --run DIR");
      run_dir =
          "runs/" + (cfg.preset.find('/') == std::string::npos ? cfg.preset : std::string("run"));
    }
    if (follower) {
      // As above: the settings are rank 0's.
    } else if (resume) {
      // Settings come from the run; only the resumable options may be given.
      for (const char* name : {"data",
                               "task",
                               "preset",
                               "labels",
                               "val-fraction",
                               "limit",
                               "batch",
                               "lr",
                               "beta1",
                               "beta2",
                               "adam-eps",
                               "clip-grad-norm",
                               "init-from",
                               "freeze-layers",
                               "spectral-norm",
                               "objective",
                               "sigma-mean",
                               "sigma-std",
                               "sigma-min",
                               "sigma-max",
                               "noise-conditional",
                               "ema",
                               "loss-sigma-floor",
                               "stroke-weight",
                               "alpha",
                               "kl-weight",
                               "augment",
                               "grid-presets",
                               "buffer-size",
                               "fresh",
                               "langevin-steps",
                               "langevin-backend",
                               "form",
                               "step-size",
                               "noise",
                               "grad-clip",
                               "eps",
                               "real-noise",
                               "buffer-grid",
                               "max-energy",
                               "max-loss-ratio",
                               "max-rollbacks",
                               "rollback-lr-factor",
                               "seed",
                               "inject-nan",
                               "inject-drift"})
        if (args.given(name))
          args.fail(std::string("--") + name +
                    " cannot change when resuming; the run's settings "
                    "are in " +
                    run_dir + "/run.json");
      TrainConfig saved = ebm::train::read_run_config(run_dir);
      if (args.given("epochs")) saved.epochs = cfg.epochs;
      if (args.given("lr-decay-epochs")) saved.lr_decay_epochs = cfg.lr_decay_epochs;
      if (args.given("max-steps")) saved.max_steps = max_steps;
      if (args.given("threads")) saved.threads = cfg.threads;
      if (args.given("device")) saved.device = cfg.device;
      if (args.given("checkpoint-minutes")) saved.checkpoint_minutes = cfg.checkpoint_minutes;
      if (args.given("sample-count")) saved.sample_count = cfg.sample_count;
      if (args.given("sample-steps")) saved.sample_steps = cfg.sample_steps;
      saved.inject_nan_step = -1;
      saved.inject_drift_step = -1;
      cfg = saved;
    } else {
      if (cfg.data.empty()) args.fail("missing --data PATH (or --resume with --run DIR)");
      try {
        cfg.task = ebm::train::parse_task(task);
        cfg.objective = ebm::train::parse_objective(objective);
        cfg.sampler.form = ebm::parse_sampler_form(form);
        ebm::train::parse_langevin_backend(cfg.langevin_backend);
      } catch (const ebm::Error& e) {
        args.fail(e.what());
      }
      // A classifier is an ordinary supervised problem: Adam's usual momentum and a larger step
      // unless told otherwise (the energy defaults are the book's).
      if (cfg.task == ebm::train::Task::kClassify) {
        if (!args.given("lr")) cfg.lr = 1e-3;
        if (!args.given("beta1")) cfg.beta1 = 0.9;
      }
      if (cfg.noise_conditional) {
        if (cfg.task != ebm::train::Task::kClassify)
          args.fail("--noise-conditional trains a guide classifier: it needs --task classify (an "
                    "energy model is noise-conditional by its preset, e.g. --preset unet)");
        // The levels the shipped sampler walks (models/bridges.safetensors: ddim, 80 -> 0.02).
        if (!args.given("sigma-min")) cfg.sigma_min = 0.02;
        if (!args.given("sigma-max")) cfg.sigma_max = 80;
      }
      if (!grid_presets.empty()) cfg.grid_presets = ebm::split(grid_presets, ',');
      cfg.limit = limit;
      cfg.buffer_size = buffer_size;
      cfg.max_steps = max_steps;
      cfg.inject_nan_step = inject_nan;
      cfg.inject_drift_step = inject_drift;
      cfg.sampler.step_size = float(step_size);
      cfg.sampler.noise = float(noise);
      cfg.sampler.grad_clip = float(grad_clip);
      cfg.sampler.eps = float(eps);
      // The preset's own training defaults, where the command line says nothing.
      const ebm::Preset preset = ebm::load_preset(cfg.preset);
      if (preset.train.is_object()) {
        nlohmann::json j = cfg.to_json();
        for (const auto& [key, value] : preset.train.items()) {
          std::string flag = key;
          for (char& ch : flag)
            if (ch == '_') ch = '-';
          if (key == "sampler") {
            for (const auto& [k, v] : value.items()) {
              const std::string f = k == "form"         ? "form"
                                    : k == "step_size"  ? "step-size"
                                    : k == "grad_clip"  ? "grad-clip"
                                    : k == "start_cell" ? "start-cell"
                                                        : k;
              if (!args.given(f)) j["sampler"][k] = v;
            }
          } else if (!args.given(flag)) {
            j[key] = value;
          }
        }
        cfg = TrainConfig::from_json(j);
      }
    }
    // Before anything is written: a device this build cannot train on leaves no run folder.
    try {
      (void)ebm::train::training_device(cfg);
    } catch (const ebm::Error& e) {
      args.fail(e.what());
    }

    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    ebm::train::RunOptions opt;
    opt.dir = run_dir;
    opt.resume = resume;
    opt.stop = &g_stop;
    opt.progress = !quiet;
    opt.dist = dist;
    if (follower && args.given("data")) opt.own_data = cfg.data;
    ebm::train::RunResult r;
    if (dist.distributed()) {
      // LibTorch's store runs threads of its own; one that meets a connection reset by a dead
      // rank 0 throws out of its thread. That ends this process as any fault does, with a message
      // and status 1 instead of an abort.
      std::set_terminate([] {
        std::string what = "unknown";
        try {
          if (std::exception_ptr e = std::current_exception()) std::rethrow_exception(e);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        std::cerr << "ebm-train: error: a connection to another rank broke (" << what
                  << "); the rank it led to ended or is unreachable\n";
        std::fflush(nullptr);
        std::_Exit(1);
      });
    }
    if (!dist.distributed()) {
      r = ebm::train::run_training(cfg, opt);
    } else {
      try {
        r = ebm::train::run_training(cfg, opt);
      } catch (const std::exception& e) {
        // Gloo's threads may still wait on a dead peer's sockets: the process ends here rather
        // than in static destructors running beside them.
        std::cerr << "ebm-train: error: " << e.what() << "\n";
        std::fflush(nullptr);
        std::_Exit(1);
      }
    }
    if (r == ebm::train::RunResult::kInterrupted) {
      if (follower)
        std::cerr << "ebm-train: interrupted with every rank; rank 0 saved the checkpoint\n";
      else
        std::cerr << "ebm-train: interrupted; continue with: ebm-train --run " << run_dir
                  << " --resume" << (dist.distributed() ? " (every process)" : "") << "\n";
      return 130;
    }
    if (follower)
      std::cerr << "ebm-train: rank " << dist.rank << " of " << dist.world_size
                << " done; the run folder is rank 0's\n";
    else
      std::cerr << "ebm-train: run folder " << run_dir << " (export with: ebm-export " << run_dir
                << "/checkpoint.pt --out model.safetensors)\n";
    return 0;
  });
}
