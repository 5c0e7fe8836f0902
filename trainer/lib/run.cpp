#include "run.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <ctime>
#include <iostream>
#include <memory>

#include "checkpoint.h"
#include "curves.h"
#include "data_source.h"
#include "distributed.h"
#include "ebm/cli.h"
#include "ebm/error.h"
#include "ebm/fileio.h"
#include "ebm/json_util.h"
#include "ebm/rng.h"
#include "ebm/thread_pool.h"
#include "metrics_csv.h"
#include "sample_pngs.h"
#include "trainer.h"

namespace ebm::train {

namespace {

using Clock = std::chrono::steady_clock;

void ensure_dir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST)
    throw Error("cannot create run folder '" + dir + "': " + std::strerror(errno));
}

bool file_exists(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0;
}

// log.txt: one line per event, flushed, also echoed to stderr. With no path (ranks other than 0,
// which own no run folder) it records nothing.
class RunLog {
 public:
  explicit RunLog(const std::string& path) {
    if (path.empty()) return;
    file_ = std::fopen(path.c_str(), "ab");
    if (!file_) throw Error("cannot open " + path + ": " + std::strerror(errno));
  }
  ~RunLog() {
    if (file_) std::fclose(file_);
  }
  RunLog(const RunLog&) = delete;
  RunLog& operator=(const RunLog&) = delete;
  void event(const std::string& msg, bool echo = true) {
    if (!file_) return;
    std::fprintf(file_, "%s  %s\n", time_now("%Y-%m-%d %H:%M:%S", false).c_str(), msg.c_str());
    std::fflush(file_);
    if (echo) std::cerr << "ebm-train: " << msg << "\n";
  }

 private:
  std::FILE* file_ = nullptr;
};

// metrics.csv: step, epoch, loss, the objective's figures, lr, its rate, seconds.
std::vector<std::string> step_columns(const TrainingObjective& o) {
  std::vector<std::string> c = {"step", "epoch", "loss"};
  for (const std::string& f : o.step_figures()) c.push_back(f);
  c.insert(c.end(), {"lr", o.rate_name(), "seconds"});
  return c;
}

std::vector<double> step_row(const TrainingObjective& o, int64_t step, int64_t epoch,
                             const StepMetrics& m) {
  std::vector<double> r = {double(step), double(epoch), m.loss};
  for (const std::string& f : o.step_figures()) r.push_back(m.figures.get(f));
  r.insert(r.end(), {m.lr, m.rate, m.seconds});
  return r;
}

// validation.csv: epoch, step, the objective's validation figures.
std::vector<std::string> val_columns(const TrainingObjective& o) {
  std::vector<std::string> c = {"epoch", "step"};
  for (const std::string& f : o.validation_figures()) c.push_back(f);
  return c;
}

// The order of the training images in an epoch: a Fisher-Yates shuffle seeded by (seed, epoch),
// so a resumed run sees exactly the batches the uninterrupted run would have.
std::vector<int64_t> epoch_order(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[size_t(i)] = i;
  Pcg32 rng(seed, 0xe90c0000ull + uint64_t(epoch));
  for (int64_t i = n - 1; i > 0; --i)
    std::swap(order[size_t(i)], order[rng.below(uint32_t(i + 1))]);
  return order;
}

// Means of the step metrics over an epoch (the model card's "train" entry).
struct EpochMeans {
  double loss = 0, rate = 0;
  std::vector<double> figures;
  int n = 0;
  void add(const TrainingObjective& o, const StepMetrics& m) {
    const std::vector<std::string> names = o.step_figures();
    figures.resize(names.size(), 0.0);
    for (size_t i = 0; i < names.size(); ++i) figures[i] += m.figures.get(names[i]);
    loss += m.loss;
    rate += m.rate;
    ++n;
  }
  nlohmann::json json(const TrainingObjective& o) const {
    const double k = n > 0 ? 1.0 / n : NAN;
    nlohmann::json j = {{"loss", loss * k}};
    const std::vector<std::string> names = o.step_figures();
    for (size_t i = 0; i < names.size(); ++i) j[names[i]] = i < figures.size() ? figures[i] * k : NAN;
    j[o.rate_name()] = rate * k;
    return j;
  }
};

