// conv2d as GEMM over chunks of images. With K = C*kh*kw, P = Ho*Wo and a chunk of nb images
// (N = nb*P columns, image-major):
//   forward:  y_chunk[O, N] = W[O, K] x col[K, N] + bias     col = im2col(x), packed directly
//   backward: dcol[K, N] = W^T[K, O] x dy_chunk[O, N];       dx = col2im(dcol)
// W and W^T are packed once, at construction. Chunks hold enough images for the GEMM to work on
// wide panels while the packed operand stays within the L2 cache.
#include <algorithm>
#include <cstring>

#include "../gemm.h"
#include "factories.h"

namespace ebm {

namespace {

// About 1 MB of packed operand per chunk.
constexpr size_t kChunkFloats = size_t(1) << 18;

class Conv2d final : public Layer {
 public:
  Conv2d(const LayerSpec& s, const Model& m)
      : Layer(s), k_(s.in.c * s.kernel_h * s.kernel_w), p_(s.out.h * s.out.w) {
    const std::vector<float>& w = m.tensor(s.tensor("weight")->name).data;
    forward_a_.resize(packed_a_floats(s.out.c, k_));
    pack_a(w.data(), k_, false, s.out.c, k_, forward_a_.data());
    backward_a_.resize(packed_a_floats(k_, s.out.c));
    pack_a(w.data(), k_, true, k_, s.out.c, backward_a_.data());
    if (s.bias) bias_ = m.tensor(s.tensor("bias")->name).data;
    const size_t depth = size_t(std::max(k_, s.out.c));
    chunk_ = int(std::max<size_t>(1, kChunkFloats / (depth * size_t(p_))));
  }

  // Packed operand and GEMM output, for one chunk.
  size_t scratch_floats(int n) const override {
    const int cols = std::min(n, chunk_) * p_;
    const int depth = std::max(k_, spec().out.c);
    return packed_b_floats(depth, cols) + size_t(depth) * size_t(cols);
  }

  void forward(const float* x, float* y, int n, float* scratch) const override {
    const LayerSpec& s = spec();
    const float* bias = bias_.empty() ? nullptr : bias_.data();
    for (int b0 = 0; b0 < n; b0 += chunk_) {
      const int nb = std::min(chunk_, n - b0), cols = nb * p_;
      float* packed = scratch;
      for (int kk = 0; kk < k_; ++kk)
        for (int b = 0; b < nb; ++b) im2col_row(x + size_t(b0 + b) * s.in.size(), kk, b * p_, cols, packed);
      if (p_ % kGemmNR == 0) {
        // Every image starts on a panel boundary: write each image's output in place.
        for (int b = 0; b < nb; ++b)
          multiply_packed(s.out.c, p_, k_, forward_a_.data(), packed + size_t(b) * p_ * k_,
                          y + size_t(b0 + b) * s.out.size(), p_, bias);
        continue;
      }
      float* out = packed + packed_b_floats(k_, cols);
      multiply_packed(s.out.c, cols, k_, forward_a_.data(), packed, out, cols, bias);
      for (int b = 0; b < nb; ++b)
        for (int o = 0; o < s.out.c; ++o)
          std::memcpy(y + size_t(b0 + b) * s.out.size() + size_t(o) * p_,
                      out + size_t(o) * cols + size_t(b) * p_, sizeof(float) * size_t(p_));
    }
  }

  void backward_input(const float*, const float*, const float* dy, float* dx, int n,
                      float* scratch) const override {
    const LayerSpec& s = spec();
    const int oc = s.out.c;
    for (int b0 = 0; b0 < n; b0 += chunk_) {
      const int nb = std::min(chunk_, n - b0), cols = nb * p_;
      float* packed = scratch;
      float* dcol = packed + packed_b_floats(oc, cols);
      for (int o = 0; o < oc; ++o)
        for (int b = 0; b < nb; ++b) {
          const float* src = dy + size_t(b0 + b) * s.out.size() + size_t(o) * p_;
          write_packed(packed, oc, o, b * p_, cols, p_, [src](int t) { return src[t]; });
        }
      multiply_packed(k_, cols, oc, backward_a_.data(), packed, dcol, cols);
      for (int b = 0; b < nb; ++b) col2im(dcol + size_t(b) * p_, cols, dx + size_t(b0 + b) * s.in.size());
    }
  }

