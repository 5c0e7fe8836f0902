// conv2d as GEMM over chunks of images. With K = C*kh*kw, P = Ho*Wo and a chunk of nb images
// (N = nb*P columns, image-major):
//   forward:  y_chunk[O, N] = W[O, K] x col[K, N] + bias     col = im2col(x), packed directly
//   backward: dcol[K, N] = W^T[K, O] x dy_chunk[O, N];       dx = col2im(dcol)
// W and W^T are packed once, at construction. Chunks hold enough images for the GEMM to work on
// wide panels while the packed operand stays within the L2 cache.
//
// A stride-1 convolution whose padding widens a row by little skips im2col and col2im (Shifted):
// with the input zero-padded to Hp x Wp, output column q = oy * Wp + ox of row (c, i, j) of the
// im2col matrix is x_pad[c, q + i * Wp + j], so every row of the GEMM's B is a view of the
// padded image at a fixed offset, read in place by multiply_shifted. The columns ox >= Wo are
// computed and dropped. dx is the same kind of convolution of dy (padded by kernel - 1 - pad)
// with the kernel flipped and its channels swapped, so col2im goes too.
#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

#include "../gemm.h"
#include "../vec.h"
#include "factories.h"

namespace ebm {

namespace {

// About 1 MB of packed operand per chunk.
constexpr size_t kChunkFloats = size_t(1) << 18;

// One convolution in the shifted form: `in` channels of in_h x in_w, padded by `pad`, a kernel of
// kh x kw, stride 1, into out_c channels; W packed as [out_c, in * kh * kw].
class Shifted {
 public:
  Shifted(int in, int in_h, int in_w, Padding pad, int kh, int kw, int out_c,
          const std::vector<float>& w_rows)
      : in_(in), in_h_(in_h), in_w_(in_w), out_c_(out_c), pad_(pad),
        hp_(in_h + pad.top + pad.bottom), wp_(in_w + pad.left + pad.right),
        out_h_(hp_ - kh + 1), out_w_(wp_ - kw + 1), k_(in * kh * kw) {
    a_.resize(packed_a_floats(out_c, k_));
    pack_a(w_rows.data(), k_, false, out_c, k_, a_.data());
    for (int c = 0; c < in; ++c)
      for (int i = 0; i < kh; ++i)
        for (int j = 0; j < kw; ++j) offsets_.push_back((c * hp_ + i) * wp_ + j);
    const size_t cols = packed_b_floats(1, cols_());  // whole tiles
    padded_ = std::max(size_t(in) * hp_ * wp_, size_t(offsets_.back()) + cols);
  }

  size_t scratch_floats() const { return padded_ + size_t(out_c_) * cols_(); }

  // y (out_c x out_h x out_w) = bias + W * x (in x in_h x in_w), one image.
  void run(const float* x, float* y, const float* bias, float* scratch) const {
    float* xp = scratch;
    float* yp = scratch + padded_;
    std::memset(xp, 0, sizeof(float) * size_t(pad_.top) * wp_);
    for (int c = 0; c < in_; ++c) {
      float* row = xp + (size_t(c) * hp_ + pad_.top) * wp_;
      for (int y0 = 0; y0 < in_h_; ++y0, row += wp_) {
        std::memset(row, 0, sizeof(float) * size_t(pad_.left));
        std::memcpy(row + pad_.left, x + (size_t(c) * in_h_ + y0) * in_w_, sizeof(float) * size_t(in_w_));
        std::memset(row + pad_.left + in_w_, 0, sizeof(float) * size_t(pad_.right));
      }
      // This plane's bottom padding and the next one's top padding (the slack after the last).
      const size_t gap = c + 1 < in_ ? size_t(pad_.bottom + pad_.top) * wp_
                                     : padded_ - size_t(row - xp);
      std::memset(row, 0, sizeof(float) * gap);
    }
    const int n = cols_();
    multiply_shifted(out_c_, n, k_, a_.data(), xp, offsets_.data(), yp, n, bias);
    for (int o = 0; o < out_c_; ++o)
      for (int oy = 0; oy < out_h_; ++oy)
        std::memcpy(y + (size_t(o) * out_h_ + oy) * out_w_, yp + size_t(o) * n + size_t(oy) * wp_,
                    sizeof(float) * size_t(out_w_));
  }

 private:
  int cols_() const { return out_h_ * wp_; }