std::string epoch_tag(int64_t epoch) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "epoch_%03lld", static_cast<long long>(epoch));
  return buf;
}

// The pictures of an epoch: curves, the newest buffer images, fresh samples from noise drawn by
// the runtime, and one of those chains step by step.
void write_epoch_pictures(Trainer& tr, const std::string& dir, int threads,
                          const std::atomic<bool>* stop) {
  const TrainConfig& cfg = tr.config();
  const int64_t epoch = tr.counters().epoch;
  write_curves_png(dir, cfg.task, cfg.objective);
  if (cfg.task != Task::kEnergy) return;
  const Shape s = tr.net()->image_shape();
  const std::string base = dir + "/" + epoch_tag(epoch);

  const ReplayBuffer* buffer = tr.objective().buffer();
  const int64_t nb = buffer ? std::min<int64_t>(cfg.buffer_grid, buffer->size()) : 0;
  if (nb > 0) {
    const torch::Tensor imgs = buffer->newest(nb).contiguous();
    double mean_e = 0;
    {
      torch::NoGradGuard no_grad;
      mean_e = tr.net()->forward(imgs).mean().item<double>();
    }
    write_png(base + "_buffer.png",
              captioned_grid(imgs.data_ptr<float>(), int(nb), s, grid_columns(int(nb), s),
                             "epoch " + std::to_string(epoch) + ": newest " + std::to_string(nb) +
                                 " of " + std::to_string(buffer->size()) +
                                 " buffer images, mean E " + short_number(mean_e)));
  }
  if (cfg.sample_count > 0 && cfg.sample_steps > 0) {
    SamplerParams p = cfg.sampler;
    p.steps = cfg.sample_steps;
    // The unit's own sampler where it has one (multigrid: coarse to fine), else the runtime's on
    // the trained network.
    std::optional<NoiseSamples> own = tr.objective().draw_samples(
        cfg, tr.model_net(), cfg.sample_count, cfg.seed + uint64_t(epoch), threads, stop);
    const NoiseSamples ns =
        own ? std::move(*own)
            : sample_from_noise(tr.model_net()->to_model(ModelKind::kEnergy), p, cfg.sample_count,
                                cfg.seed + uint64_t(epoch), threads, 10, stop);
    const std::string how = own ? ns.walk : std::to_string(p.steps) + " steps";
    double mean_e = 0;
    for (float e : ns.energies) mean_e += e;
    mean_e /= double(ns.energies.size());
    write_png(base + "_samples.png",
              captioned_grid(ns.images.data(), cfg.sample_count, s,
                             grid_columns(cfg.sample_count, s),
                             "epoch " + std::to_string(epoch) + ": from noise, " + how + " (" +
                                 sampler_form_name(p.form) + "), mean E " + short_number(mean_e)));
    std::vector<float> frames;
    std::vector<std::string> labels = ns.snapshot_names;
    for (size_t k = 0; k < ns.snapshots.size(); ++k) {
      frames.insert(frames.end(), ns.snapshots[k].begin(), ns.snapshots[k].end());
      if (ns.snapshot_names.empty()) labels.push_back("step " + std::to_string(ns.snapshot_steps[k]));
    }
    const int n = int(ns.snapshots.size());
    write_png(base + "_chain.png",
              captioned_grid(frames.data(), n, s, std::min(n, s.w >= 2 * s.h ? 4 : 6),
                             "epoch " + std::to_string(epoch) + ": one chain from noise", labels));
  }
}

// Training data as tensors (sharing the Dataset's memory).
struct TensorData {
  torch::Tensor images, labels;
  TensorData(const Dataset& d, const Shape& s)
      : images(torch::from_blob(const_cast<float*>(d.images.data()), {d.size(), s.c, s.h, s.w},
                                torch::kFloat32)),
        labels(
            torch::tensor(std::vector<int64_t>(d.labels.begin(), d.labels.end()), torch::kLong)) {}
};

