#include "ebm/network.h"

#include <algorithm>
#include <cstring>

#include "ebm/error.h"

namespace ebm {

Network::Network(const Model& model) {
  const Model folded = fold_normalization(model);
  kind_ = folded.kind;
  labels_ = folded.labels;
  arch_ = folded.arch;
  sampler_ = folded.sampler;
  card_ = folded.card;
  for (const LayerSpec& l : arch_.layers) layers_.push_back(make_layer(l, folded));
}

Network Network::from_bytes(const uint8_t* bytes, size_t size) {
  return Network(parse_model(bytes, size));
}

Network Network::from_file(const std::string& path) { return Network(load_model(path)); }

Network::Network(Network&&) noexcept = default;
Network& Network::operator=(Network&&) noexcept = default;
Network::~Network() = default;

int Network::feature_size() const { return layers_.back()->spec().in.c; }

void Network::reserve(int n) {
  if (n <= capacity_) return;
  size_t total = 0, widest = size_t(arch_.input.size()), scratch = 0;
  act_offset_.clear();
  for (const auto& l : layers_) {
    act_offset_.push_back(total);
    total += size_t(n) * size_t(l->spec().out.size());
    widest = std::max(widest, size_t(l->spec().out.size()));
    scratch = std::max(scratch, l->scratch_floats(n));
  }
  acts_.assign(total, 0.0f);
  grad_a_.assign(size_t(n) * widest, 0.0f);
  grad_b_.assign(size_t(n) * widest, 0.0f);
  scratch_.assign(std::max<size_t>(scratch, 1), 0.0f);
  capacity_ = n;
}

void Network::forward(const float* x, int n, size_t count) {
  if (n < 1) throw Error("batch size must be at least 1, got " + std::to_string(n));
  reserve(n);
  const float* cur = x;
  for (size_t i = 0; i < count; ++i) {
    float* out = acts_.data() + act_offset_[i];
    layers_[i]->forward(cur, out, n, scratch_.data());
    cur = out;
  }
}

void Network::energy(const float* x, int n, float* e) {
  if (kind_ != ModelKind::kEnergy) throw Error("energy() needs an energy model; this is a classifier");
  forward(x, n, layers_.size());
  std::memcpy(e, acts_.data() + act_offset_.back(), sizeof(float) * size_t(n));
}

void Network::energy_and_input_grad(const float* x, int n, float* e, float* grad) {
  if (kind_ != ModelKind::kEnergy)
    throw Error("energy_and_input_grad() needs an energy model; this is a classifier");
  forward(x, n, layers_.size());
  std::memcpy(e, acts_.data() + act_offset_.back(), sizeof(float) * size_t(n));
  // dE/d(output) = 1 for every image; walk back, ping-ponging between two buffers, and write the
  // last step (the first layer) straight into `grad`.
  float* dy = grad_a_.data();
  float* dx = grad_b_.data();
  std::fill(dy, dy + n, 1.0f);
  for (size_t i = layers_.size(); i-- > 0;) {
    const float* in = i == 0 ? x : acts_.data() + act_offset_[i - 1];
    const float* out = acts_.data() + act_offset_[i];
    float* target = i == 0 ? grad : dx;
    layers_[i]->backward_input(in, out, dy, target, n, scratch_.data());
    std::swap(dy, dx);
  }
}

void Network::logits(const float* x, int n, float* out) {
  forward(x, n, layers_.size());
  std::memcpy(out, acts_.data() + act_offset_.back(), sizeof(float) * size_t(n) * size_t(outputs()));
}

void Network::features(const float* x, int n, float* out) {
  const size_t k = layers_.size() - 1;
  if (k == 0) {
    std::memcpy(out, x, sizeof(float) * size_t(n) * size_t(input_size()));
    return;
  }
  forward(x, n, k);
  std::memcpy(out, acts_.data() + act_offset_[k - 1], sizeof(float) * size_t(n) * size_t(feature_size()));
}

}  // namespace ebm
