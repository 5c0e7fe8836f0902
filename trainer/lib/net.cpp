#include "net.h"

#include <cmath>

#include "ebm/error.h"
#include "swish_kernels.h"

namespace ebm::train {

namespace {

// Keras' default initialiser (glorot_uniform): U(-a, a), a = sqrt(6 / (fan_in + fan_out)).
torch::Tensor glorot_uniform(const LayerSpec& l, const std::vector<int64_t>& shape,
                             at::Generator& gen) {
  const double receptive = l.kind == LayerKind::kConv2d ? double(l.kernel_h) * l.kernel_w : 1.0;
  const double a = std::sqrt(6.0 / (double(l.in.c) * receptive + double(l.out.c) * receptive));
  return torch::rand(shape, gen, torch::kFloat32) * (2 * a) - a;
}

torch::Tensor unit_normal(int64_t n, at::Generator& gen) {
  torch::Tensor v = torch::randn({n}, gen, torch::kFloat32);
  return v / v.norm().clamp_min(1e-12);
}

// PyTorch's padding is symmetric; the runtime's may not be (TensorFlow "same" puts the odd pixel
// bottom/right), so asymmetric padding is an explicit zero pad first.
torch::Tensor pad_if_asymmetric(const torch::Tensor& x, const Padding& p, bool* symmetric) {
  *symmetric = p.top == p.bottom && p.left == p.right;
  if (*symmetric) return x;
  return torch::constant_pad_nd(x, {p.left, p.right, p.top, p.bottom}, 0.0);
}

// swish's derivative passes (swish_kernels.h), split among threads. Every operand contiguous in
// the memory format that x suggests (NCHW or channels-last), so that the i-th value of each is
// the same element.
constexpr int64_t kSwishGrain = 1 << 14;

torch::Tensor like(const torch::Tensor& t, const torch::Tensor& x) {
  return t.contiguous(x.suggest_memory_format());
}

torch::Tensor swish_grad(const torch::Tensor& g, const torch::Tensor& x) {
  const torch::Tensor gc = like(g, x), xc = like(x, x);
  torch::Tensor out = torch::empty_like(xc);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "swish_grad", [&] {
    const scalar_t *pg = gc.data_ptr<scalar_t>(), *px = xc.data_ptr<scalar_t>();
    scalar_t* po = out.data_ptr<scalar_t>();
    at::parallel_for(0, x.numel(), kSwishGrain, [&](int64_t b, int64_t e) {
      kernels::swish_grad(pg + b, px + b, po + b, e - b);
    });
  });
  return out;
}

std::pair<torch::Tensor, torch::Tensor> swish_grad_grads(const torch::Tensor& gg,
                                                         const torch::Tensor& g,
                                                         const torch::Tensor& x) {
  const torch::Tensor ggc = like(gg, x), gc = like(g, x), xc = like(x, x);
  torch::Tensor dg = torch::empty_like(xc), dx = torch::empty_like(xc);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "swish_grad_grads", [&] {
    const scalar_t *pgg = ggc.data_ptr<scalar_t>(), *pg = gc.data_ptr<scalar_t>(),
                   *px = xc.data_ptr<scalar_t>();
    scalar_t *pdg = dg.data_ptr<scalar_t>(), *pdx = dx.data_ptr<scalar_t>();
    at::parallel_for(0, x.numel(), kSwishGrain, [&](int64_t b, int64_t e) {
      kernels::swish_grad_grads(pgg + b, pg + b, px + b, pdg + b, pdx + b, e - b);
    });
  });
  return {dg, dx};
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// g d(x) as an autograd node, so that a first derivative taken with create_graph can itself be
// differentiated (denoising score matching's loss is a function of dE/dx).
class SwishGrad : public torch::autograd::Function<SwishGrad> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& g,
                               const torch::Tensor& x) {
    ctx->save_for_backward({g, x});
    return swish_grad(g, x);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const torch::Tensor &gg = grads[0], &g = saved[0], &x = saved[1];
    if (!gg.defined()) return {torch::Tensor(), torch::Tensor()};
    if (torch::GradMode::is_enabled()) {
      // A third derivative: the same formulas from differentiable operations.
      const torch::Tensor s = torch::sigmoid(x), t = s * (1 - s);
      return {gg * (s + x * t), gg * g * (t * (2 + x * (1 - 2 * s)))};
    }
    auto [dg, dx] = swish_grad_grads(gg, g, x);
    return {dg, dx};
  }
};

