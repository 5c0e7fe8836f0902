#include "ebm/reference.h"

#include <cmath>

namespace ebm {

namespace {

template <class T>
std::vector<T> weights(const Model& m, const LayerSpec& l, const char* role) {
  const TensorRef* ref = l.tensor(role);
  if (!ref) return {};
  const Tensor& t = m.tensor(ref->name);
  return std::vector<T>(t.data.begin(), t.data.end());
}

}  // namespace

template <class T>
std::vector<T> reference_layer_forward(const LayerSpec& l, const Model& m, const std::vector<T>& x,
                                       int n) {
  const Shape& in = l.in;
  const Shape& out = l.out;
  std::vector<T> y(size_t(n) * size_t(out.size()));
  auto X = [&](int b, int c, int h, int w) -> T {
    return x[((size_t(b) * in.c + c) * in.h + h) * in.w + w];
  };
  auto Y = [&](int b, int c, int h, int w) -> T& {
    return y[((size_t(b) * out.c + c) * out.h + h) * out.w + w];
  };
  switch (l.kind) {
    case LayerKind::kConv2d: {
      const std::vector<T> w = weights<T>(m, l, "weight"), bias = weights<T>(m, l, "bias");
      for (int b = 0; b < n; ++b)
        for (int o = 0; o < out.c; ++o)
          for (int oy = 0; oy < out.h; ++oy)
            for (int ox = 0; ox < out.w; ++ox) {
              T acc = bias.empty() ? T(0) : bias[o];
              for (int c = 0; c < in.c; ++c)
                for (int i = 0; i < l.kernel_h; ++i)
                  for (int j = 0; j < l.kernel_w; ++j) {
                    const int iy = oy * l.stride_h - l.pad.top + i;
                    const int ix = ox * l.stride_w - l.pad.left + j;
                    if (iy < 0 || iy >= in.h || ix < 0 || ix >= in.w) continue;
                    acc += w[((size_t(o) * in.c + c) * l.kernel_h + i) * l.kernel_w + j] *
                           X(b, c, iy, ix);
                  }
              Y(b, o, oy, ox) = acc;
            }
      break;
    }
    case LayerKind::kDense: {
      const std::vector<T> w = weights<T>(m, l, "weight"), bias = weights<T>(m, l, "bias");
      for (int b = 0; b < n; ++b)
        for (int o = 0; o < out.c; ++o) {
          T acc = bias.empty() ? T(0) : bias[o];
          for (int i = 0; i < in.c; ++i) acc += w[size_t(o) * in.c + i] * x[size_t(b) * in.c + i];
          y[size_t(b) * out.c + o] = acc;
        }
      break;
    }
    case LayerKind::kBatchNorm:
    case LayerKind::kAffine: {
      std::vector<T> s(in.c), t(in.c);
      if (l.kind == LayerKind::kAffine) {
        s = weights<T>(m, l, "scale");
        t = weights<T>(m, l, "shift");
      } else {
        const std::vector<T> g = weights<T>(m, l, "weight"), beta = weights<T>(m, l, "bias"),
                             mean = weights<T>(m, l, "running_mean"),
                             var = weights<T>(m, l, "running_var");
        for (int c = 0; c < in.c; ++c) {
          s[c] = g[c] / std::sqrt(var[c] + T(l.eps));
          t[c] = beta[c] - mean[c] * s[c];
        }
      }
      for (int b = 0; b < n; ++b)
        for (int c = 0; c < in.c; ++c)
          for (int h = 0; h < in.h; ++h)
            for (int w = 0; w < in.w; ++w) Y(b, c, h, w) = X(b, c, h, w) * s[c] + t[c];
      break;
    }
    case LayerKind::kSwish:
      for (size_t i = 0; i < y.size(); ++i) y[i] = x[i] / (T(1) + std::exp(-x[i]));
      break;
    case LayerKind::kLeakyRelu:
      for (size_t i = 0; i < y.size(); ++i) y[i] = x[i] > T(0) ? x[i] : T(l.slope) * x[i];
      break;
    case LayerKind::kAvgPool: {
      const T area = T(l.kernel_h * l.kernel_w);
      for (int b = 0; b < n; ++b)
        for (int c = 0; c < out.c; ++c)
          for (int oy = 0; oy < out.h; ++oy)
            for (int ox = 0; ox < out.w; ++ox) {
              T acc = 0;
              for (int i = 0; i < l.kernel_h; ++i)
                for (int j = 0; j < l.kernel_w; ++j) {
                  const int iy = oy * l.stride_h - l.pad.top + i;
                  const int ix = ox * l.stride_w - l.pad.left + j;
                  if (iy >= 0 && iy < in.h && ix >= 0 && ix < in.w) acc += X(b, c, iy, ix);
                }
              Y(b, c, oy, ox) = acc / area;
            }
      break;
    }
    case LayerKind::kFlatten:
    case LayerKind::kAdd:  // the skip operand is added by reference_forward
      y = x;
      break;
    case LayerKind::kUpsample:
      for (int b = 0; b < n; ++b)
        for (int c = 0; c < out.c; ++c)
          for (int h = 0; h < out.h; ++h)
            for (int w = 0; w < out.w; ++w) Y(b, c, h, w) = X(b, c, h / l.factor, w / l.factor);
      break;
    case LayerKind::kSpaceToDepth: {
      const int f = l.factor;
      for (int b = 0; b < n; ++b)
        for (int c = 0; c < out.c; ++c)
          for (int h = 0; h < out.h; ++h)
            for (int w = 0; w < out.w; ++w) {
              const int ch = c / (f * f), a = c / f % f, e = c % f;
              Y(b, c, h, w) = X(b, ch, h * f + a, w * f + e);
            }
      break;
    }
    case LayerKind::kDepthToSpace: {
      const int f = l.factor;
      for (int b = 0; b < n; ++b)
        for (int c = 0; c < out.c; ++c)
          for (int h = 0; h < out.h; ++h)
            for (int w = 0; w < out.w; ++w)
              Y(b, c, h, w) = X(b, c * f * f + h % f * f + w % f, h / f, w / f);
      break;
    }
  }
  return y;
}

template <class T>
std::vector<T> reference_forward(const Model& m, const std::vector<T>& x, int n, double sigma) {
  std::vector<std::vector<T>> outs;
  auto output_of = [&](int k) -> const std::vector<T>& { return k == kNetworkInput ? x : outs[size_t(k)]; };
  for (const LayerSpec& l : m.arch.layers) {
    std::vector<T> y = reference_layer_forward(l, m, output_of(l.from), n);
    if (l.gated_off(float(sigma))) {
      y = output_of(l.skip);  // the add passes its skip alone
    } else if (l.kind == LayerKind::kAdd) {
      const std::vector<T>& s = output_of(l.skip);
      for (size_t i = 0; i < y.size(); ++i) y[i] += s[i];
    }
    outs.push_back(std::move(y));
  }
  return outs.back();
}

template <class T>
std::vector<T> reference_denoiser_energy(const Model& m, const std::vector<T>& x, int n, T sigma) {
  const Shape image = m.image_shape();
  const size_t d = size_t(image.size()), din = size_t(m.arch.input.size());
  const std::vector<float>& mean = m.tensor(kEnergyMeanTensor).data;
  const T sd = T(m.energy.sigma_data), c_in = T(1) / std::sqrt(sigma * sigma + sd * sd);
  std::vector<T> v(size_t(n) * din);
  for (int b = 0; b < n; ++b)
    for (size_t k = 0; k < din; ++k)
      v[size_t(b) * din + k] = k < d ? c_in * (x[size_t(b) * d + k] - T(mean[k])) : std::log(sigma) / T(4);
  const std::vector<T> f = reference_forward(m, v, n, double(sigma));
  std::vector<T> e(size_t(n), T(0));
  for (int b = 0; b < n; ++b)
    for (size_t k = 0; k < d; ++k) {
      const T r = x[size_t(b) * d + k] - T(mean[k]) - sd * f[size_t(b) * d + k];
      e[size_t(b)] += r * r / (T(2) * sigma * sigma);
    }
  return e;
}

template std::vector<float> reference_denoiser_energy(const Model&, const std::vector<float>&, int, float);
template std::vector<double> reference_denoiser_energy(const Model&, const std::vector<double>&, int, double);

template std::vector<float> reference_layer_forward(const LayerSpec&, const Model&,
                                                    const std::vector<float>&, int);
template std::vector<double> reference_layer_forward(const LayerSpec&, const Model&,
                                                     const std::vector<double>&, int);
template std::vector<float> reference_forward(const Model&, const std::vector<float>&, int, double);
template std::vector<double> reference_forward(const Model&, const std::vector<double>&, int, double);

}  // namespace ebm
