// Layers that move values without weights, for U-Net-shaped networks (add, the identity on its
// main input, is in pointwise.cpp). Shapes per sample:
//   upsample        [C, H, W] -> [C, fH, fW]      y[c, i, j] = x[c, i / f, j / f]
//   space_to_depth  [C, H, W] -> [C f^2, H/f, W/f] y[c f^2 + a f + b, i, j] = x[c, i f + a, j f + b]
//   depth_to_space  [C f^2, H, W] -> [C, fH, fW]  the inverse (PyTorch's pixel_shuffle)
// The two rearrangements are permutations, so their input gradients are the inverse permutation.
#include <cstring>

#include "factories.h"

namespace ebm {

namespace {

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
        for (int j = 0; j < s.in.w; ++j)
          for (int b = 0; b < f; ++b) row[j * f + b] = xc[size_t(i) * s.in.w + j];
        for (int a = 1; a < f; ++a) std::memcpy(row + size_t(a) * s.out.w, row, sizeof(float) * s.out.w);
      }
    }
  }
  bool backward_reads_input() const override { return false; }
  bool backward_reads_output() const override { return false; }
  void backward_input(const float*, const float*, const float* dy, float* dx, int n,
                      float*) const override {
    const LayerSpec& s = spec();
    const int f = s.factor;
    for (int bc = 0; bc < n * s.in.c; ++bc) {
      float* dxc = dx + size_t(bc) * s.in.h * s.in.w;
      const float* dyc = dy + size_t(bc) * s.out.h * s.out.w;
      for (int i = 0; i < s.in.h; ++i)
        for (int j = 0; j < s.in.w; ++j) {
          float acc = 0.0f;
          for (int a = 0; a < f; ++a)
            for (int b = 0; b < f; ++b) acc += dyc[size_t(i * f + a) * s.out.w + j * f + b];
          dxc[size_t(i) * s.in.w + j] = acc;
        }
    }
  }
};

// Copies between the fine layout [C, H f, W f] and the coarse one [C f^2, H, W]; `to_coarse`
// picks the direction. Both layers and both directions of each are this one loop.
void rearrange(const float* src, float* dst, int n, int c, int h, int w, int f, bool to_coarse) {
  const size_t fine_w = size_t(w) * f, plane = size_t(h) * w;
  for (int b = 0; b < n; ++b)
    for (int ch = 0; ch < c; ++ch) {
      const size_t fine = (size_t(b) * c + ch) * plane * f * f;
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