class Swish : public torch::autograd::Function<Swish> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x) {
    ctx->save_for_backward({x});
    return torch::silu(x);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    if (!grads[0].defined()) return {torch::Tensor()};
    return {SwishGrad::apply(grads[0], ctx->get_saved_variables()[0])};
  }
};

// A stride-1 convolution with symmetric "same" padding (odd kernels, the U-Nets' layers), on
// the CPU in channels-last memory, with every derivative written as forward convolutions and
// weight gradients. LibTorch 1.13's own input gradient of such a convolution takes a slow path
// at 48x192 (79 ms against the forward pass's 7 ms for 12 channels and a batch of 64, NCHW 4x
// slower again: bench/README.md, "Trainer"), and denoising score matching differentiates it
// twice. With p the padding, the input gradient is the same kind of convolution of dy by the
// kernel flipped and its channels swapped:
//   dx[c, q] = sum_{o, i, j} w[o, c, i, j] dy[o, q - (i - p)] = conv(dy, flip(w)^T)[c, q].
// (same_conv, net.h, applies SameConv below.)
constexpr auto kChannelsLast = at::MemoryFormat::ChannelsLast;

torch::Tensor flipped(const torch::Tensor& w) {
  return w.flip({2, 3}).transpose(0, 1);
}

std::vector<int64_t> same_padding(const torch::Tensor& w) {
  return {(w.size(2) - 1) / 2, (w.size(3) - 1) / 2};
}

// dW of the convolution above for x and dy: sum over images and positions of
// dy[o, q] x[c, q + (i, j) - p]. Its own gradients for an incoming ggw:
// d/dx = conv(dy, flip(ggw)^T), d/ddy = conv(x, ggw).
class SameConvWeightGrad : public torch::autograd::Function<SameConvWeightGrad> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& dy, const torch::Tensor& w) {
    ctx->save_for_backward({x, dy});
    const torch::Tensor xc = x.contiguous(kChannelsLast), dyc = dy.contiguous(kChannelsLast),
                        wc = w.contiguous(kChannelsLast);
    return std::get<1>(at::convolution_backward(dyc, xc, wc, c10::nullopt, {1, 1}, same_padding(w),
                                                {1, 1}, false, {0, 0}, 1, {false, true, false}));
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const torch::Tensor &ggw = grads[0], &x = saved[0], &dy = saved[1];
    torch::Tensor dx, ddy;
    if (ggw.defined() && ctx->needs_input_grad(0)) dx = same_conv(dy, flipped(ggw), {});
    if (ggw.defined() && ctx->needs_input_grad(1)) ddy = same_conv(x, ggw, {});
    return {dx, ddy, torch::Tensor()};
  }
};

class SameConv : public torch::autograd::Function<SameConv> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& w,
                               const torch::Tensor& b) {
    ctx->save_for_backward({x, w});
    ctx->saved_data["bias"] = b.numel() > 0;
    return torch::conv2d(x.contiguous(kChannelsLast), w.contiguous(kChannelsLast),
                         b.numel() > 0 ? b : torch::Tensor(), 1, same_padding(w));
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const torch::Tensor &dy = grads[0], &x = saved[0], &w = saved[1];
    torch::Tensor dx, dw, db;
    if (!dy.defined()) return {dx, dw, db};
    if (ctx->needs_input_grad(0)) dx = same_conv(dy, flipped(w), {});
    if (ctx->needs_input_grad(1)) dw = SameConvWeightGrad::apply(x, dy, w.detach());
    if (ctx->saved_data["bias"].toBool() && ctx->needs_input_grad(2)) db = dy.sum({0, 2, 3});
    return {dx, dw, db};
  }
};

bool same_conv_applies(const torch::Tensor& x, const LayerSpec& l) {
  return x.device().is_cpu() && l.stride_h == 1 && l.stride_w == 1 && l.kernel_h % 2 == 1 &&
         l.kernel_w % 2 == 1 && l.pad.top == (l.kernel_h - 1) / 2 && l.pad.bottom == l.pad.top &&
         l.pad.left == (l.kernel_w - 1) / 2 && l.pad.right == l.pad.left;
}