  int in_, in_h_, in_w_, out_c_;
  Padding pad_;
  int hp_, wp_, out_h_, out_w_, k_;
  size_t padded_ = 0;
  std::vector<float> a_;
  std::vector<int> offsets_;
};

class Conv2d final : public Layer {
 public:
  Conv2d(const LayerSpec& s, const Model& m)
      : Layer(s), k_(s.in.c * s.kernel_h * s.kernel_w), p_(s.out.h * s.out.w) {
    const std::vector<float>& w = m.tensor(s.tensor("weight")->name).data;
    if (s.bias) bias_ = m.tensor(s.tensor("bias")->name).data;
    const size_t depth = size_t(std::max(k_, s.out.c));
    chunk_ = int(std::max<size_t>(1, kChunkFloats / (depth * size_t(p_))));
    if (!shiftable(s)) {
      forward_a_.resize(packed_a_floats(s.out.c, k_));
      pack_a(w.data(), k_, false, s.out.c, k_, forward_a_.data());
      backward_a_.resize(packed_a_floats(k_, s.out.c));
      pack_a(w.data(), k_, true, k_, s.out.c, backward_a_.data());
    } else {
      const int kh = s.kernel_h, kw = s.kernel_w, ic = s.in.c, oc = s.out.c;
      forward_shifted_.emplace(ic, s.in.h, s.in.w, s.pad, kh, kw, oc, w);
      // dx = W flipped, channels swapped (w_t[c, (o, i, j)] = W[o, c, kh-1-i, kw-1-j]) over dy
      // padded by kernel - 1 - pad.
      std::vector<float> w_t(w.size());
      for (int o = 0; o < oc; ++o)
        for (int c = 0; c < ic; ++c)
          for (int i = 0; i < kh; ++i)
            for (int j = 0; j < kw; ++j)
              w_t[((size_t(c) * oc + o) * kh + i) * kw + j] =
                  w[((size_t(o) * ic + c) * kh + (kh - 1 - i)) * kw + (kw - 1 - j)];
      const Padding back{kh - 1 - s.pad.top, kw - 1 - s.pad.left, kh - 1 - s.pad.bottom,
                         kw - 1 - s.pad.right};
      backward_shifted_.emplace(oc, s.out.h, s.out.w, back, kh, kw, ic, w_t);
    }
  }

  // Packed operand, GEMM output and one im2col row, for one chunk (the shifted form: the padded
  // image and the padded output of one image, forward or backward).
  size_t scratch_floats(int n) const override {
    if (forward_shifted_)
      return std::max(forward_shifted_->scratch_floats(), backward_shifted_->scratch_floats());
    const int cols = std::min(n, chunk_) * p_;
    const int depth = std::max(k_, spec().out.c);
    return packed_b_floats(depth, cols) + size_t(depth) * size_t(cols) + size_t(spec().out.w);
  }

