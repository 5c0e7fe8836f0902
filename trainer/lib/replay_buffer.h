// The replay buffer of the book's Example 7-5 (SPEC section 1): it starts as one batch of uniform
// noise; each training batch takes n_new ~ Binomial(B, fresh) new uniform-noise images followed by
// B - n_new images drawn uniformly, with replacement, from the buffer; after Langevin the batch is
// prepended and the buffer truncated to its capacity (the oldest images fall off the end).
//
// Stored as a ring of `capacity` images so that prepending costs a copy of B images, not of the
// whole buffer; index 0 is always the newest image.
#pragma once

#include <torch/torch.h>

#include <cstdint>

#include "ebm/architecture.h"

namespace ebm::train {

class ReplayBuffer {
 public:
  ReplayBuffer(int64_t capacity, const Shape& shape);

  int64_t capacity() const { return capacity_; }
  int64_t size() const { return size_; }

  // Empties the buffer and fills it with `count` images of uniform noise in [-1, 1).
  void reset_uniform(int64_t count, at::Generator& gen);

  // The starting points of a training batch: n_new fresh uniform-noise images, then batch - n_new
  // buffer images. n_new is the number of `batch` uniform draws below `fresh` (Binomial).
  torch::Tensor draw(int64_t batch, double fresh, at::Generator& gen,
                     int64_t* n_new = nullptr) const;

  // Prepends images ([n, C, H, W]; images[0] becomes index 0) and truncates to the capacity.
  void push_front(const torch::Tensor& images);

  // Image i (0 = newest), and the first n images newest first as one [n, C, H, W] tensor.
  torch::Tensor at(int64_t i) const;
  torch::Tensor newest(int64_t n) const;
  torch::Tensor ordered() const { return newest(size_); }  // what a checkpoint stores
  void restore(const torch::Tensor& ordered);

 private:
  int64_t slot(int64_t i) const { return (head_ + i) % capacity_; }
  int64_t capacity_;
  Shape shape_;
  torch::Tensor storage_;  // [capacity, C, H, W]
  int64_t head_ = 0, size_ = 0;
};

}  // namespace ebm::train