torch::Tensor from_runtime(const Tensor& t) {
  return torch::from_blob(const_cast<float*>(t.data.data()), t.shape, torch::kFloat32).clone();
}

Tensor to_runtime(const std::string& name, const torch::Tensor& t) {
  Tensor out;
  out.name = name;
  out.shape = t.sizes().vec();
  const torch::Tensor c = t.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  out.data.assign(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
  return out;
}

}  // namespace

torch::Tensor swish(const torch::Tensor& x) {
  if (!x.device().is_cpu()) return torch::silu(x);
  return Swish::apply(x);
}

torch::Tensor same_conv(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
  if ((w.size(2) % 2) == 0 || (w.size(3) % 2) == 0)
    throw Error("same_conv: the kernel " + c10::str(w.sizes()) + " has an even side");
  // An autograd function's tensors must be defined: no bias is an empty one.
  return SameConv::apply(x, w, b.defined() ? b : torch::empty({0}, w.options()));
}

std::string tensor_name(size_t layer, const std::string& role) {
  return "layers." + std::to_string(layer) + "." + role;
}

EnergyNetImpl::EnergyNetImpl(const Architecture& arch, uint64_t seed, bool spectral_norm,
                             const EnergyForm& energy)
    : arch_(arch), spectral_norm_(spectral_norm), energy_(energy), layers_(arch.layers.size()) {
  if (energy_.denoiser) {
    const Shape s = image_shape();
    if (s.c < 1) throw Error("a denoiser with a noise plane needs at least 2 input channels");
    mean_ = register_buffer("energy_mean", torch::zeros({s.c, s.h, s.w}));
  }
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (size_t i = 0; i < arch_.layers.size(); ++i) {
    const LayerSpec& l = arch_.layers[i];
    Layer& L = layers_[i];
    // Module names may not contain dots: "layers.3.weight" is registered as "layers_3_weight".
    auto reg_param = [&](const char* role, torch::Tensor t) {
      return register_parameter("layers_" + std::to_string(i) + "_" + role, std::move(t));
    };
    auto reg_buffer = [&](const char* role, torch::Tensor t) {
      return register_buffer("layers_" + std::to_string(i) + "_" + role, std::move(t));
    };
    const int64_t c = l.out.c;
    switch (l.kind) {
      case LayerKind::kConv2d:
      case LayerKind::kDense: {
        const std::vector<int64_t>& shape = l.tensor("weight")->shape;
        L.weight = reg_param("weight", glorot_uniform(l, shape, gen));
        if (l.bias) L.bias = reg_param("bias", torch::zeros({c}));
        if (spectral_norm_) {
          const int64_t cols = L.weight.numel() / c;
          L.sn_u = reg_buffer("sn_u", unit_normal(c, gen));
          L.sn_v = reg_buffer("sn_v", unit_normal(cols, gen));
        }
        break;
      }
      case LayerKind::kBatchNorm:
        L.weight = reg_param("weight", torch::ones({c}));
        L.bias = reg_param("bias", torch::zeros({c}));
        L.mean = reg_buffer("running_mean", torch::zeros({c}));
        L.var = reg_buffer("running_var", torch::ones({c}));
        break;
      case LayerKind::kAffine:
        L.weight = reg_param("scale", torch::ones({c}));
        L.bias = reg_param("shift", torch::zeros({c}));
        break;
      default:
        break;
    }
  }
}

Shape EnergyNetImpl::image_shape() const { return ebm::image_shape(arch_, energy_); }

torch::Device EnergyNetImpl::device() const {
  for (const torch::Tensor& p : parameters()) return p.device();
  return torch::kCPU;
}

void EnergyNetImpl::freeze_layers(int n) {
  for (int i = 0; i < n && size_t(i) < layers_.size(); ++i)
    for (torch::Tensor* t : {&layers_[size_t(i)].weight, &layers_[size_t(i)].bias})
      if (t->defined()) t->set_requires_grad(false);
}

