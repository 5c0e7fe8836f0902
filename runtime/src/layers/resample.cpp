// Layers that move values without weights, for U-Net-shaped networks (add, the identity on its
// main input, is in pointwise.cpp). Shapes per sample:
//   upsample        [C, H, W] -> [C, fH, fW]      y[c, i, j] = x[c, i / f, j / f]
//   space_to_depth  [C, H, W] -> [C f^2, H/f, W/f] y[c f^2 + a f + b, i, j] = x[c, i f + a, j f + b]
//   depth_to_space  [C f^2, H, W] -> [C, fH, fW]  the inverse (PyTorch's pixel_shuffle)
// The two rearrangements are permutations, so their input gradients are the inverse permutation.
#include <algorithm>
#include <cstring>

#include "../vec.h"
#include "factories.h"

namespace ebm {

namespace {

// With f = 2 (the shipped U-Net's) a row a vector at a time, the last under masks: forward, each
// value twice by interleaving the row with itself; the gradient, the even and odd columns of both
// fine rows summed in the order the scalar loop sums them, so the same bits. Element by element the
// U-Net's two upsampling layers took 0.07-0.11 ms of a step natively at 1 image.
class Upsample final : public Layer {
 public:
  using Layer::Layer;
  void forward(const float* x, float* y, int n, float*) const override {
    const LayerSpec& s = spec();
    const int f = s.factor;
    for (int bc = 0; bc < n * s.in.c; ++bc) {
      const float* xc = x + size_t(bc) * s.in.h * s.in.w;
      float* yc = y + size_t(bc) * s.out.h * s.out.w;
      for (int i = 0; i < s.in.h; ++i) {
        float* row = yc + size_t(i) * f * s.out.w;
        const float* src = xc + size_t(i) * s.in.w;
        if (f == 2) {
          simd::interleave_rows<2>(src, 0, size_t(s.in.w), row);  // the row with itself
        } else {
          for (int j = 0; j < s.in.w; ++j)
            for (int b = 0; b < f; ++b) row[j * f + b] = src[j];
        }
        for (int a = 1; a < f; ++a) simd::copy_row(row, s.out.w, row + size_t(a) * s.out.w);
      }
    }
  }
  bool backward_reads_input() const override { return false; }
  bool backward_reads_output() const override { return false; }
  void backward_input(const float*, const float*, const float* dy, float* dx, int n,
                      float*) const override {
    const LayerSpec& s = spec();
    const int f = s.factor;
    constexpr int L = simd::kLanes;
    for (int bc = 0; bc < n * s.in.c; ++bc) {
      float* dxc = dx + size_t(bc) * s.in.h * s.in.w;
      const float* dyc = dy + size_t(bc) * s.out.h * s.out.w;
      for (int i = 0; i < s.in.h; ++i) {
        if (f == 2) {
          for (int j = 0; j < s.in.w; j += L) {
            const int valid = std::min(L, s.in.w - j);  // the last vector under masks
            simd::Vec acc = simd::splat(0.0f);
            for (int a = 0; a < 2; ++a) {
              const float* r = dyc + size_t(2 * i + a) * s.out.w + 2 * j;
              const simd::Vec lo = simd::load_first(r, simd::interleaved_floats<2>(valid, 0));
              const simd::Vec hi = simd::load_first(r + L, simd::interleaved_floats<2>(valid, 1));
              acc = acc + simd::even_lanes(lo, hi);
              acc = acc + simd::odd_lanes(lo, hi);
            }
            simd::store_first(dxc + size_t(i) * s.in.w + j, acc, valid);
          }
          continue;
        }
        for (int j = 0; j < s.in.w; ++j) {
          float acc = 0.0f;
          for (int a = 0; a < f; ++a)
            for (int b = 0; b < f; ++b) acc += dyc[size_t(i * f + a) * s.out.w + j * f + b];
          dxc[size_t(i) * s.in.w + j] = acc;
        }
      }
    }
  }
};

// Copies between the fine layout [C, H f, W f] and the coarse one [C f^2, H, W]; `to_coarse`
// picks the direction. Both layers and both directions of each are this one function: with f = 2
// (the shipped U-Net's), a fine row at a time into (or from) its two coarse rows, a vector at a
// time (simd::interleave_rows / deinterleave_rows, as the taps' chunks); a value at a time
// otherwise. Element by element, the stride-2 reads of fine rows ran at
// whatever speed the two buffers' addresses allowed: the U-Net's 24 -> 6 depth_to_space gradient
// at 1 image took 0.010 or 0.021 ms natively as other layers' scratch moved the heap.
void rearrange(const float* src, float* dst, int n, int c, int h, int w, int f, bool to_coarse) {
  const size_t fine_w = size_t(w) * f, plane = size_t(h) * w;
  for (int b = 0; b < n; ++b)
    for (int ch = 0; ch < c; ++ch) {
      const size_t fine = (size_t(b) * c + ch) * plane * f * f;
      if (f == 2) {
        for (int a = 0; a < 2; ++a) {
          const size_t coarse = ((size_t(b) * c + ch) * 4 + size_t(a) * 2) * plane;
          for (int i = 0; i < h; ++i) {
            const size_t fi = fine + (size_t(i) * 2 + a) * fine_w, ci = coarse + size_t(i) * w;
            // The fine row's even and odd columns are the two coarse rows, `plane` apart.
            if (to_coarse)
              simd::deinterleave_rows<2>(src + fi, size_t(w), dst + ci, plane);
            else
              simd::interleave_rows<2>(src + ci, plane, size_t(w), dst + fi);
          }
        }
        continue;
      }
      for (int a = 0; a < f; ++a)
        for (int e = 0; e < f; ++e) {
          const size_t coarse = ((size_t(b) * c + ch) * f * f + size_t(a) * f + e) * plane;
          for (int i = 0; i < h; ++i)
            for (int j = 0; j < w; ++j) {
              const size_t fi = fine + (size_t(i) * f + a) * fine_w + size_t(j) * f + e;
              const size_t ci = coarse + size_t(i) * w + j;
              if (to_coarse)
                dst[ci] = src[fi];
              else
                dst[fi] = src[ci];
            }
        }
    }
}

class SpaceToDepth final : public Layer {
 public:
  using Layer::Layer;
  void forward(const float* x, float* y, int n, float*) const override {
    const LayerSpec& s = spec();
    rearrange(x, y, n, s.in.c, s.out.h, s.out.w, s.factor, true);
  }
  bool backward_reads_input() const override { return false; }
  bool backward_reads_output() const override { return false; }
  void backward_input(const float*, const float*, const float* dy, float* dx, int n,
                      float*) const override {
    const LayerSpec& s = spec();
    rearrange(dy, dx, n, s.in.c, s.out.h, s.out.w, s.factor, false);
  }
};

class DepthToSpace final : public Layer {
 public:
  using Layer::Layer;
  void forward(const float* x, float* y, int n, float*) const override {
    const LayerSpec& s = spec();
    rearrange(x, y, n, s.out.c, s.in.h, s.in.w, s.factor, false);
  }
  bool backward_reads_input() const override { return false; }
  bool backward_reads_output() const override { return false; }
  void backward_input(const float*, const float*, const float* dy, float* dx, int n,
                      float*) const override {
    const LayerSpec& s = spec();
    rearrange(dy, dx, n, s.out.c, s.in.h, s.in.w, s.factor, true);
  }
};

}  // namespace

std::unique_ptr<Layer> make_upsample(const LayerSpec& spec) {
  return std::make_unique<Upsample>(spec);
}
std::unique_ptr<Layer> make_space_to_depth(const LayerSpec& spec) {
  return std::make_unique<SpaceToDepth>(spec);
}
std::unique_ptr<Layer> make_depth_to_space(const LayerSpec& spec) {
  return std::make_unique<DepthToSpace>(spec);
}

}  // namespace ebm
