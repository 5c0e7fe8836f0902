// Element-wise layers. Shapes: x, y, dy, dx all [n, C, H, W].
//   affine      y = x * scale[c] + shift[c]          dx = dy * scale[c]
//   swish       y = x * sigmoid(x)                   dx = dy * (s + y * (1 - s)), s = sigmoid(x)
//   leaky_relu  y = x > 0 ? x : slope * x            dx = dy or slope * dy
//   flatten     y = x (NCHW is already C*H*W-major)  dx = dy
//   add         y = x, dx = dy on its main input (the Network adds the skip operand and routes
//               dy to it as well)
#include <cmath>
#include <cstring>

#include "../vec.h"
#include "factories.h"

namespace ebm {

namespace {

class Affine final : public Layer {
 public:
  Affine(const LayerSpec& s, const Model& m) : Layer(s) {
    const size_t c = size_t(s.in.c);
    if (s.kind == LayerKind::kAffine) {
      scale_ = m.tensor(s.tensor("scale")->name).data;
      shift_ = m.tensor(s.tensor("shift")->name).data;
      return;
    }
    // Inference-form batch norm is an affine map; computed in double then rounded once.
    const auto& w = m.tensor(s.tensor("weight")->name).data;
    const auto& b = m.tensor(s.tensor("bias")->name).data;
    const auto& mean = m.tensor(s.tensor("running_mean")->name).data;
    const auto& var = m.tensor(s.tensor("running_var")->name).data;
    scale_.resize(c);
    shift_.resize(c);
    for (size_t i = 0; i < c; ++i) {
      const double sc = double(w[i]) / std::sqrt(double(var[i]) + double(s.eps));
      scale_[i] = float(sc);
      shift_[i] = float(double(b[i]) - double(mean[i]) * sc);
    }
  }

  void forward(const float* x, float* y, int n, float*) const override {
    const size_t hw = size_t(spec().in.h) * spec().in.w;
    for (int b = 0; b < n; ++b)
      for (int c = 0; c < spec().in.c; ++c) {
        const size_t off = (size_t(b) * spec().in.c + c) * hw;
        const float s = scale_[c], t = shift_[c];
        for (size_t i = 0; i < hw; ++i) y[off + i] = x[off + i] * s + t;
      }
  }

  bool backward_reads_input() const override { return false; }
  bool backward_reads_output() const override { return false; }
  void backward_input(const float*, const float*, const float* dy, float* dx, int n,
                      float*) const override {
    const size_t hw = size_t(spec().in.h) * spec().in.w;
    for (int b = 0; b < n; ++b)
      for (int c = 0; c < spec().in.c; ++c) {
        const size_t off = (size_t(b) * spec().in.c + c) * hw;
        const float s = scale_[c];
        for (size_t i = 0; i < hw; ++i) dx[off + i] = dy[off + i] * s;
      }
  }

 private:
  std::vector<float> scale_, shift_;
};

class Swish final : public Layer {
 public:
  using Layer::Layer;
  void forward(const float* x, float* y, int n, float*) const override {
    simd::map1(x, y, size_t(n) * size_t(spec().in.size()),
               [](simd::Vec v) { return v / (1.0f + simd::exp(-v)); });
  }
  // x always; y only where the gradient takes sigmoid(x) as y / x (4-lane builds, below).
  bool backward_reads_output() const override { return simd::kLanes < 8; }
  void backward_input(const float* x, const float* y, const float* dy, float* dx, int n,
                      float*) const override {
    const size_t len = size_t(n) * size_t(spec().in.size());
    if constexpr (simd::kLanes >= 8) {
      // AVX and AVX-512: sigmoid(x) anew from x, dx = dy s (1 + x (1 - s)), which reads one
      // stream fewer than y / x below (x and dy in, dx out): there the exp costs less than the
      // memory it saves (the paper network's step 1.026x faster natively, 30 of 30 paired calls;
      // in wasm 0.94x, bench/README.md).
      (void)y;
      simd::map2(x, dy, dx, len, [](simd::Vec xv, simd::Vec g) {
        const simd::Vec s = 1.0f / (1.0f + simd::exp(-xv));
        return g * (s * (1.0f + xv * (1.0f - s)));
      });
      return;
    }
    // sigmoid(x) = y / x from the forward pass's output, without a second exp; near zero, where
    // that quotient loses digits, 1/2 + x/4 (its error, x^3/48, is below 2e-20 there).
    simd::map3(x, y, dy, dx, len,
               [](simd::Vec xv, simd::Vec yv, simd::Vec g) {
                 const auto away = simd::max(xv, -xv) > 1e-6f;
                 const simd::Vec q = yv / (away ? xv : simd::splat(1.0f));
                 const simd::Vec s = away ? q : 0.5f + 0.25f * xv;
                 return g * (s + yv * (1.0f - s));
               });
  }
};

class LeakyRelu final : public Layer {
 public:
  using Layer::Layer;
  void forward(const float* x, float* y, int n, float*) const override {
    const size_t len = size_t(n) * size_t(spec().in.size());
    const float a = spec().slope;
    for (size_t i = 0; i < len; ++i) y[i] = x[i] > 0.0f ? x[i] : a * x[i];
  }
  bool backward_reads_output() const override { return false; }
  void backward_input(const float* x, const float*, const float* dy, float* dx, int n,
                      float*) const override {
    const size_t len = size_t(n) * size_t(spec().in.size());
    const float a = spec().slope;
    for (size_t i = 0; i < len; ++i) dx[i] = x[i] > 0.0f ? dy[i] : a * dy[i];
  }
};

class Identity final : public Layer {
 public:
  using Layer::Layer;
  void forward(const float* x, float* y, int n, float*) const override {
    std::memcpy(y, x, sizeof(float) * size_t(n) * size_t(spec().in.size()));
  }
  bool backward_reads_input() const override { return false; }
  bool backward_reads_output() const override { return false; }
  void backward_input(const float*, const float*, const float* dy, float* dx, int n,
                      float*) const override {
    std::memcpy(dx, dy, sizeof(float) * size_t(n) * size_t(spec().in.size()));
  }
};

}  // namespace

std::unique_ptr<Layer> make_affine(const LayerSpec& spec, const Model& m) {
  return std::make_unique<Affine>(spec, m);
}
std::unique_ptr<Layer> make_swish(const LayerSpec& spec) { return std::make_unique<Swish>(spec); }
std::unique_ptr<Layer> make_leaky_relu(const LayerSpec& spec) {
  return std::make_unique<LeakyRelu>(spec);
}
std::unique_ptr<Layer> make_flatten(const LayerSpec& spec) {
  return std::make_unique<Identity>(spec);
}
std::unique_ptr<Layer> make_add(const LayerSpec& spec) { return std::make_unique<Identity>(spec); }

}  // namespace ebm