std::vector<torch::Tensor> EnergyNetImpl::trainable_parameters() const {
  std::vector<torch::Tensor> out;
  for (const torch::Tensor& p : parameters())
    if (p.requires_grad()) out.push_back(p);
  return out;
}

void EnergyNetImpl::set_mean(const torch::Tensor& mean) {
  if (!energy_.denoiser) throw Error("only a denoiser energy has a mean image");
  torch::NoGradGuard no_grad;
  mean_.copy_(mean.reshape(mean_.sizes()));
}

torch::Tensor EnergyNetImpl::denoiser_energy(const NetWeights& w, const torch::Tensor& x,
                                             const torch::Tensor& sigma) const {
  if (!energy_.denoiser) throw Error("denoiser_energy() needs a denoiser energy");
  const double sd = energy_.sigma_data;
  const torch::Tensor s = sigma.view({-1, 1, 1, 1});
  const torch::Tensor c_in = (s * s + sd * sd).rsqrt();
  const torch::Tensor u = x - mean_;
  torch::Tensor v = c_in * u;
  if (energy_.noise_plane)
    v = torch::cat({v, (s.log() / 4.0).expand({x.size(0), 1, x.size(2), x.size(3)})}, 1);
  const torch::Tensor r = u - sd * run_layers(w, v, sigma);
  return 0.5 * r.square().flatten(1).sum(1) / sigma.square();
}

torch::Tensor EnergyNetImpl::classify(const NetWeights& w, const torch::Tensor& x,
                                      const torch::Tensor& sigma) const {
  if (!energy_.scalar_noise) return run(w, x);
  if (!sigma.defined() || sigma.numel() != x.size(0))
    throw Error("a noise-conditional classifier needs one noise level per image");
  const double sd = energy_.sigma_data;
  const torch::Tensor s = sigma.view({-1, 1, 1, 1});
  const torch::Tensor v = torch::cat(
      {(s * s + sd * sd).rsqrt() * x, (s.log() / 4.0).expand({x.size(0), 1, x.size(2), x.size(3)})},
      1);
  return run(w, v);
}

NetWeights EnergyNetImpl::weights() const {
  NetWeights w(layers_.size());
  for (size_t i = 0; i < layers_.size(); ++i) {
    const Layer& L = layers_[i];
    w[i] = {L.weight, L.bias, L.mean, L.var};
    if (spectral_norm_ && L.sn_u.defined()) {
      // sigma = u^T W v with u, v held fixed (Miyato et al.; torch.nn.utils.spectral_norm).
      const torch::Tensor mat = L.weight.reshape({L.weight.size(0), -1});
      const torch::Tensor sigma = torch::dot(L.sn_u, torch::mv(mat, L.sn_v));
      w[i].weight = L.weight / sigma;
    }
  }
  return w;
}

void EnergyNetImpl::power_iteration() {
  if (!spectral_norm_) return;
  torch::NoGradGuard no_grad;
  for (Layer& L : layers_) {
    if (!L.sn_u.defined()) continue;
    const torch::Tensor mat = L.weight.reshape({L.weight.size(0), -1});
    torch::Tensor v = torch::mv(mat.t(), L.sn_u);
    L.sn_v.copy_(v / v.norm().clamp_min(1e-12));
    torch::Tensor u = torch::mv(mat, L.sn_v);
    L.sn_u.copy_(u / u.norm().clamp_min(1e-12));
  }
}

torch::Tensor EnergyNetImpl::run(const NetWeights& w, const torch::Tensor& input) const {
  return run_layers(w, input).reshape({input.size(0), -1});
}

