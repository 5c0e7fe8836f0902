#include "swish_kernels.h"

#include <algorithm>
#include <cmath>

namespace ebm::train::kernels {

namespace {

// sigmoid(x) and 1 - sigmoid(x) = e sigmoid(x), e = exp(-x), the second without the cancellation
// of subtracting s from 1 (at x = 7 it keeps its digits). The exponent stops at 80 (x = -80,
// where s is 2e-35), so that nothing overflows: these kernels cannot rely on infinities.
template <typename T>
inline void sigmoids(T x, T* s, T* q) {
  const T e = std::exp(std::min(-x, T(80)));
  *s = T(1) / (T(1) + e);
  *q = e * *s;
}

}  // namespace

template <typename T>
void swish_grad(const T* __restrict g, const T* __restrict x, T* __restrict out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    T s, q;
    sigmoids(x[i], &s, &q);
    out[i] = g[i] * (s * (T(1) + x[i] * q));
  }
}

template <typename T>
void swish_grad_grads(const T* __restrict gg, const T* __restrict g, const T* __restrict x,
                      T* __restrict dg, T* __restrict dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    T s, q;
    sigmoids(x[i], &s, &q);
    const T t = s * q;
    dg[i] = gg[i] * (s + x[i] * t);
    dx[i] = gg[i] * g[i] * (t * (T(2) + x[i] * (q - s)));
  }
}

template void swish_grad(const float*, const float*, float*, int64_t);
template void swish_grad(const double*, const double*, double*, int64_t);
template void swish_grad_grads(const float*, const float*, const float*, float*, float*, int64_t);
template void swish_grad_grads(const double*, const double*, const double*, double*, double*,
                               int64_t);

}  // namespace ebm::train::kernels