// Data parallelism: after every step the ranks agree, in one all-reduce, on the global batch's
// metrics (the mean of the ranks' shares, counts summed), on whether any rank's step was unhealthy
// (then every rank rolls back), whether any rank was asked to stop, and whether rank 0's checkpoint
// timer is due. One decision for all, or the ranks' collectives would no longer match.
struct StepAgreement {
  bool stop = false, save = false;
};

StepAgreement agree_on_step(Collective& dist, const TrainingObjective& o, StepMetrics& m, bool stop,
                            bool save_due) {
  const std::vector<std::string> names = o.step_figures(), summed = o.summed_figures();
  std::vector<double> v = {m.loss, m.work, m.healthy ? 0.0 : 1.0, stop ? 1.0 : 0.0,
                           save_due ? 1.0 : 0.0};
  for (const std::string& f : names) v.push_back(m.figures.get(f));
  const torch::Tensor t = torch::tensor(v, torch::kFloat64);
  dist.allreduce_sum(t, "agreeing on the step");
  const double* a = t.data_ptr<double>();
  const double n = dist.size();
  m.loss = a[0] / n;
  m.work = a[1];
  m.rate = m.work / std::max(m.seconds, 1e-9);
  m.healthy = a[2] == 0;
  for (size_t i = 0; i < names.size(); ++i) {
    const bool count = std::find(summed.begin(), summed.end(), names[i]) != summed.end();
    m.figures.set(names[i], count ? a[5 + i] : a[5 + i] / n);
  }
  return {a[3] > 0, a[4] > 0};
}

// Equal only if every rank loaded the same images and labels.
uint64_t data_fingerprint(const Dataset& d) {
  const torch::Tensor images = torch::from_blob(const_cast<float*>(d.images.data()),
                                                {int64_t(d.images.size())}, torch::kFloat32);
  const torch::Tensor labels = torch::from_blob(const_cast<int*>(d.labels.data()),
                                                {int64_t(d.labels.size())}, torch::kInt32);
  return fingerprint({images, labels});
}

// What the model card says about the data.
nlohmann::json dataset_json(const TrainConfig& cfg, const Dataset& data,
                            const DatasetSplit& split) {
  return {{"path", cfg.data},
          {"images", data.size()},
          {"train", split.train.size()},
          {"held_out", split.val.size()},
          {"labels", data.label_names}};
}

}  // namespace

