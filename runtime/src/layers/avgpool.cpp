// avgpool: y[c, oy, ox] = sum of the window over the zero-padded input / (kh * kw)
// (padding counts in the divisor, as PyTorch's count_include_pad=True default).
#include <cstring>

#include "factories.h"

namespace ebm {

namespace {

class AvgPool final : public Layer {
 public:
  using Layer::Layer;

  void forward(const float* x, float* y, int n, float*) const override {
    const LayerSpec& s = spec();
    const float inv = 1.0f / float(s.kernel_h * s.kernel_w);
    for (int bc = 0; bc < n * s.in.c; ++bc) {
      const float* xc = x + size_t(bc) * s.in.h * s.in.w;
      float* yc = y + size_t(bc) * s.out.h * s.out.w;
      for (int oy = 0; oy < s.out.h; ++oy)
        for (int ox = 0; ox < s.out.w; ++ox) {
          float acc = 0.0f;
          for (int i = 0; i < s.kernel_h; ++i) {
            const int iy = oy * s.stride_h - s.pad.top + i;
            if (iy < 0 || iy >= s.in.h) continue;
            for (int j = 0; j < s.kernel_w; ++j) {
              const int ix = ox * s.stride_w - s.pad.left + j;
              if (ix >= 0 && ix < s.in.w) acc += xc[size_t(iy) * s.in.w + ix];
            }
          }
          yc[size_t(oy) * s.out.w + ox] = acc * inv;
        }
    }
  }

  bool backward_reads_input() const override { return false; }
  bool backward_reads_output() const override { return false; }
  void backward_input(const float*, const float*, const float* dy, float* dx, int n,
                      float*) const override {
    const LayerSpec& s = spec();
    const float inv = 1.0f / float(s.kernel_h * s.kernel_w);
    std::memset(dx, 0, sizeof(float) * size_t(n) * size_t(s.in.size()));
    for (int bc = 0; bc < n * s.in.c; ++bc) {
      float* dxc = dx + size_t(bc) * s.in.h * s.in.w;
      const float* dyc = dy + size_t(bc) * s.out.h * s.out.w;
      for (int oy = 0; oy < s.out.h; ++oy)
        for (int ox = 0; ox < s.out.w; ++ox) {
          const float g = dyc[size_t(oy) * s.out.w + ox] * inv;
          for (int i = 0; i < s.kernel_h; ++i) {
            const int iy = oy * s.stride_h - s.pad.top + i;
            if (iy < 0 || iy >= s.in.h) continue;
            for (int j = 0; j < s.kernel_w; ++j) {
              const int ix = ox * s.stride_w - s.pad.left + j;
              if (ix >= 0 && ix < s.in.w) dxc[size_t(iy) * s.in.w + ix] += g;
            }
          }
        }
    }
  }
};

}  // namespace

std::unique_ptr<Layer> make_avgpool(const LayerSpec& spec) {
  return std::make_unique<AvgPool>(spec);
}

}  // namespace ebm
