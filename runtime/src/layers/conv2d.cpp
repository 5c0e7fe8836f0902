// conv2d as im2col + GEMM, per image:
//   col[K = C*kh*kw, P = Ho*Wo]   (row (c*kh + i)*kw + j, column oy*Wo + ox)
//   y[O, P] = W[O, K] * col + bias          forward
//   dcol[K, P] = W^T * dy[O, P]; dx = col2im(dcol)   backward with respect to the input
#include <cstring>

#include "../gemm.h"
#include "factories.h"

namespace ebm {

namespace {

class Conv2d final : public Layer {
 public:
  Conv2d(const LayerSpec& s, const Model& m)
      : Layer(s),
        k_(s.in.c * s.kernel_h * s.kernel_w),
        p_(s.out.h * s.out.w),
        pointwise_(s.kernel_h == 1 && s.kernel_w == 1 && s.stride_h == 1 && s.stride_w == 1 &&
                   s.pad.top == 0 && s.pad.left == 0 && s.pad.bottom == 0 && s.pad.right == 0) {
    weight_ = m.tensor(s.tensor("weight")->name).data;
    if (s.bias) bias_ = m.tensor(s.tensor("bias")->name).data;
  }

  size_t scratch_floats(int) const override { return pointwise_ ? 0 : size_t(k_) * p_; }

  void forward(const float* x, float* y, int n, float* col) const override {
    const LayerSpec& s = spec();
    for (int b = 0; b < n; ++b) {
      const float* xb = x + size_t(b) * s.in.size();
      float* yb = y + size_t(b) * s.out.size();
      const float* src = xb;
      if (!pointwise_) {
        im2col(xb, col);
        src = col;
      }
      if (!bias_.empty())
        for (int o = 0; o < s.out.c; ++o)
          for (int p = 0; p < p_; ++p) yb[size_t(o) * p_ + p] = bias_[o];
      gemm_nn(s.out.c, p_, k_, weight_.data(), k_, src, p_, yb, p_, !bias_.empty());
    }
  }

  void backward_input(const float*, const float*, const float* dy, float* dx, int n,
                      float* dcol) const override {
    const LayerSpec& s = spec();
    for (int b = 0; b < n; ++b) {
      const float* dyb = dy + size_t(b) * s.out.size();
      float* dxb = dx + size_t(b) * s.in.size();
      if (pointwise_) {
        gemm_tn(k_, p_, s.out.c, weight_.data(), k_, dyb, p_, dxb, p_);
        continue;
      }
      gemm_tn(k_, p_, s.out.c, weight_.data(), k_, dyb, p_, dcol, p_);
      col2im(dcol, dxb);
    }
  }

 private:
  void im2col(const float* x, float* col) const {
    const LayerSpec& s = spec();
    const int wo = s.out.w;
    for (int c = 0; c < s.in.c; ++c)
      for (int i = 0; i < s.kernel_h; ++i)
        for (int j = 0; j < s.kernel_w; ++j) {
          float* row = col + size_t((c * s.kernel_h + i) * s.kernel_w + j) * p_;
          for (int oy = 0; oy < s.out.h; ++oy) {
            const int iy = oy * s.stride_h - s.pad.top + i;
            float* out = row + size_t(oy) * wo;
            if (iy < 0 || iy >= s.in.h) {
              std::memset(out, 0, sizeof(float) * size_t(wo));
              continue;
            }
            const float* in = x + (size_t(c) * s.in.h + iy) * s.in.w;
            for (int ox = 0; ox < wo; ++ox) {
              const int ix = ox * s.stride_w - s.pad.left + j;
              out[ox] = (ix >= 0 && ix < s.in.w) ? in[ix] : 0.0f;
            }
          }
        }
  }

  void col2im(const float* col, float* dx) const {
    const LayerSpec& s = spec();
    const int wo = s.out.w;
    std::memset(dx, 0, sizeof(float) * size_t(s.in.size()));
    for (int c = 0; c < s.in.c; ++c)
      for (int i = 0; i < s.kernel_h; ++i)
        for (int j = 0; j < s.kernel_w; ++j) {
          const float* row = col + size_t((c * s.kernel_h + i) * s.kernel_w + j) * p_;
          for (int oy = 0; oy < s.out.h; ++oy) {
            const int iy = oy * s.stride_h - s.pad.top + i;
            if (iy < 0 || iy >= s.in.h) continue;
            const float* src = row + size_t(oy) * wo;
            float* out = dx + (size_t(c) * s.in.h + iy) * s.in.w;
            for (int ox = 0; ox < wo; ++ox) {
              const int ix = ox * s.stride_w - s.pad.left + j;
              if (ix >= 0 && ix < s.in.w) out[ix] += src[ox];
            }
          }
        }
  }

  int k_, p_;
  bool pointwise_;
  std::vector<float> weight_, bias_;
};

}  // namespace

std::unique_ptr<Layer> make_conv2d(const LayerSpec& spec, const Model& m) {
  return std::make_unique<Conv2d>(spec, m);
}

}  // namespace ebm