 private:
  // Writes value(t) for t in [0, len) to columns [col, col + len) of row p of packed panels
  // (depth k, n columns in all; the zero padding of the last panel is written by the caller's
  // full coverage of [0, n) plus the tail fill below).
  template <class Value>
  static void write_packed(float* packed, int k, int p, int col, int n, int len, Value value) {
    int t = 0;
    while (t < len) {
      const int c = col + t, panel = c / kGemmNR, lane = c % kGemmNR;
      const int piece = std::min(kGemmNR - lane, len - t);
      float* dst = packed + size_t(panel) * kGemmNR * k + size_t(p) * kGemmNR + lane;
      for (int q = 0; q < piece; ++q) dst[q] = value(t + q);
      t += piece;
      if (c + piece == n && lane + piece < kGemmNR)  // zero the padding after the last column
        std::memset(dst + piece, 0, sizeof(float) * size_t(kGemmNR - lane - piece));
    }
  }

  // Row kk = (c, i, j) of one image's im2col matrix, written to packed columns [col, col + P):
  // value[oy * Wo + ox] = x[c, iy, ix] with iy = oy * sh - pad_top + i, ix = ox * sw - pad_left + j,
  // zero outside the image.
  void im2col_row(const float* x, int kk, int col, int n, float* packed) const {
    const LayerSpec& s = spec();
    const int j = kk % s.kernel_w, i = (kk / s.kernel_w) % s.kernel_h, c = kk / (s.kernel_w * s.kernel_h);
    const int wo = s.out.w, sw = s.stride_w, off = j - s.pad.left;
    for (int oy = 0; oy < s.out.h; ++oy) {
      const int iy = oy * s.stride_h - s.pad.top + i;
      const int at = col + oy * wo;
      if (iy < 0 || iy >= s.in.h) {
        write_packed(packed, k_, kk, at, n, wo, [](int) { return 0.0f; });
        continue;
      }
      const float* src = x + (size_t(c) * s.in.h + iy) * s.in.w;
      const int w = s.in.w;
      write_packed(packed, k_, kk, at, n, wo, [src, sw, off, w](int ox) {
        const int ix = ox * sw + off;
        return ix >= 0 && ix < w ? src[ix] : 0.0f;
      });
    }
  }

  // dx (one image) = sum over the im2col rows of dcol (row stride ld) scattered back.
  void col2im(const float* dcol, int ld, float* dx) const {
    const LayerSpec& s = spec();
    std::memset(dx, 0, sizeof(float) * size_t(s.in.size()));
    const int wo = s.out.w, sw = s.stride_w;
    for (int kk = 0; kk < k_; ++kk) {
      const int j = kk % s.kernel_w, i = (kk / s.kernel_w) % s.kernel_h, c = kk / (s.kernel_w * s.kernel_h);
      const int off = j - s.pad.left;
      const int ox_lo = std::min(wo, off >= 0 ? 0 : (-off + sw - 1) / sw);
      const int ox_hi = std::max(ox_lo, std::min(wo, (s.in.w - off + sw - 1) / sw));
      const float* row = dcol + size_t(kk) * ld;
      for (int oy = 0; oy < s.out.h; ++oy) {
        const int iy = oy * s.stride_h - s.pad.top + i;
        if (iy < 0 || iy >= s.in.h) continue;
        const float* src = row + size_t(oy) * wo;
        float* dst = dx + (size_t(c) * s.in.h + iy) * s.in.w;
        for (int ox = ox_lo; ox < ox_hi; ++ox) dst[ox * sw + off] += src[ox];
      }
    }
  }

  int k_, p_, chunk_;
  std::vector<float> forward_a_, backward_a_, bias_;
};

}  // namespace

std::unique_ptr<Layer> make_conv2d(const LayerSpec& spec, const Model& m) {
  return std::make_unique<Conv2d>(spec, m);
}

}  // namespace ebm
