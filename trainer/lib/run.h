// A training run in a folder: epochs of steps with a progress bar, metrics appended to CSV, the
// pictures a person judges a run by, checkpoints (every N minutes, every epoch, on interrupt) and
// the divergence guard (roll back to the last checkpoint, lower the learning rate, continue).
//
// The run folder:
//   run.json              the configuration (with the resolved architecture)
//   log.txt               events: start, resume, checkpoints, rollbacks, interrupts
//   metrics.csv           one row per step; validation.csv: one row per epoch
//   curves.png            the curves so far (the paper's Fig. 4), redrawn every epoch
//   epoch_NNN_buffer.png  the newest replay-buffer images
//   epoch_NNN_samples.png fresh samples from noise (runtime Langevin, cfg.sample_steps steps)
//   epoch_NNN_chain.png   one of those chains from noise to image (the paper's Fig. 5)
//   checkpoint.pt         the latest checkpoint (checkpoint.h)
#pragma once

#include <atomic>
#include <string>

#include "config.h"
#include "distributed.h"

namespace ebm::train {

struct RunOptions {
  std::string dir;                          // the run folder (created if missing)
  bool resume = false;                      // continue from dir/checkpoint.pt with dir/run.json
  const std::atomic<bool>* stop = nullptr;  // raised by SIGINT: checkpoint and return
  bool progress = true;                     // progress bar on stderr
  // Data parallelism (distributed.h): this process's place in the run; world size 1 is the
  // single-process trainer. Ranks other than 0 take rank 0's configuration and `resume`, keeping
  // only their own cfg.threads and, where given, their own path to the same training data.
  DistOptions dist;
  std::string own_data;
};

enum class RunResult { kFinished, kStepLimit, kInterrupted };

// Runs (or resumes) training to cfg.epochs. On resume, `cfg` carries only the settings a resumed
// run may change (epochs, max_steps, threads, checkpoint_minutes); the rest come from run.json.
// Throws ebm::Error when the guard gives up, naming what diverged and the tries made; under data
// parallelism, PeerFailure when another rank died or stalled (the process should end at once).
// With cfg.threads 0, every core of the machine shared by its LOCAL_WORLD_SIZE processes.
RunResult run_training(const TrainConfig& cfg, const RunOptions& opt);

// The learning rate of optimizer step `step` (counted from 0): cfg.lr, times
// cfg.rollback_lr_factor for each rollback so far, times the half-cosine decay of the last
// cfg.lr_decay_epochs epochs (1 before them, 0 at step epochs * steps_per_epoch).
double scheduled_lr(const TrainConfig& cfg, int64_t step, int64_t steps_per_epoch,
                    int64_t rollbacks);

// Reads dir/run.json.
TrainConfig read_run_config(const std::string& dir);

}  // namespace ebm::train
