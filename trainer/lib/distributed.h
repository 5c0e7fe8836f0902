// Data-parallel training on PyTorch's own distributed engine (SPEC section 5): c10d's TCPStore for
// the rendezvous and ProcessGroupGloo for the collectives, both in Debian's LibTorch. N processes
// (on one machine or several) run the same ebm-train command, told apart by the variables torchrun
// and Slurm wrappers set (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) or the flags of those names.
//
// What each rank does (run.cpp, trainer.cpp, objective.cpp):
//   - it takes batch / N images of every global batch: the epoch order is the same everywhere and
//     rank r takes the r-th slice, so --batch means the same training at any world size;
//   - it averages its gradient with the others' (GradientAverager: buckets of about 256 KiB,
//     each all-reduced as soon as the backward pass has produced it, while the rest still runs);
//   - it starts from rank 0's weights (broadcast) and checks at every epoch that they are still
//     bitwise equal everywhere (a fingerprint gathered from every rank);
//   - after every step it agrees with the others in one small all-reduce on the global batch's
//     metrics, on whether any rank's step was unhealthy (then the divergence guard rolls back
//     everywhere), on a stop asked of any rank, and on rank 0's checkpoint timer.
// Rank 0 alone owns the run folder (run.json, log, metrics, pictures, checkpoints); the others
// take its configuration through the store and need only the training data.
//
// Faults: every rank runs a watchdog thread that beats a counter in the store four times a second
// and reads the others'. A collective that fails (a peer's connection closed, or Gloo's timeout
// of --dist-timeout seconds passed) is explained by the beats: the rank whose beats stopped is
// named; rank 0's store not answering names rank 0. Waits for rank 0's solo work (validation,
// pictures, checkpoint writes) have no fixed limit: they last as long as every rank keeps beating,
// and end within --dist-timeout seconds of one that stops. The beats come from the watchdog, not
// the training thread: a process that lives but whose training thread hangs is caught by Gloo's
// timeout at its next collective, but not while the others wait for it in wait_for_all (only the
// data loading and rank 0's solo work are waited for that way).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ebm/error.h"

namespace ebm::train {

// This process's place in a run. world_size 1 is the single-process trainer (no c10d at all).
struct DistOptions {
  int rank = 0, world_size = 1;
  int local_rank = 0, local_world_size = 1;  // processes on this machine (threads are split)
  std::string master_addr;                   // rank 0's address, as the others reach it
  int master_port = 0;                       // rank 0's store listens here
  double timeout_s = 60;  // a dead or stalled rank stops the others within this (plus ~2 s)
  bool distributed() const { return world_size > 1; }
};

// A setting's value and where it came from ("--rank" or "RANK"), for error messages.
struct DistSetting {
  std::string value, source;
};

// Reads RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, LOCAL_RANK and LOCAL_WORLD_SIZE through
// `lookup` (a flag's value where the command line gave one, else the environment's, else none).
// Throws ebm::Error naming the bad input and the fix: RANK without WORLD_SIZE, a port that is not
// a number, a rank outside 0..WORLD_SIZE-1, a missing MASTER_ADDR.
DistOptions parse_dist_options(
    const std::function<std::optional<DistSetting>(const std::string& name)>& lookup,
    double timeout_s);

// A peer rank died, stalled or cannot be reached. The process should end at once after reporting
// it (threads may still be blocked on the peer's sockets).
class PeerFailure : public Error {
 public:
  using Error::Error;
};

// This process's membership of a data-parallel run. Every collective must be called by every rank
// in the same order; each throws PeerFailure naming the rank at fault.
class Collective {
 public:
  // Joins the run: rank 0 serves the store at MASTER_ADDR:MASTER_PORT; every rank waits for the
  // others (reporting who is missing every 30 s, giving up after 15 minutes), checks that they
  // agree on WORLD_SIZE and that no rank is taken twice, then Gloo connects them all.
  explicit Collective(const DistOptions& o);
  ~Collective();
  Collective(const Collective&) = delete;
  Collective& operator=(const Collective&) = delete;

  int rank() const { return opt_.rank; }
  int size() const { return opt_.world_size; }
  bool root() const { return opt_.rank == 0; }
  const DistOptions& options() const { return opt_; }
  std::string describe() const;  // "rank 1 of 2"

  // Text rank 0 publishes (the run configuration) and the others read (waiting for it).
  void publish(const std::string& key, const std::string& value);
  std::string fetch(const std::string& key);

  // Rank 0's tensors to every rank, in place (same shapes everywhere).
  void broadcast(std::vector<torch::Tensor> tensors, const std::string& what);
  // Rank 0's bytes to every rank (the others' argument is ignored).
  std::vector<uint8_t> broadcast_bytes(std::vector<uint8_t> bytes, const std::string& what);
  // The element-wise sum over ranks, in place (float64).
  void allreduce_sum(torch::Tensor t, const std::string& what);
  // Every rank's tensor, on rank 0 (any shape, any dtype the same everywhere); the others get an
  // empty vector.
  std::vector<torch::Tensor> gather(const torch::Tensor& t, const std::string& what);
  // Throws ebm::Error unless every rank passes the same value: "<what>: rank 1 differs from
  // rank 0 (fingerprints); <fix>".
  void expect_equal(uint64_t fingerprint, const std::string& what, const std::string& fix);

  // Waits until every rank has reached this point, for as long as every rank keeps beating (rank
  // 0's validation, pictures and checkpoint writes may take minutes).
  void wait_for_all(const std::string& what);

  // Seconds one all-reduce of `numel` floats takes, alone (the median of five, after one to warm
  // up): the communication cost of a step when nothing overlaps it.
  double time_allreduce(int64_t numel);

  // The last collective of a run: after it no rank touches the store, so rank 0 may take it down.
  void finish();

 private:
  friend class GradientAverager;
  struct Impl;
  DistOptions opt_;
  std::unique_ptr<Impl> impl_;
};

// The gradient all-reduce of a step. Hooks on the parameters copy each gradient into its bucket
// as the backward pass produces it; a full bucket is all-reduced at once (buckets leave in one
// fixed order on every rank, as c10d requires), so communication overlaps the rest of the
// backward pass. finish() waits for the last bucket and leaves the mean over ranks in .grad.
class GradientAverager {
 public:
  GradientAverager(Collective& c, const std::vector<torch::Tensor>& params);
  ~GradientAverager();
  GradientAverager(const GradientAverager&) = delete;
  GradientAverager& operator=(const GradientAverager&) = delete;

  void begin();   // before loss.backward()
  void finish();  // after it

  size_t buckets() const;
  int64_t numel() const;           // gradient elements all-reduced per step
  double exposed_seconds() const;  // time spent in finish() waiting for buckets, in all
  int64_t steps() const;           // finish() calls, in all

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// FNV-1a over the bytes of tensors (contiguous copies): equal on two ranks only if every element
// is bitwise equal.
uint64_t fingerprint(const std::vector<torch::Tensor>& tensors, uint64_t h = 0xcbf29ce484222325ull);

}  // namespace ebm::train