torch::Tensor EnergyNetImpl::run_layers(const NetWeights& w, const torch::Tensor& input,
                                        const torch::Tensor& sigma) const {
  std::vector<torch::Tensor> outs;  // every layer's output, for "from" and add's "skip"
  outs.reserve(arch_.layers.size());
  auto output_of = [&](int k) { return k == kNetworkInput ? input : outs[size_t(k)]; };
  for (size_t i = 0; i < arch_.layers.size(); ++i) {
    const LayerSpec& l = arch_.layers[i];
    const LayerWeights& W = w[i];
    torch::Tensor x = output_of(l.from);
    switch (l.kind) {
      case LayerKind::kConv2d: {
        if (same_conv_applies(x, l)) {
          x = same_conv(x, W.weight, W.bias);
          break;
        }
        bool sym = false;
        x = pad_if_asymmetric(x, l.pad, &sym);
        const std::vector<int64_t> pad =
            sym ? std::vector<int64_t>{l.pad.top, l.pad.left} : std::vector<int64_t>{0, 0};
        x = torch::conv2d(x, W.weight, W.bias, {l.stride_h, l.stride_w}, pad);
        break;
      }
      case LayerKind::kBatchNorm:
        x = torch::batch_norm(x, W.weight, W.bias, W.mean, W.var, /*training=*/false,
                              /*momentum=*/0.0, l.eps, /*cudnn_enabled=*/false);
        break;
      case LayerKind::kAffine: {
        const int64_t c = l.in.c;
        x = x * W.weight.view({1, c, 1, 1}) + W.bias.view({1, c, 1, 1});
        break;
      }
      case LayerKind::kSwish:
        x = swish(x);
        break;
      case LayerKind::kLeakyRelu:
        x = torch::leaky_relu(x, l.slope);
        break;
      case LayerKind::kAvgPool:
        // Zero padding counted in the mean: the runtime divides by the full window.
        x = torch::constant_pad_nd(x, {l.pad.left, l.pad.right, l.pad.top, l.pad.bottom}, 0.0);
        x = torch::avg_pool2d(x, {l.kernel_h, l.kernel_w}, {l.stride_h, l.stride_w});
        break;
      case LayerKind::kFlatten:
        x = x.flatten(1);
        break;
      case LayerKind::kDense:
        x = torch::linear(x.flatten(1), W.weight, W.bias);
        break;
      case LayerKind::kAdd:
        if (l.sigma_max > 0) {
          // Gated: each image's other operand counts only at its noise level <= sigma_max.
          if (!sigma.defined() || sigma.numel() != x.size(0))
            throw Error("layer " + std::to_string(i) + " (add) is gated by the noise level: "
                        "it needs one noise level per image");
          x = x * (sigma <= l.sigma_max).to(x.scalar_type()).view({-1, 1, 1, 1});
        }
        x = x + output_of(l.skip);
        break;
      case LayerKind::kUpsample:
        x = torch::upsample_nearest2d(x, {int64_t(l.out.h), int64_t(l.out.w)});
        break;
      case LayerKind::kSpaceToDepth:
        x = torch::pixel_unshuffle(x, l.factor);
        break;
      case LayerKind::kDepthToSpace:
        x = torch::pixel_shuffle(x, l.factor);
        break;
    }
    outs.push_back(std::move(x));
  }
  return outs.back();
}

std::vector<std::pair<std::string, torch::Tensor>> EnergyNetImpl::state() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (size_t i = 0; i < arch_.layers.size(); ++i) {
    const LayerSpec& l = arch_.layers[i];
    const Layer& L = layers_[i];
    for (const TensorRef& ref : l.tensors) {
      const torch::Tensor& t = (ref.role == "weight" || ref.role == "scale") ? L.weight
                               : (ref.role == "bias" || ref.role == "shift") ? L.bias
                               : ref.role == "running_mean"                  ? L.mean
                                                                             : L.var;
      out.emplace_back(tensor_name(i, ref.role), t);
    }
    if (L.sn_u.defined()) {
      out.emplace_back(tensor_name(i, "sn_u"), L.sn_u);
      out.emplace_back(tensor_name(i, "sn_v"), L.sn_v);
    }
  }
  if (energy_.denoiser) out.emplace_back(kEnergyMeanTensor, mean_);
  return out;
}

void EnergyNetImpl::load_state(const std::vector<std::pair<std::string, torch::Tensor>>& tensors) {
  torch::NoGradGuard no_grad;
  for (auto& [name, dst] : state()) {
    const torch::Tensor* src = nullptr;
    for (const auto& [n, t] : tensors)
      if (n == name) src = &t;
    if (!src) throw Error("model state has no tensor '" + name + "'");
    if (src->sizes() != dst.sizes())
      throw Error("tensor '" + name + "' has shape " + c10::str(src->sizes()) + ", expected " +
                  c10::str(dst.sizes()));
    torch::Tensor d = dst;  // shares storage with the parameter
    d.copy_(*src);
  }
}

