#include "replay_buffer.h"

#include "ebm/error.h"

namespace ebm::train {

namespace {

torch::Tensor uniform_noise(int64_t n, const Shape& s, at::Generator& gen) {
  return torch::rand({n, s.c, s.h, s.w}, gen, torch::kFloat32) * 2.0 - 1.0;
}

}  // namespace

ReplayBuffer::ReplayBuffer(int64_t capacity, const Shape& shape)
    : capacity_(capacity), shape_(shape) {
  if (capacity < 1) throw Error("replay buffer capacity must be at least 1");
  storage_ = torch::zeros({capacity, shape.c, shape.h, shape.w}, torch::kFloat32);
}

void ReplayBuffer::reset_uniform(int64_t count, at::Generator& gen) {
  head_ = 0;
  size_ = 0;
  push_front(uniform_noise(count, shape_, gen));
}

torch::Tensor ReplayBuffer::draw(int64_t batch, double fresh, at::Generator& gen,
                                 int64_t* n_new) const {
  if (size_ < 1) throw Error("the replay buffer is empty");
  const int64_t k = torch::rand({batch}, gen, torch::kFloat64).lt(fresh).sum().item<int64_t>();
  if (n_new) *n_new = k;
  torch::Tensor out = torch::empty({batch, shape_.c, shape_.h, shape_.w}, torch::kFloat32);
  if (k > 0) out.narrow(0, 0, k).copy_(uniform_noise(k, shape_, gen));
  if (batch > k) {
    const torch::Tensor idx = torch::randint(0, size_, {batch - k}, gen, torch::kLong);
    const torch::Tensor slots = (idx + head_).remainder(capacity_);
    out.narrow(0, k, batch - k).copy_(storage_.index_select(0, slots));
  }
  return out;
}

void ReplayBuffer::push_front(const torch::Tensor& images) {
  if (images.dim() != 4 || images.size(1) != shape_.c || images.size(2) != shape_.h ||
      images.size(3) != shape_.w)
    throw Error("replay buffer holds " + shape_.str() + " images, got " + c10::str(images.sizes()));
  // Only the newest `capacity` of a batch larger than the buffer can survive.
  const int64_t n = std::min(images.size(0), capacity_);
  const torch::Tensor src = images.narrow(0, 0, n).to(torch::kFloat32);
  head_ = ((head_ - n) % capacity_ + capacity_) % capacity_;
  // The new images occupy slots head_ .. head_ + n - 1 (mod capacity), possibly wrapping.
  const int64_t first = std::min(n, capacity_ - head_);
  storage_.narrow(0, head_, first).copy_(src.narrow(0, 0, first));
  if (n > first) storage_.narrow(0, 0, n - first).copy_(src.narrow(0, first, n - first));
  size_ = std::min(size_ + n, capacity_);
}

torch::Tensor ReplayBuffer::at(int64_t i) const {
  if (i < 0 || i >= size_) throw Error("replay buffer index out of range");
  return storage_[slot(i)];
}

torch::Tensor ReplayBuffer::newest(int64_t n) const {
  n = std::min(n, size_);
  const torch::Tensor slots = (torch::arange(n, torch::kLong) + head_).remainder(capacity_);
  return storage_.index_select(0, slots);
}

void ReplayBuffer::restore(const torch::Tensor& ordered) {
  if (ordered.size(0) > capacity_)
    throw Error("saved replay buffer holds " + std::to_string(ordered.size(0)) +
                " images, more than the capacity " + std::to_string(capacity_));
  head_ = 0;
  size_ = 0;
  if (ordered.size(0) > 0) push_front(ordered);
}

}  // namespace ebm::train