  void forward(const float* x, float* y, int n, float* scratch) const override {
    const LayerSpec& s = spec();
    const float* bias = bias_.empty() ? nullptr : bias_.data();
    if (forward_shifted_) {
      for (int b = 0; b < n; ++b)
        forward_shifted_->run(x + size_t(b) * s.in.size(), y + size_t(b) * s.out.size(), bias, scratch);
      return;
    }
    for (int b0 = 0; b0 < n; b0 += chunk_) {
      const int nb = std::min(chunk_, n - b0), cols = nb * p_;
      float* packed = scratch;
      float* row = packed + packed_b_floats(k_, cols) + size_t(s.out.c) * cols;
      for (int kk = 0; kk < k_; ++kk)
        for (int b = 0; b < nb; ++b)
          im2col_row(x + size_t(b0 + b) * s.in.size(), kk, b * p_, cols, packed, row);
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
    if (backward_shifted_) {
      for (int b = 0; b < n; ++b)
        backward_shifted_->run(dy + size_t(b) * s.out.size(), dx + size_t(b) * s.in.size(), nullptr,
                               scratch);
      return;
    }
    for (int b0 = 0; b0 < n; b0 += chunk_) {
      const int nb = std::min(chunk_, n - b0), cols = nb * p_;
      float* packed = scratch;
      float* dcol = packed + packed_b_floats(oc, cols);
      for (int o = 0; o < oc; ++o)
        for (int b = 0; b < nb; ++b) {
          write_packed(packed, oc, o, b * p_, cols, dy + size_t(b0 + b) * s.out.size() + size_t(o) * p_, p_);
        }
      multiply_packed(k_, cols, oc, backward_a_.data(), packed, dcol, cols);
      for (int b = 0; b < nb; ++b) col2im(dcol + size_t(b) * p_, cols, dx + size_t(b0 + b) * s.in.size());
    }
  }

 private:
  // The shifted form pays for the padded columns it computes and drops: taken where they add at
  // most a quarter to a row, forward and backward.
  static bool shiftable(const LayerSpec& s) {
    const Padding& p = s.pad;
    if (s.stride_h != 1 || s.stride_w != 1) return false;
    if (p.top >= s.kernel_h || p.bottom >= s.kernel_h || p.left >= s.kernel_w || p.right >= s.kernel_w)
      return false;
    if (s.in.c <= 0 || s.out.c <= 0 || s.out.h <= 0 || s.out.w <= 0) return false;
    // dy padded by kernel - 1 - pad is as wide as the input plus kernel - 1.
    const int wp = s.in.w + p.left + p.right, wp_back = s.in.w + s.kernel_w - 1;
    return 4 * wp <= 5 * s.out.w && 4 * wp_back <= 5 * s.in.w;
  }

  // Copies len floats to columns [col, col + len) of row p of packed panels (depth k, n columns;
  // the padding after column n - 1 is zeroed when the copy reaches it).
  static void write_packed(float* packed, int k, int p, int col, int n, const float* src, int len) {
    int t = 0;
    while (t < len) {
      const int c = col + t, panel = c / kGemmNR, lane = c % kGemmNR;
      const int piece = std::min(kGemmNR - lane, len - t);
      float* dst = packed + size_t(panel) * kGemmNR * k + size_t(p) * kGemmNR + lane;
      std::memcpy(dst, src + t, sizeof(float) * size_t(piece));
      t += piece;
      if (c + piece == n && lane + piece < kGemmNR)
        std::memset(dst + piece, 0, sizeof(float) * size_t(kGemmNR - lane - piece));
    }
  }

  // The output columns ox whose input column ox * sw + off lies inside the image: [lo, hi).
  void valid_columns(int off, int* lo, int* hi) const {
    const LayerSpec& s = spec();
    const int sw = s.stride_w, wo = s.out.w;
    *lo = std::min(wo, off >= 0 ? 0 : (-off + sw - 1) / sw);
    *hi = std::max(*lo, std::min(wo, (s.in.w - off + sw - 1) / sw));
  }

  // Row kk = (c, i, j) of one image's im2col matrix, written to packed columns [col, col + P):
  // value[oy * Wo + ox] = x[c, iy, ix] with iy = oy * sh - pad_top + i, ix = ox * sw - pad_left + j,
  // zero outside the image. `row` holds Wo floats.
  void im2col_row(const float* x, int kk, int col, int n, float* packed, float* row) const {
    const LayerSpec& s = spec();
    const int j = kk % s.kernel_w, i = (kk / s.kernel_w) % s.kernel_h, c = kk / (s.kernel_w * s.kernel_h);
    const int wo = s.out.w, sw = s.stride_w, off = j - s.pad.left;
    int lo, hi;
    valid_columns(off, &lo, &hi);
    for (int oy = 0; oy < s.out.h; ++oy) {
      const int iy = oy * s.stride_h - s.pad.top + i;
      if (iy < 0 || iy >= s.in.h) {
        std::memset(row, 0, sizeof(float) * size_t(wo));
      } else {
        const float* src = x + (size_t(c) * s.in.h + iy) * s.in.w;
        std::memset(row, 0, sizeof(float) * size_t(lo));
        std::memset(row + hi, 0, sizeof(float) * size_t(wo - hi));
        int ox = lo;
        if (sw == 1) {
          std::memcpy(row + lo, src + lo + off, sizeof(float) * size_t(hi - lo));
          ox = hi;
        } else if (sw == 2) {
          // Vector loads of 2 * kLanes inputs while they stay inside the row.
          for (; ox + simd::kLanes <= hi && 2 * ox + off + 2 * simd::kLanes <= s.in.w; ox += simd::kLanes) {
            const float* p = src + 2 * ox + off;
            simd::store(row + ox, simd::even_lanes(simd::load(p), simd::load(p + simd::kLanes)));
          }
        }
        for (; ox < hi; ++ox) row[ox] = src[ox * sw + off];
      }
      write_packed(packed, k_, kk, col + oy * wo, n, row, wo);
    }
  }

  // dx (one image) = the im2col rows of dcol (row stride ld) scattered back and summed.
  void col2im(const float* dcol, int ld, float* dx) const {
    const LayerSpec& s = spec();
    std::memset(dx, 0, sizeof(float) * size_t(s.in.size()));
    const int wo = s.out.w, sw = s.stride_w;
    for (int kk = 0; kk < k_; ++kk) {
      const int j = kk % s.kernel_w, i = (kk / s.kernel_w) % s.kernel_h, c = kk / (s.kernel_w * s.kernel_h);
      const int off = j - s.pad.left;
      int lo, hi;
      valid_columns(off, &lo, &hi);
      const float* row = dcol + size_t(kk) * ld;
      for (int oy = 0; oy < s.out.h; ++oy) {
        const int iy = oy * s.stride_h - s.pad.top + i;
        if (iy < 0 || iy >= s.in.h) continue;
        const float* src = row + size_t(oy) * wo;
        float* dst = dx + (size_t(c) * s.in.h + iy) * s.in.w;
        int ox = lo;
        if (sw == 2) {
          // (v0, 0, v1, 0, ...) added over 2 * kLanes outputs while they stay inside the row.
          for (; ox + simd::kLanes <= hi && 2 * ox + off + 2 * simd::kLanes <= s.in.w; ox += simd::kLanes) {
            simd::Vec lo_half, hi_half;
            simd::interleave_zeros(simd::load(src + ox), &lo_half, &hi_half);
            float* p = dst + 2 * ox + off;
            simd::store(p, simd::load(p) + lo_half);
            simd::store(p + simd::kLanes, simd::load(p + simd::kLanes) + hi_half);
          }
        }
        for (; ox < hi; ++ox) dst[ox * sw + off] += src[ox];
      }
    }
  }

  int k_, p_, chunk_;
  std::vector<float> forward_a_, backward_a_, bias_;
  std::optional<Shifted> forward_shifted_, backward_shifted_;
};

}  // namespace

std::unique_ptr<Layer> make_conv2d(const LayerSpec& spec, const Model& m) {
  return std::make_unique<Conv2d>(spec, m);
}

}  // namespace ebm
