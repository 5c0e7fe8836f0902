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

void Network::reserve(Workspace& ws, int n) const {
  if (n <= ws.capacity) return;
  size_t total = 0, widest = size_t(arch_.input.size()), scratch = 0;
  ws.act_offset.clear();
  for (const auto& l : layers_) {
    ws.act_offset.push_back(total);
    total += size_t(n) * size_t(l->spec().out.size());
    widest = std::max(widest, size_t(l->spec().out.size()));
    scratch = std::max(scratch, l->scratch_floats(n));
  }
  ws.acts.assign(total, 0.0f);
  ws.grad_a.assign(size_t(n) * widest, 0.0f);
  ws.grad_b.assign(size_t(n) * widest, 0.0f);
  ws.scratch.assign(std::max<size_t>(scratch, 1), 0.0f);
  ws.capacity = n;
}

void Network::forward(Workspace& ws, const float* x, int n, size_t count) const {
  if (n < 1) throw Error("batch size must be at least 1, got " + std::to_string(n));
  reserve(ws, n);
  const float* cur = x;
  for (size_t i = 0; i < count; ++i) {
    float* out = ws.acts.data() + ws.act_offset[i];
    layers_[i]->forward(cur, out, n, ws.scratch.data());
    cur = out;
  }
}

void Network::energy(Workspace& ws, const float* x, int n, float* e) const {
  if (kind_ != ModelKind::kEnergy) throw Error("energy() needs an energy model; this is a classifier");
  forward(ws, x, n, layers_.size());
  std::memcpy(e, ws.acts.data() + ws.act_offset.back(), sizeof(float) * size_t(n));
}

void Network::energy_and_input_grad(Workspace& ws, const float* x, int n, float* e,
                                    float* grad) const {
  if (kind_ != ModelKind::kEnergy)
    throw Error("energy_and_input_grad() needs an energy model; this is a classifier");
  forward(ws, x, n, layers_.size());
  std::memcpy(e, ws.acts.data() + ws.act_offset.back(), sizeof(float) * size_t(n));
  // dE/d(output) = 1 for every image; walk back, ping-ponging between two buffers, and write the
  // last step (the first layer) straight into `grad`.
  float* dy = ws.grad_a.data();
  float* dx = ws.grad_b.data();
  std::fill(dy, dy + n, 1.0f);
  for (size_t i = layers_.size(); i-- > 0;) {
    const float* in = i == 0 ? x : ws.acts.data() + ws.act_offset[i - 1];
    const float* out = ws.acts.data() + ws.act_offset[i];
    float* target = i == 0 ? grad : dx;
    layers_[i]->backward_input(in, out, dy, target, n, ws.scratch.data());
    std::swap(dy, dx);
  }
}

void Network::logits(Workspace& ws, const float* x, int n, float* out) const {
  forward(ws, x, n, layers_.size());
  std::memcpy(out, ws.acts.data() + ws.act_offset.back(),
              sizeof(float) * size_t(n) * size_t(outputs()));
}

void Network::features(Workspace& ws, const float* x, int n, float* out) const {
  const size_t k = layers_.size() - 1;
  if (k == 0) {
    std::memcpy(out, x, sizeof(float) * size_t(n) * size_t(input_size()));
    return;
  }
  forward(ws, x, n, k);
  std::memcpy(out, ws.acts.data() + ws.act_offset[k - 1],
              sizeof(float) * size_t(n) * size_t(feature_size()));
}

}  // namespace ebm
