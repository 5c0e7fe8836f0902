// The elementwise passes of swish's derivatives (net.cpp's swish), over plain arrays. Compiled
// with -ffast-math (trainer/lib/CMakeLists.txt) so that the exponential vectorises (glibc's
// libmvec): each function is one pass over its operands, the sigmoid computed in the pass
// instead of stored beside them. With s = sigmoid(x):
//   swish'(x)  = s (1 + x (1 - s))
//   swish''(x) = s (1 - s) (2 + x (1 - 2 s))
// Below x = -80 the exponential stops growing (no infinities): the results there are within
// 1e-30 of 0, as the true ones are.
#pragma once

#include <cstdint>

namespace ebm::train::kernels {

// out[i] = g[i] swish'(x[i]).
template <typename T>
void swish_grad(const T* g, const T* x, T* out, int64_t n);

// The gradients of g swish'(x) for an incoming gg: dg[i] = gg[i] swish'(x[i]),
// dx[i] = gg[i] g[i] swish''(x[i]).
template <typename T>
void swish_grad_grads(const T* gg, const T* g, const T* x, T* dg, T* dx, int64_t n);

}  // namespace ebm::train::kernels
