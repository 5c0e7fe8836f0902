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
    case LayerKind::kFlatten: y = x; break;
  }
  return y;
}

template <class T>
std::vector<T> reference_forward(const Model& m, const std::vector<T>& x, int n) {
  std::vector<T> cur = x;
  for (const LayerSpec& l : m.arch.layers) cur = reference_layer_forward(l, m, cur, n);
  return cur;
}

template std::vector<float> reference_layer_forward(const LayerSpec&, const Model&,
                                                    const std::vector<float>&, int);
template std::vector<double> reference_layer_forward(const LayerSpec&, const Model&,
                                                     const std::vector<double>&, int);
template std::vector<float> reference_forward(const Model&, const std::vector<float>&, int);
template std::vector<double> reference_forward(const Model&, const std::vector<double>&, int);

}  // namespace ebm
