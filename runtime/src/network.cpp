#include "ebm/network.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "activation_plan.h"
#include "ebm/error.h"

namespace ebm {

Network::Network(const Model& model) {
  const Model folded = fold_normalization(model);
  kind_ = folded.kind;
  labels_ = folded.labels;
  arch_ = folded.arch;
  image_ = folded.image_shape();
  energy_ = folded.energy;
  if (energy_.denoiser) mean_ = folded.tensor(kEnergyMeanTensor).data;
  sampler_ = folded.sampler;
  card_ = folded.card;
  if (model.autoguide) autoguide_ = std::make_shared<const Network>(*model.autoguide);
  for (const LayerSpec& l : arch_.layers) layers_.push_back(make_layer(l, folded));
  plan_activations();
  set_slice_images(0);
}

void Network::plan_activations() {
  // An output lives to the end of a call where the backward pass reads it (its own layer's, or a
  // reader's as its input) or it is the network's result; else to the forward pass of its last
  // reader. The paper network's swish outputs, read only by the next convolution's forward pass,
  // take turns in one buffer natively: 8 images' activations take 6.6 MB instead of 8.7, a step
  // at batch 8 0.98x the time, the shipped U-Net's at 4 0.94x (bench/README.md).
  const size_t count = layers_.size();
  std::vector<OutputLife> lives(count);
  for (size_t k = 0; k < count; ++k) {
    const bool kept = k + 1 == count || layers_[k]->backward_reads_output();
    lives[k] = {size_t(layers_[k]->spec().out.size()), k, kept ? count : k};
  }
  for (size_t i = 0; i < count; ++i) {
    const LayerSpec& s = layers_[i]->spec();
    auto reads = [&](int k, bool in_backward) {
      if (k == kNetworkInput) return;
      size_t& last = lives[size_t(k)].last;
      last = std::max(last, in_backward ? count : i);
    };
    reads(s.from, layers_[i]->backward_reads_input());
    if (s.kind == LayerKind::kAdd) reads(s.skip, false);  // added; its gradient is dy itself
  }
  act_floats_ = plan_outputs(lives, &act_plan_);
}

void Network::set_slice_images(int n) {
  if (n < 0) throw Error("a slice must be >= 1 image (0 = automatic), got " + std::to_string(n));
  slice_ = n > 0 ? n : most_images_that_fit(kSliceMostImages, [&](int k) {
    return workspace_bytes(k) <= kSliceBudgetBytes;
  });
}

template <class F>
void Network::in_slices(int n, F f) const {
  if (n < 1) throw Error("batch size must be at least 1, got " + std::to_string(n));
  for (int b0 = 0; b0 < n; b0 += slice_) f(b0, std::min(slice_, n - b0));
}

Network Network::from_bytes(const uint8_t* bytes, size_t size) {
  return Network(parse_model(bytes, size));
}

Network Network::from_file(const std::string& path) { return Network(load_model(path)); }

Network::Network(Network&&) noexcept = default;
Network& Network::operator=(Network&&) noexcept = default;
Network::~Network() = default;

int Network::feature_size() const { return layers_.back()->spec().in.c; }

// The sizes of a workspace for n images, in floats; reserve() allocates them.
struct Network::WorkspaceSizes {
  size_t acts = 0, grads = 0, tmp = 0, scratch = 1, input = 0, widest = 0;
  size_t total() const { return acts + grads + tmp + scratch + 2 * input; }
};

Network::WorkspaceSizes Network::workspace_sizes(int n) const {
  WorkspaceSizes z;
  z.widest = size_t(arch_.input.size());
  z.acts = size_t(n) * act_floats_;
  for (const auto& l : layers_) {
    z.widest = std::max(z.widest, size_t(l->spec().out.size()));
    z.scratch = std::max(z.scratch, l->scratch_floats(n));
  }
  // A chain needs two gradient slots used in turn (layer i reads one and writes the other); a
  // graph keeps one per layer, since a gradient may gather contributions from several readers.
  const bool graph = arch_.is_graph();
  z.grads = graph ? z.acts : 2 * size_t(n) * z.widest;
  z.tmp = graph ? size_t(n) * z.widest : 0;
  if (ebm::noise_conditional(energy_)) z.input = size_t(n) * size_t(arch_.input.size());
  return z;
}

size_t Network::workspace_bytes(int n) const { return sizeof(float) * workspace_sizes(n).total(); }

void Network::reserve(Workspace& ws, int n) const {
  n = std::min(n, slice_);
  if (n <= ws.capacity) return;
  const WorkspaceSizes z = workspace_sizes(n);
  ws.act_offset.clear();
  for (size_t offset : act_plan_) ws.act_offset.push_back(size_t(n) * offset);
  const bool graph = arch_.is_graph();
  // A graph's gradient of output k sits where the output does: its readers' backward passes write
  // it and layer k's reads it, all within the layers over which the output lives forward
  // (plan_activations), so two gradients sharing memory are never needed at once.
  ws.grad_offset.clear();
  for (size_t i = 0; i < layers_.size(); ++i)
    ws.grad_offset.push_back(graph ? ws.act_offset[i] : (layers_.size() - 1 - i) % 2 * n * z.widest);
  ws.acts.assign(z.acts, 0.0f);
  ws.written.reserve(layers_.size() + 1);
  ws.needed.reserve(layers_.size());
  ws.grads.assign(z.grads, 0.0f);
  ws.tmp.assign(z.tmp, 0.0f);
  ws.scratch.assign(z.scratch, 0.0f);
  ws.input.assign(z.input, 0.0f);
  ws.input_grad.assign(z.input, 0.0f);
  ws.capacity = n;
}

const float* Network::output_of(const Workspace& ws, const float* x, int k) const {
  return k == kNetworkInput ? x : ws.acts.data() + ws.act_offset[size_t(k)];
}

void Network::forward(Workspace& ws, const float* x, int n, size_t count, float sigma) const {
  reserve(ws, n);  // n >= 1: in_slices checked the call's batch
  // Which layers the last one run needs: all of them, unless an add is gated off at this sigma,
  // whose other operand (and what only it reads) is then skipped.
  std::vector<char>& needed = ws.needed;  // sized once by reserve(): no allocation
  needed.assign(count, 0);
  needed[count - 1] = 1;
  for (size_t i = count; i-- > 0;) {
    if (!needed[i]) continue;
    const LayerSpec& s = layers_[i]->spec();
    const bool off = s.gated_off(sigma);
    if (!off && s.from != kNetworkInput) needed[size_t(s.from)] = 1;
    if (s.kind == LayerKind::kAdd && s.skip != kNetworkInput) needed[size_t(s.skip)] = 1;
  }
  for (size_t i = 0; i < count; ++i) {
    if (!needed[i]) continue;
    const LayerSpec& s = layers_[i]->spec();
    float* out = ws.acts.data() + ws.act_offset[i];
    if (s.gated_off(sigma)) {
      std::memcpy(out, output_of(ws, x, s.skip), sizeof(float) * size_t(n) * size_t(s.out.size()));
      continue;
    }
    layers_[i]->forward(output_of(ws, x, s.from), out, n, ws.scratch.data());
    if (s.kind == LayerKind::kAdd) {
      const float* skip = output_of(ws, x, s.skip);
      const size_t len = size_t(n) * size_t(s.out.size());
      for (size_t k = 0; k < len; ++k) out[k] += skip[k];
    }
  }
}

void Network::backward(Workspace& ws, const float* x, int n, float* grad, float sigma) const {
  // Walk back from the last layer. The first contribution to a gradient is written in place,
  // later ones (a layer read twice, an add's skip) go through ws.tmp and are added: a plain chain
  // therefore computes exactly what a chain-only backward pass would.
  const size_t count = layers_.size();
  std::vector<char>& written = ws.written;  // [count]: the input's gradient
  written.assign(count + 1, 0);             // sized once by reserve(): no allocation
  written[count - 1] = 1;
  auto deliver = [&](int k, size_t len, const auto& write) {
    float* target = k == kNetworkInput ? grad : ws.grads.data() + ws.grad_offset[size_t(k)];
    char& done = written[k == kNetworkInput ? count : size_t(k)];
    if (!done) {
      write(target);
      done = 1;
      return;
    }
    write(ws.tmp.data());
    for (size_t j = 0; j < len; ++j) target[j] += ws.tmp[j];
  };
  for (size_t i = count; i-- > 0;) {
    if (!written[i]) continue;  // nothing reads this layer: its gradient is zero
    const LayerSpec& s = layers_[i]->spec();
    const float* dy = ws.grads.data() + ws.grad_offset[i];
    const float* out = ws.acts.data() + ws.act_offset[i];
    const size_t in_len = size_t(n) * size_t(s.in.size());
    if (!s.gated_off(sigma))  // else the add passed its skip alone
      deliver(s.from, in_len, [&](float* dx) {
        layers_[i]->backward_input(output_of(ws, x, s.from), out, dy, dx, n, ws.scratch.data());
      });
    if (s.kind == LayerKind::kAdd)
      deliver(s.skip, in_len, [&](float* dx) { std::memcpy(dx, dy, sizeof(float) * in_len); });
  }
  if (!written[count]) std::fill(grad, grad + size_t(n) * size_t(arch_.input.size()), 0.0f);
}

void Network::denoiser_energy(Workspace& ws, const float* x, int n, float sigma, float* e,
                              float* grad) const {
  if (!(sigma > 0.0f) || !std::isfinite(sigma))
    throw Error("this model's energy is noise-conditional: give a noise level sigma > 0, got " +
                std::to_string(sigma));
  reserve(ws, n);
  const double s2 = double(sigma) * sigma + double(energy_.sigma_data) * energy_.sigma_data;
  const float c_in = float(1.0 / std::sqrt(s2)), c_out = energy_.sigma_data,
              inv_s2 = float(1.0 / (double(sigma) * sigma)), plane = std::log(sigma) / 4.0f;
  const size_t d = size_t(image_.size()), din = size_t(arch_.input.size());
  for (int b = 0; b < n; ++b) {
    float* v = ws.input.data() + size_t(b) * din;
    const float* xb = x + size_t(b) * d;
    for (size_t k = 0; k < d; ++k) v[k] = c_in * (xb[k] - mean_[k]);
    std::fill(v + d, v + din, plane);
  }
  forward(ws, ws.input.data(), n, layers_.size(), sigma);
  // r = x - D = (x - mean) - c_out F; E = |r|^2 / (2 sigma^2); dE/dF = -c_out r / sigma^2. r is kept
  // in the last layer's gradient slot, scaled into dE/dF once E is summed.
  const float* f = ws.acts.data() + ws.act_offset.back();
  float* g = ws.grads.data() + ws.grad_offset.back();
  for (int b = 0; b < n; ++b) {
    double sum = 0;
    for (size_t k = b * d; k < (b + 1) * d; ++k) {
      const float r = (x[k] - mean_[k % d]) - c_out * f[k];
      g[k] = r;
      sum += double(r) * r;
    }
    e[b] = float(0.5 * sum * inv_s2);
  }
  if (!grad) return;
  // dE/dx = r / sigma^2 + c_in dE/dv (the image channels of v).
  for (size_t k = 0; k < size_t(n) * d; ++k) {
    grad[k] = inv_s2 * g[k];
    g[k] *= -c_out * inv_s2;
  }
  backward(ws, ws.input.data(), n, ws.input_grad.data(), sigma);
  for (int b = 0; b < n; ++b)
    for (size_t k = 0; k < d; ++k) grad[size_t(b) * d + k] += c_in * ws.input_grad[size_t(b) * din + k];
}

void Network::energy(Workspace& ws, const float* x, int n, float* e, float sigma) const {
  if (kind_ != ModelKind::kEnergy) throw Error("energy() needs an energy model; this is a classifier");
  const size_t d = size_t(image_.size());
  in_slices(n, [&](int b0, int nb) {
    const float* xs = x + size_t(b0) * d;
    if (energy_.denoiser) return denoiser_energy(ws, xs, nb, sigma, e + b0, nullptr);
    forward(ws, xs, nb, layers_.size());
    std::memcpy(e + b0, ws.acts.data() + ws.act_offset.back(), sizeof(float) * size_t(nb));
  });
}

void Network::energy_and_input_grad(Workspace& ws, const float* x, int n, float* e, float* grad,
                                    float sigma) const {
  if (kind_ != ModelKind::kEnergy)
    throw Error("energy_and_input_grad() needs an energy model; this is a classifier");
  const size_t d = size_t(image_.size());
  in_slices(n, [&](int b0, int nb) {
    const float* xs = x + size_t(b0) * d;
    float* gs = grad + size_t(b0) * d;
    if (energy_.denoiser) return denoiser_energy(ws, xs, nb, sigma, e + b0, gs);
    forward(ws, xs, nb, layers_.size());
    std::memcpy(e + b0, ws.acts.data() + ws.act_offset.back(), sizeof(float) * size_t(nb));
    float* dy = ws.grads.data() + ws.grad_offset.back();
    std::fill(dy, dy + nb, 1.0f);  // dE/d(output) = 1 for every image
    backward(ws, xs, nb, gs);
  });
}

const float* Network::classifier_input(Workspace& ws, const float* x, int n, float sigma,
                                       float* c_in) const {
  *c_in = 1.0f;
  if (!energy_.scalar_noise) return x;
  if (!(sigma > 0.0f) || !std::isfinite(sigma))
    throw Error("this classifier is noise-conditional (a guide trained on noised drawings): give "
                "the images' noise level sigma > 0, got " + std::to_string(sigma) +
                " (to label finished drawings use a clean classifier)");
  reserve(ws, n);
  const double s2 = double(sigma) * sigma + double(energy_.sigma_data) * energy_.sigma_data;
  const float c = float(1.0 / std::sqrt(s2)), plane = std::log(sigma) / 4.0f;
  const size_t d = size_t(image_.size()), din = size_t(arch_.input.size());
  for (int b = 0; b < n; ++b) {
    float* v = ws.input.data() + size_t(b) * din;
    const float* xb = x + size_t(b) * d;
    for (size_t k = 0; k < d; ++k) v[k] = c * xb[k];
    std::fill(v + d, v + din, plane);
  }
  *c_in = c;
  return ws.input.data();
}

void Network::logits(Workspace& ws, const float* x, int n, float* out, float sigma) const {
  const size_t d = size_t(image_.size()), k = size_t(outputs());
  in_slices(n, [&](int b0, int nb) {
    float c_in = 1;
    const float* in = classifier_input(ws, x + size_t(b0) * d, nb, sigma, &c_in);
    forward(ws, in, nb, layers_.size());
    std::memcpy(out + size_t(b0) * k, ws.acts.data() + ws.act_offset.back(),
                sizeof(float) * size_t(nb) * k);
  });
}

void Network::check_target(const std::vector<float>& target) const {
  if (kind_ != ModelKind::kClassifier)
    throw Error("a target distribution needs a classifier; this is an energy model");
  if (target.size() != size_t(outputs()))
    throw Error("the target distribution has " + std::to_string(target.size()) +
                " values; the classifier has " + std::to_string(outputs()) + " labels");
  double sum = 0;
  for (size_t k = 0; k < target.size(); ++k) {
    if (!(target[k] >= 0.0f) || !std::isfinite(target[k]))
      throw Error("the target distribution's value " + std::to_string(target[k]) + " for label " +
                  (k < labels_.size() ? labels_[k] : std::to_string(k)) +
                  " is not a probability (negative or not finite)");
    sum += target[k];
  }
  if (std::abs(sum - 1.0) > 1e-4)
    throw Error("the target distribution sums to " + std::to_string(sum) + ", not 1");
}

void Network::cross_entropy_and_input_grad(Workspace& ws, const float* x, int n,
                                           const std::vector<float>& target, float* ce,
                                           float* grad, float sigma) const {
  check_target(target);
  const size_t d = size_t(image_.size());
  in_slices(n, [&](int b0, int nb) {
    cross_entropy_slice(ws, x + size_t(b0) * d, nb, target, ce + b0, grad + size_t(b0) * d, sigma);
  });
}

void Network::cross_entropy_slice(Workspace& ws, const float* x, int n,
                                  const std::vector<float>& target, float* ce, float* grad,
                                  float sigma) const {
  float c_in = 1;
  const float* in = classifier_input(ws, x, n, sigma, &c_in);
  forward(ws, in, n, layers_.size());
  // Per image: log softmax by the max-shifted log-sum-exp (in double: the logits of a confident
  // classifier are large), ce = -sum t log p, and dce/dl = p - t into the last layer's gradient.
  const size_t k = size_t(outputs());
  const float* l = ws.acts.data() + ws.act_offset.back();
  float* dl = ws.grads.data() + ws.grad_offset.back();
  for (int b = 0; b < n; ++b) {
    const float* lb = l + size_t(b) * k;
    const double top = *std::max_element(lb, lb + k);
    double z = 0;
    for (size_t j = 0; j < k; ++j) z += std::exp(double(lb[j]) - top);
    const double log_z = top + std::log(z);
    double sum = 0;
    for (size_t j = 0; j < k; ++j) {
      const double log_p = double(lb[j]) - log_z;
      if (target[j] > 0) sum -= double(target[j]) * log_p;
      dl[size_t(b) * k + j] = float(std::exp(log_p) - double(target[j]));
    }
    ce[b] = float(sum);
  }
  if (in == x) {
    backward(ws, x, n, grad);
    return;
  }
  // dce/dx = c_in dce/dv over the image channels of v (the noise plane is no input).
  backward(ws, in, n, ws.input_grad.data());
  const size_t d = size_t(image_.size()), din = size_t(arch_.input.size());
  for (int b = 0; b < n; ++b)
    for (size_t j = 0; j < d; ++j) grad[size_t(b) * d + j] = c_in * ws.input_grad[size_t(b) * din + j];
}

void Network::features(Workspace& ws, const float* x, int n, float* out, float sigma) const {
  const size_t k = layers_.size() - 1, d = size_t(image_.size());
  // The last layer's input: the network's input itself for a single layer.
  const size_t f = k == 0 ? size_t(arch_.input.size()) : size_t(feature_size());
  in_slices(n, [&](int b0, int nb) {
    float c_in = 1;
    const float* in = classifier_input(ws, x + size_t(b0) * d, nb, sigma, &c_in);
    float* o = out + size_t(b0) * f;
    if (k == 0) {
      std::memcpy(o, in, sizeof(float) * size_t(nb) * f);
      return;
    }
    forward(ws, in, nb, k);
    std::memcpy(o, ws.acts.data() + ws.act_offset[k - 1], sizeof(float) * size_t(nb) * f);
  });
}

}  // namespace ebm