void EnergyNetImpl::load_model(const Model& m) {
  if (spectral_norm_) throw Error("cannot load runtime weights into a spectral-normalised network");
  if (m.arch.layers.size() != arch_.layers.size())
    throw Error("model has " + std::to_string(m.arch.layers.size()) + " layers, network " +
                std::to_string(arch_.layers.size()));
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (size_t i = 0; i < m.arch.layers.size(); ++i)
    for (const TensorRef& ref : m.arch.layers[i].tensors)
      tensors.emplace_back(tensor_name(i, ref.role), from_runtime(m.tensor(ref.name)));
  if (energy_.denoiser)
    tensors.emplace_back(kEnergyMeanTensor, from_runtime(m.tensor(kEnergyMeanTensor)));
  load_state(tensors);
}

void EnergyNetImpl::embed_model(const Model& m) {
  if (spectral_norm_) throw Error("cannot start a spectral-normalised network from a model's weights");
  const auto fail = [](const std::string& what) {
    throw Error("the model does not fit this network: " + what +
                " (a model fits a network with the same layers, kernels, strides and input, "
                "and at least as many channels in every layer, or such a network followed by "
                "new layers summed onto the model's output)");
  };
  if (m.arch.input != arch_.input)
    fail("its input is " + m.arch.input.str() + ", the network's " + arch_.input.str());
  if (m.arch.output() != arch_.output())
    fail("its output is " + m.arch.output().str() + ", the network's " + arch_.output().str());
  if (m.energy.denoiser != energy_.denoiser || m.energy.noise_plane != energy_.noise_plane ||
      m.energy.scalar_noise != energy_.scalar_noise || m.energy.sigma_data != energy_.sigma_data)
    fail("its energy form is " + energy_form_json(m.energy).dump() + ", the network's " +
         energy_form_json(energy_).dump());
  const size_t n = m.arch.layers.size();
  if (n > arch_.layers.size())
    fail("it has " + std::to_string(n) + " layers, the network " +
         std::to_string(arch_.layers.size()));
  // A deeper network: the model's layers, then new ones summed onto the model's output. The new
  // layers that are summed in (the leaves of the chain of adds that ends the network) start at
  // zero, so the network computes what the model did; the rest keep their initialisation and
  // reach the output through them.
  std::vector<size_t> zeroed;
  if (n < arch_.layers.size()) {
    int model_output = 0;
    std::vector<int> todo = {int(arch_.layers.size()) - 1};
    if (arch_.layers.back().kind != LayerKind::kAdd)
      fail("it has " + std::to_string(n) + " layers, the network " +
           std::to_string(arch_.layers.size()) + ", and the network's last layer is " +
           layer_kind_name(arch_.layers.back().kind) + ", not an add that sums new layers onto "
           "the model's output (layer " + std::to_string(n - 1) + ")");
    while (!todo.empty()) {
      const int k = todo.back();
      todo.pop_back();
      if (k == int(n) - 1) {
        ++model_output;
        continue;
      }
      if (k == kNetworkInput)
        fail("the network's closing adds sum the input; they may sum only the model's output "
             "(layer " + std::to_string(n - 1) + ") and new convolution or dense layers");
      const LayerSpec& l = arch_.layers[size_t(k)];
      if (k >= int(n) && l.kind == LayerKind::kAdd) {
        todo.push_back(l.from);
        todo.push_back(l.skip);
      } else if (k >= int(n) && (l.kind == LayerKind::kConv2d || l.kind == LayerKind::kDense)) {
        zeroed.push_back(size_t(k));
      } else {
        fail("the network's closing adds sum layer " + std::to_string(k) + " (" +
             layer_kind_name(l.kind) + "); they may sum only the model's output (layer " +
             std::to_string(n - 1) + ") and new convolution or dense layers");
      }
    }
    if (model_output != 1)
      fail("the network's closing adds sum the model's output (layer " + std::to_string(n - 1) +
           ") " + std::to_string(model_output) + " times, not once");
  }
  torch::NoGradGuard no_grad;
  for (size_t k : zeroed) {
    layers_[k].weight.zero_();
    if (layers_[k].bias.defined()) layers_[k].bias.zero_();
  }
  for (size_t i = 0; i < n; ++i) {
    const LayerSpec &a = m.arch.layers[i], &b = arch_.layers[i];
    const std::string where = "layer " + std::to_string(i) + " (" + layer_kind_name(b.kind) + ")";
    if (a.kind != b.kind) fail(where + " is " + layer_kind_name(a.kind) + " in the model");
    if (a.kernel_h != b.kernel_h || a.kernel_w != b.kernel_w || a.stride_h != b.stride_h ||
        a.stride_w != b.stride_w || a.pad.top != b.pad.top || a.pad.left != b.pad.left ||
        a.pad.bottom != b.pad.bottom || a.pad.right != b.pad.right || a.factor != b.factor ||
        a.from != b.from || a.skip != b.skip || a.bias != b.bias || a.slope != b.slope ||
        a.eps != b.eps)
      fail(where + " has other settings in the model");
    if (a.out.h != b.out.h || a.out.w != b.out.w || a.out.c > b.out.c)
      fail(where + " outputs " + a.out.str() + " in the model, " + b.out.str() + " here");
    Layer& L = layers_[i];
    for (const TensorRef& ref : a.tensors) {
      const torch::Tensor src = from_runtime(m.tensor(ref.name));
      torch::Tensor& dst = (ref.role == "weight" || ref.role == "scale") ? L.weight
                           : (ref.role == "bias" || ref.role == "shift") ? L.bias
                           : ref.role == "running_mean"                  ? L.mean
                                                                         : L.var;
      if (src.dim() != dst.dim()) fail(where + ": tensor " + ref.name + " has another rank");
      torch::Tensor corner = dst;
      for (int64_t d = 0; d < src.dim(); ++d) {
        if (src.size(d) > dst.size(d))
          fail(where + ": tensor " + ref.name + " is " + c10::str(src.sizes()) +
               ", larger than the network's " + c10::str(dst.sizes()));
        corner = corner.narrow(d, 0, src.size(d));
      }
      // A weight's extra inputs (dimension 1 of conv OIHW and dense [out, in]) must not reach
      // the model's outputs: the embedded channels then compute exactly what the model did, and
      // the new ones start from their initialisation, read only by new channels until trained.
      if (ref.role == "weight" && (b.kind == LayerKind::kConv2d || b.kind == LayerKind::kDense))
        dst.narrow(0, 0, src.size(0)).narrow(1, src.size(1), dst.size(1) - src.size(1)).zero_();
      corner.copy_(src);
    }
  }
  if (energy_.denoiser) mean_.copy_(from_runtime(m.tensor(kEnergyMeanTensor)).reshape(mean_.sizes()));
}