TrainConfig read_run_config(const std::string& dir) {
  const std::string path = dir + "/run.json";
  const std::vector<uint8_t> bytes = read_file(path, 16 << 20);
  try {
    return TrainConfig::from_json(parse_json_text(std::string(bytes.begin(), bytes.end()), path));
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
}

double scheduled_lr(const TrainConfig& cfg, int64_t step, int64_t steps_per_epoch,
                    int64_t rollbacks) {
  double lr = cfg.lr * std::pow(cfg.rollback_lr_factor, double(rollbacks));
  if (cfg.lr_decay_epochs <= 0) return lr;
  const int64_t end = int64_t(cfg.epochs) * steps_per_epoch;
  const int64_t begin = std::max<int64_t>(0, end - int64_t(cfg.lr_decay_epochs) * steps_per_epoch);
  if (step <= begin) return lr;
  if (step >= end) return 0;
  const double t = double(step - begin) / double(end - begin);
  return lr * 0.5 * (1 + std::cos(M_PI * t));
}

namespace {

// One process's training: the whole run, or (with `dist`) one rank's part of it.
RunResult train(const TrainConfig& cfg_in, const RunOptions& opt, Collective* dist) {
  TrainConfig cfg = cfg_in;
  bool resume = opt.resume;
  const bool root = !dist || dist->root();
  if (dist) {
    // Rank 0's configuration is the run's; the others need no run folder, only the data.
    if (root) {
      dist->publish("run", nlohmann::json{{"config", cfg.to_json()}, {"resume", resume}}.dump());
    } else {
      const nlohmann::json j = parse_json_text(dist->fetch("run"), "rank 0's configuration");
      cfg = TrainConfig::from_json(j.at("config"));
      resume = j.at("resume").get<bool>();
      cfg.threads = cfg_in.threads;
      if (!opt.own_data.empty()) cfg.data = opt.own_data;
    }
  }
  const int threads =
      cfg.threads > 0
          ? cfg.threads
          : std::max(1, ThreadPool::hardware_threads() / std::max(1, opt.dist.local_world_size));
  torch::set_num_threads(threads);
  const std::string ckpt = opt.dir + "/checkpoint.pt";
  if (root) {
    ensure_dir(opt.dir);
    // A run killed while writing (checkpoint, CSV, picture) leaves its temporary file; the files
    // themselves are whole. Only temporaries of processes no longer running are removed.
    for (const std::string& name : remove_stale_temporaries(opt.dir))
      std::cerr << "ebm-train: removed " << opt.dir << "/" << name
                << ", left by a run that was killed while writing it\n";
    if (resume && !file_exists(ckpt)) throw Error("cannot resume: " + ckpt + " does not exist");
    if (!resume && file_exists(ckpt))
      throw Error("run folder '" + opt.dir +
                  "' already holds a run (checkpoint.pt); resume it with "
                  "--resume, or choose another folder");
  }

  // Architecture: the stored one when resuming, else the preset (classifier form for classify).
  Architecture arch;
  EnergyForm energy;
  if (cfg.architecture.is_null()) {
    const Preset preset = load_preset(cfg.preset);
    arch = preset.arch;
    energy = preset.energy;
  } else {
    arch = config_architecture(cfg);
    energy = config_energy_form(cfg);
  }
  const Shape image = image_shape(arch, energy);
  const Dataset data = load_training_data(cfg, image);
  const DatasetSplit split = split_training_data(data, cfg);
  std::vector<std::string> labels;
  if (cfg.task == Task::kClassify) {
    for (int l : data.labels)
      if (l < 0)
        throw Error(
            "classifier training needs labelled images: a folder with one sub-folder per "
            "class, or an IDX images file with its labels file; '" +
            cfg.data + "' has unlabelled images");
    labels = data.label_names;
    if (cfg.architecture.is_null()) {
      arch = classifier_architecture(arch, int(labels.size()));
      if (cfg.noise_conditional) {
        // The same layers reading one more channel: the log-sigma plane.
        // (Input widths are inferred again from the wider input.)
        energy.scalar_noise = true;
        nlohmann::json layers = arch.layers_json();
        for (nlohmann::json& l : layers) l.erase("in_channels");
        arch = resolve_architecture(layers_input(image, energy), layers);
      }
    }
  }
  // A multi-grid run's coarser grids: as stored when resuming, else the layers of --grid-presets
  // (or of the run's preset) as written, to be resolved on each grid's input.
  nlohmann::json grids = cfg.architecture.is_object() ? cfg.architecture.value("grids", nlohmann::json())
                                                      : nlohmann::json();
  const bool multigrid = cfg.task == Task::kEnergy && cfg.objective == Objective::kMultigrid;
  if (!cfg.grid_presets.empty() && !multigrid)
    throw Error("--grid-presets gives the coarser grids of --objective multigrid; this run is " +
                std::string(cfg.task == Task::kClassify ? "classify" : objective_name(cfg.objective)));
  if (multigrid && grids.is_null()) {
    if (!cfg.grid_presets.empty() && int(cfg.grid_presets.size()) != kMultigridGrids - 1)
      throw Error("--grid-presets needs " + std::to_string(kMultigridGrids - 1) +
                  " presets, coarsest first, one for each coarser grid (got " +
                  std::to_string(cfg.grid_presets.size()) + ")");
    grids = nlohmann::json::array();
    for (int k = 0; k < kMultigridGrids - 1; ++k)
      grids.push_back(
          load_preset(cfg.grid_presets.empty() ? cfg.preset : cfg.grid_presets[size_t(k)]).layers);
  }
  cfg.architecture = architecture_json(arch, energy);
  if (!grids.is_null()) cfg.architecture["grids"] = grids;
  const int64_t n_train = split.train.size();
  const int64_t steps_per_epoch = n_train / cfg.batch;
  if (steps_per_epoch < 1)
    throw Error("'" + cfg.data + "' gives " + std::to_string(n_train) +
                " training images, fewer than one batch of " + std::to_string(cfg.batch) +
                "; lower --batch or add images");
  if (dist) {
    // Loading takes each machine its own time; then every rank must hold the same images.
    dist->wait_for_all("the training data");
    dist->expect_equal(
        data_fingerprint(data),
        "the training data (" + std::to_string(data.size()) + " images from '" + cfg.data + "')",
        "every process must load the same images (give a rank its own copy's "
        "path with --data)");
  }
  if (root) write_file_atomic(opt.dir + "/run.json", cfg.to_json().dump(2) + "\n");

  RunLog log(root ? opt.dir + "/log.txt" : "");
  const TensorData train_data(split.train, image);
  Trainer tr(cfg, labels, dist);
  TrainCounters& c = tr.counters();
  const Task task = cfg.task;
  const int64_t local_batch = cfg.batch / tr.shard().size;
  if (resume) {
    tr.load(ckpt);
    tr.broadcast_weights();
    tr.summary()["dataset"] = dataset_json(cfg, data, split);
    // Rows past what the checkpoint holds: steps after it, and the validation of an epoch it
    // had not finished (a checkpoint on an epoch's last step comes before that epoch's
    // validation, which the resumed run does again).
    if (root) {
      truncate_metrics(opt.dir + "/metrics.csv", "step", double(c.step));
      truncate_metrics(opt.dir + "/validation.csv", "epoch", double(c.epoch));
    }
    log.event("resumed " + ckpt + " at step " + std::to_string(c.step) + " (" +
              std::to_string(c.step_in_epoch) + " steps into epoch " + std::to_string(c.epoch + 1) +
              "), learning rate " +
              short_number(cfg.lr_decay_epochs > 0
                               ? scheduled_lr(cfg, c.step, steps_per_epoch, c.rollbacks)
                               : tr.lr()) +
              (cfg.lr_decay_epochs > 0 ? " (falling to 0 by epoch " + std::to_string(cfg.epochs) + ")"
                                       : std::string()));
  } else {
    tr.summary()["dataset"] = dataset_json(cfg, data, split);
    if (cfg.init_from.empty()) {
      tr.set_data_mean(train_data.images);
    } else if (root) {  // the other ranks receive the weights below
      // The model's own mean image too: the network starts computing exactly what it did.
      const Model init = load_model(cfg.init_from);
      tr.init_from(init);
      log.event("starting from the weights of " + cfg.init_from);
      // The split follows --seed: another seed holds out images the starting model learned from,
      // and ebm-eval, which takes the split from this run's card, would compare with those.
      const nlohmann::json trained = init.card.value("training", nlohmann::json::object());
      if (trained.contains("seed") && trained["seed"].is_number_unsigned() &&
          trained["seed"].get<uint64_t>() != cfg.seed) {
        const std::string theirs = std::to_string(trained["seed"].get<uint64_t>());
        log.event("note: " + cfg.init_from + " held out its images with --seed " + theirs +
                  "; this run (--seed " + std::to_string(cfg.seed) +
                  ") holds out others, which that model trained on, so the validation loss and "
                  "ebm-eval's held-out comparisons read them; pass --seed " + theirs +
                  " to keep its held-out set");
      }
    }
    tr.broadcast_weights();
    tr.save(ckpt);  // step 0: the guard always has a checkpoint to roll back to
    if (dist) dist->wait_for_all("rank 0's first checkpoint");
    log.event(std::string("started ") + task_name(task) + " training of " + cfg.preset + " (" +
              std::to_string(arch.parameter_count()) + " parameters, input " + image.str() +
              ") on '" + cfg.data + "'");
  }
  log.event(std::to_string(n_train) + " training images, " + std::to_string(split.val.size()) +
            " held out; batch " + std::to_string(cfg.batch) + ", " +
            std::to_string(steps_per_epoch) + " steps per epoch, to epoch " +
            std::to_string(cfg.epochs) + ", " + std::to_string(threads) + " threads" +
            (cfg.device == "cpu" ? std::string() : ", on " + cfg.device));
  if (dist) {
    const GradientAverager& avg = *tr.averager();
    const double alone = dist->time_allreduce(avg.numel());
    log.event("data parallel: " + std::to_string(dist->size()) + " processes (rank 0 at " +
              opt.dist.master_addr + ":" + std::to_string(opt.dist.master_port) +
              "), each taking " + std::to_string(local_batch) + " images of every batch; " +
              "gradients averaged by Gloo all-reduce in " + std::to_string(avg.buckets()) +
              (avg.buckets() == 1 ? " bucket (" : " buckets (") +
              short_number(double(avg.numel()) * 4 / 1e6, 3) + " MB, " +
              short_number(alone * 1e3, 3) + " ms alone); a dead or stalled rank stops the run " +
              "within " + short_number(opt.dist.timeout_s) + " s");
  }

  auto open_csv = [&] {
    return std::make_unique<MetricsCsv>(opt.dir + "/metrics.csv", step_columns(tr.objective()));
  };
  // The CSVs, like every file of the run, are rank 0's.
  std::unique_ptr<MetricsCsv> step_csv = root ? open_csv() : nullptr;
  std::unique_ptr<MetricsCsv> val_csv =
      root ? std::make_unique<MetricsCsv>(opt.dir + "/validation.csv", val_columns(tr.objective()))
           : nullptr;
  const bool progress = opt.progress && root;

  const auto session_start = Clock::now();
  double wall_base = c.wall_seconds;
  auto last_save = Clock::now();
  bool inject_pending = cfg.inject_nan_step >= 0;
  bool drift_pending = cfg.inject_drift_step >= 0 && dist && dist->rank() == dist->size() - 1;
  auto save = [&](const std::string& why) {
    c.wall_seconds = wall_base + seconds_since(session_start);
    tr.save(ckpt);
    // The others wait for rank 0's write here, where no collective's timeout runs.
    if (dist) dist->wait_for_all("rank 0's checkpoint");
    last_save = Clock::now();
    log.event("checkpoint at step " + std::to_string(c.step) + " (" + why + ")", false);
  };

  // The divergence guard: back to the last checkpoint with a lower learning rate.
  auto rollback = [&](const StepMetrics& m) {
    const int64_t bad_step = c.step;
    std::string what = "loss " + short_number(m.loss);
    for (const auto& [name, value] : m.figures.items())
      if (name == "real" || name == "fake") what += ", " + name + " " + short_number(value);
    if (!std::isfinite(m.loss)) what += " (non-finite)";
    if (!m.diagnosis.empty()) what += " (" + m.diagnosis + ")";
    const int64_t tries = c.rollbacks + 1;
    if (tries > cfg.max_rollbacks) {
      log.event("diverged at step " + std::to_string(bad_step) + " (" + what + "); giving up");
      throw Error("training diverged at step " + std::to_string(bad_step) + " (" + what +
                  ") after " + std::to_string(cfg.max_rollbacks) +
                  " rollbacks with lower learning rates (--max-rollbacks); the last good "
                  "checkpoint is " +
                  ckpt +
                  ". Try a lower --lr, --spectral-norm, "
                  "--clip-grad-norm or a smaller --step-size");
    }
    const double wall = wall_base + seconds_since(session_start);
    const double old_lr = tr.lr(), new_lr = old_lr * cfg.rollback_lr_factor;
    tr.load(ckpt);
    c.rollbacks = tries;
    c.wall_seconds = wall;
    wall_base = wall - seconds_since(session_start);
    tr.set_lr(new_lr);
    tr.reseed(cfg.seed + 0x5851f42d4c957f2dull * uint64_t(tries));
    if (root) {
      step_csv.reset();
      truncate_metrics(opt.dir + "/metrics.csv", "step", double(c.step));
      step_csv = open_csv();
    }
    log.event("divergence at step " + std::to_string(bad_step) + " (" + what +
              "): rolled back to step " + std::to_string(c.step) + ", learning rate " +
              short_number(old_lr) + " -> " + short_number(new_lr) + " (rollback " + std::to_string(tries) + " of " +
              std::to_string(cfg.max_rollbacks) + ")");
    save("after rollback");
  };

  // Under data parallelism a stop is acted on when every rank has agreed on it, after a step.
  bool agreed_stop = false, agreed_save = false;
  // Data parallelism: how long rank 0 waited for the gradient all-reduce after its backward pass
  // (what the overlap did not hide, and slower ranks), per step since the last report.
  double waited_base = 0;
  int64_t waited_steps = 0;
  auto log_allreduce_wait = [&](const std::string& when) {
    const GradientAverager* avg = tr.averager();
    if (!avg || avg->steps() == waited_steps) return;
    const double ms =
        (avg->exposed_seconds() - waited_base) / double(avg->steps() - waited_steps) * 1e3;
    waited_base = avg->exposed_seconds();
    waited_steps = avg->steps();
    log.event(when + ": rank 0 waited " + short_number(ms, 3) +
              " ms a step for the gradient all-reduce after its backward pass");
  };
  auto stop_requested = [&] { return dist ? agreed_stop : opt.stop && opt.stop->load(); };
  while (c.epoch < cfg.epochs) {
    const std::vector<int64_t> order = epoch_order(n_train, cfg.seed, c.epoch);
    ProgressBar bar("epoch " + std::to_string(c.epoch + 1) + "/" + std::to_string(cfg.epochs),
                    steps_per_epoch, "step");
    EpochMeans means;
    bool rolled_back = false;
    while (c.step_in_epoch < steps_per_epoch) {
      if (cfg.max_steps > 0 && c.step >= cfg.max_steps) {
        save("step limit");
        log_allreduce_wait("steps to " + std::to_string(c.step));
        log.event("stopped at the step limit " + std::to_string(cfg.max_steps));
        return RunResult::kStepLimit;
      }
      if (stop_requested()) {
        save("interrupted");
        log.event("interrupted at step " + std::to_string(c.step) + "; checkpoint saved");
        return RunResult::kInterrupted;
      }
      // This rank's slice of the global batch (all of it for a single process).
      const torch::Tensor idx =
          torch::from_blob(const_cast<int64_t*>(order.data()) + c.step_in_epoch * cfg.batch +
                               tr.shard().rank * local_batch,
                           {local_batch}, torch::kLong);
      const torch::Tensor real = train_data.images.index_select(0, idx);
      const torch::Tensor lab = train_data.labels.index_select(0, idx);
      if (inject_pending && c.step == cfg.inject_nan_step) {
        inject_pending = false;
        torch::NoGradGuard no_grad;
        tr.net()->parameters().front().view(-1)[0].fill_(NAN);
        log.event("injected a NaN into the first weight before step " + std::to_string(c.step));
      }
      if (drift_pending && c.step == cfg.inject_drift_step) {
        drift_pending = false;
        torch::NoGradGuard no_grad;
        tr.net()->parameters().front().view(-1)[0].add_(1e-3);
        std::cerr << "ebm-train: " << dist->describe() << ": nudged the first weight before step "
                  << c.step << " (--inject-drift)\n";
      }
      if (cfg.lr_decay_epochs > 0) tr.set_lr(scheduled_lr(cfg, c.step, steps_per_epoch, c.rollbacks));
      // Ranks stop only between steps, all at once: a step cut short on one rank would leave the
      // others waiting in its gradient all-reduce.
      std::optional<StepMetrics> m = tr.step(real, lab, dist ? nullptr : opt.stop);
      if (!m) {
        save("interrupted");
        log.event("interrupted during step " + std::to_string(c.step + 1) +
                  "; the unfinished step was discarded and the checkpoint saved");
        return RunResult::kInterrupted;
      }
      if (dist) {
        const StepAgreement a =
            agree_on_step(*dist, tr.objective(), *m, opt.stop && opt.stop->load(),
                          root && seconds_since(last_save) >= cfg.checkpoint_minutes * 60);
        agreed_stop = a.stop;
        agreed_save = a.save;
      }
      if (!m->healthy) {
        rollback(*m);
        rolled_back = true;
        break;
      }
      if (root) step_csv->append(step_row(tr.objective(), c.step, c.epoch, *m));
      means.add(tr.objective(), *m);
      if (progress) {
        const std::string rate = short_number(m->rate, 4) + " " + tr.objective().rate_unit();
        const std::string what = tr.objective().progress(*m);
        bar.update(c.step_in_epoch, what + " | " + rate);
      }
      if (dist ? agreed_save : seconds_since(last_save) >= cfg.checkpoint_minutes * 60)
        save("timer");
    }
    if (rolled_back) continue;
    if (progress) bar.finish();

    // Validation and pictures are rank 0's (the others wait for it in wait_for_all).
    const int64_t epoch = c.epoch + 1;
    if (root) {
      const Figures v = tr.validate(split.val, cfg.seed * 31 + uint64_t(c.epoch));
      std::vector<double> row = {double(epoch), double(c.step)};
      for (const std::string& f : tr.objective().validation_figures()) row.push_back(v.get(f));
      val_csv->append(row);
      tr.summary()["epoch"] = epoch;
      tr.summary()["train"] = means.json(tr.objective());
      tr.summary()["validation"] = tr.objective().validation_json(v);
      log.event("epoch " + std::to_string(epoch) + ": validation " + tr.objective().describe(v));
      log_allreduce_wait("epoch " + std::to_string(epoch));
    }
    ++c.epoch;
    c.step_in_epoch = 0;
    if (root) write_epoch_pictures(tr, opt.dir, threads, opt.stop);
    if (dist) {
      dist->wait_for_all("rank 0's validation and pictures of epoch " + std::to_string(epoch));
      // Checked before the checkpoint, so the last one on disk predates any drift.
      dist->expect_equal(tr.weights_fingerprint(),
                         "the weights at the end of epoch " + std::to_string(epoch),
                         "the ranks no longer train the same model (a bug, or hardware that "
                         "computes differently); resume from the last checkpoint");
    }
    save("epoch " + std::to_string(epoch));
  }
  log.event("finished " + std::to_string(c.epoch) + " epochs, " + std::to_string(c.step) +
            " steps, " + format_duration(c.wall_seconds));
  return RunResult::kFinished;
}

}  // namespace

RunResult run_training(const TrainConfig& cfg, const RunOptions& opt) {
  if (!opt.dist.distributed()) return train(cfg, opt, nullptr);
  Collective dist(opt.dist);
  try {
    const RunResult r = train(cfg, opt, &dist);
    dist.finish();
    return r;
  } catch (const PeerFailure& e) {
    const std::string ckpt = opt.dir + "/checkpoint.pt";
    if (dist.root()) {
      RunLog(opt.dir + "/log.txt").event(std::string("stopped: ") + e.what(), false);
      throw PeerFailure(std::string(e.what()) + ". The last checkpoint, " + ckpt +
                        ", is whole: start every process again with --resume");
    }
    throw PeerFailure(std::string(e.what()) +
                      ". Rank 0's last checkpoint is whole: start every process again with "
                      "--resume");
  }
}

}  // namespace ebm::train