Model EnergyNetImpl::to_model(ModelKind kind, const std::vector<std::string>& labels) const {
  torch::NoGradGuard no_grad;
  Model m;
  m.kind = kind;
  m.labels = labels;
  m.arch = arch_;
  m.energy = energy_;
  if (energy_.denoiser) m.tensors.push_back(to_runtime(kEnergyMeanTensor, mean_));
  const NetWeights w = weights();
  for (size_t i = 0; i < arch_.layers.size(); ++i) {
    for (const TensorRef& ref : arch_.layers[i].tensors) {
      const torch::Tensor& t = (ref.role == "weight" || ref.role == "scale") ? w[i].weight
                               : (ref.role == "bias" || ref.role == "shift") ? w[i].bias
                               : ref.role == "running_mean"                  ? w[i].mean
                                                                             : w[i].var;
      m.tensors.push_back(to_runtime(ref.name, t));
    }
  }
  return m;
}

Architecture classifier_architecture(const Architecture& arch, int classes) {
  if (arch.layers.empty() || arch.layers.back().kind != LayerKind::kDense)
    throw Error("a classifier needs an architecture ending in a dense layer");
  if (classes < 2)
    throw Error("a classifier needs at least 2 classes, got " + std::to_string(classes));
  nlohmann::json layers = arch.layers_json();
  nlohmann::json& last = layers.back();
  last["out_features"] = classes;
  return resolve_architecture(arch.input, layers);
}

}  // namespace ebm::train
