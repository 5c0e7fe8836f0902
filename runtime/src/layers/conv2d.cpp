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
//
// A 3x3 one of those with enough channels can take Winograd's F(2x2, 3x3) instead (below;
// stride1_form and ebm/kernels.h say where): 16 multiply-adds per 2x2 outputs and channel pair
// instead of 36; or its F(4x4, 3x3) (Winograd4): 36 per 4x4 outputs instead of 144.
//
// A strided one goes the same way once its padded input is split into stride phases (plane
// (c, pi, pj) holding x_pad[c, sh * y + pi, sw * x + pj]): row (c, i, j) of the im2col matrix is
// then phase plane (c, i % sh, j % sw) from offset (i / sh, j / sw) (PhasedForward), and each
// phase of dx is a stride-1 convolution of dy by the taps that land on it (PhasedBackward).
// A 3x3 one of stride 2 with enough channels can take a stride-2 form of Winograd's instead
// (Stride2Winograd, Stride2WinogradBackward): 25 multiply-adds per 2x2 outputs and channel pair
// instead of 36. The Winograd forms run their GEMMs over chunks of block rows that may span the
// images of a batch (winograd_chunk_rows), so that small planes still fill whole GEMM tiles.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <numeric>
#include <type_traits>
#include <vector>

#include "ebm/kernels.h"

#include "../gemm.h"
#include "../vec.h"
#include "factories.h"

namespace ebm {

namespace {

// About 1 MB of packed operand per chunk.
constexpr size_t kChunkFloats = size_t(1) << 18;

std::atomic<bool> g_conv_row_tiles{true};

// Whether the shifted forms write their output rows straight into the compact image
// (multiply_shifted_rows): where a row's own whole tiles span no more columns than the padded row
// (so no more is computed than by tiles across the padded rows), unless set_conv_row_tiles(false).
bool row_tiles_fit(int width, int padded_width) {
  return g_conv_row_tiles.load() && (width + kGemmNR - 1) / kGemmNR * kGemmNR <= padded_width;
}

using simd::copy_row;

// y (out_c planes of out_h x out_w) = bias + packed A [out_c, k] x the shifted rows of xp
// (row p at xp + offsets[p]), whose output rows run padded_w wide: straight into y in row tiles
// (`rows`, row_tiles_fit), else in tiles across the padded rows into yp (out_c * out_h *
// padded_w floats of scratch), the columns ox >= out_w computed there and dropped as the rows are
// copied out. The shifted form and the stride phases' forward pass both end this way.
void shifted_product(int out_c, int out_h, int out_w, int padded_w, int k, const float* a,
                     const float* xp, const int* offsets, const float* bias, bool rows, float* yp,
                     float* y) {
  if (rows) {
    multiply_shifted_rows(out_c, out_h, out_w, padded_w, k, a, xp, offsets, y, out_h * out_w, bias);
    return;
  }
  const int n = out_h * padded_w;
  multiply_shifted(out_c, n, k, a, xp, offsets, yp, n, bias);
  for (int o = 0; o < out_c; ++o)
    for (int oy = 0; oy < out_h; ++oy)
      copy_row(yp + size_t(o) * n + size_t(oy) * padded_w, out_w, y + (size_t(o) * out_h + oy) * out_w);
}

// dst[j] += src[j] for j in [0, len), as copy_row.
void add_row(const float* src, int len, float* dst) {
  int j = 0;
  for (; j + simd::kLanes <= len; j += simd::kLanes)
    simd::store(dst + j, simd::load(dst + j) + simd::load(src + j));
  if (j < len) {
    const int rest = len - j;
    simd::store_first(dst + j, simd::load_first(dst + j, rest) + simd::load_first(src + j, rest), rest);
  }
}

// The `in` planes of x (in_h x in_w each) into `out` as planes of hp x wp: pad.top zero rows
// above, pad.left zero columns to the left, zeros to the right and below up to wp and hp.
// Each row a vector at a time (copy_row): three library calls per row of a few dozen floats
// cost a tenth of a stride-2 layer's gradient natively.
void pad_planes(const float* x, int in, int in_h, int in_w, Padding pad, int hp, int wp, float* out) {
  const int right = wp - pad.left - in_w;
  for (int c = 0; c < in; ++c) {
    float* plane = out + size_t(c) * hp * wp;
    std::memset(plane, 0, sizeof(float) * size_t(pad.top) * wp);
    float* r = plane + size_t(pad.top) * wp;
    const float* src = x + size_t(c) * in_h * in_w;
    for (int y0 = 0; y0 < in_h; ++y0, r += wp, src += in_w) {
      for (int j = 0; j < pad.left; ++j) r[j] = 0.0f;
      copy_row(src, in_w, r + pad.left);
      for (int j = 0; j < right; ++j) r[pad.left + in_w + j] = 0.0f;
    }
    std::memset(r, 0, sizeof(float) * size_t(hp - pad.top - in_h) * wp);
  }
}

// One direction of a convolution by a kernel fixed at construction, for n images: y (out_c x
// out_h x out_w) = bias + W * x (in x in_h x in_w, zero-padded), forward or (flipped) backward,
// image b at x + b * x_stride into y + b * y_stride.
class PlaneConv {
 public:
  virtual ~PlaneConv() = default;
  virtual size_t scratch_floats(int n) const = 0;
  virtual void run(const float* x, size_t x_stride, float* y, size_t y_stride, int n,
                   const float* bias, float* scratch) const = 0;
};

// A form that takes one image at a time (the Winograd forms run their GEMMs across images).
class ImageConv : public PlaneConv {
 public:
  size_t scratch_floats(int) const final { return image_scratch_floats(); }
  void run(const float* x, size_t x_stride, float* y, size_t y_stride, int n, const float* bias,
           float* scratch) const final {
    for (int b = 0; b < n; ++b)
      run_image(x + size_t(b) * x_stride, y + size_t(b) * y_stride, bias, scratch);
  }

 protected:
  virtual size_t image_scratch_floats() const = 0;
  virtual void run_image(const float* x, float* y, const float* bias, float* scratch) const = 0;
};

// One convolution in the shifted form: `in` channels of in_h x in_w, padded by `pad`, a kernel of
// kh x kw, stride 1, into out_c channels; W packed as [out_c, in * kh * kw].
class Shifted final : public ImageConv {
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
    rows_ = row_tiles_fit(out_w_, wp_);
  }

  size_t image_scratch_floats() const override {
    return padded_ + (rows_ ? 0 : size_t(out_c_) * cols_());
  }

  void run_image(const float* x, float* y, const float* bias, float* scratch) const override {
    float* xp = scratch;
    pad_planes(x, in_, in_h_, in_w_, pad_, hp_, wp_, xp);
    // The slack after the last plane, which the last rows' whole tiles read.
    const size_t planes = size_t(in_) * hp_ * wp_;
    std::memset(xp + planes, 0, sizeof(float) * (padded_ - planes));
    shifted_product(out_c_, out_h_, out_w_, wp_, k_, a_.data(), xp, offsets_.data(), bias, rows_,
                    scratch + padded_, y);
  }

 private:
  int cols_() const { return out_h_ * wp_; }

  int in_, in_h_, in_w_, out_c_;
  Padding pad_;
  int hp_, wp_, out_h_, out_w_, k_;
  size_t padded_ = 0;
  bool rows_ = false;  // output rows straight into y (row_tiles_fit)
  std::vector<float> a_;
  std::vector<int> offsets_;
};

// src[base + i] for the kLanes lanes i where that lies in [0, w), else 0: one load inside the row,
// a masked one where the vector hangs over either end.
simd::Vec row_vector(const float* src, int w, int base) {
  constexpr int L = simd::kLanes;
  if (base >= 0 && base + L <= w) return simd::load(src + base);
  return simd::load_lanes(src, base, std::clamp(-base, 0, L), std::clamp(w - base, 0, L));
}

// dst[q] = src[q * stride + off] where that lies in [0, w), else 0, for q in [0, n): a row of one
// stride phase of a zero-padded row (PhasedForward), or one row of an im2col row (Conv2d).
void gather_phase(const float* src, int w, int stride, int off, int n, float* dst) {
  using simd::kLanes;
  if (stride == 2) {
    // A vector of outputs from 2 * kLanes inputs at a time (row_vector), the last one stored
    // under a mask past n.
    for (int q = 0; q < n; q += kLanes) {
      const int base = 2 * q + off;
      const simd::Vec v = simd::even_lanes(row_vector(src, w, base), row_vector(src, w, base + kLanes));
      simd::store_first(dst + q, v, std::min(kLanes, n - q));
    }
    return;
  }
  // The q whose source lies inside the row: [lo, hi).
  const int lo = std::clamp(off >= 0 ? 0 : (-off + stride - 1) / stride, 0, n);
  const int hi = std::clamp(w - off > 0 ? (w - off + stride - 1) / stride : 0, lo, n);
  std::memset(dst, 0, sizeof(float) * size_t(lo));
  std::memset(dst + hi, 0, sizeof(float) * size_t(n - hi));
  if (stride == 1) {
    std::memcpy(dst + lo, src + lo + off, sizeof(float) * size_t(hi - lo));
    return;
  }
  for (int q = lo; q < hi; ++q) dst[q] = src[q * stride + off];
}

// Both column phases of one zero-padded row at once, for a stride of 2: even[q] = row[2 q] and
// odd[q] = row[2 q + 1] for q in [0, n), where row[k] = src[k - left] inside [0, w), else 0.
// Half the time of two gather_phase calls (a stride-2 layer's input split: 7.3 against 14.6 µs
// per image of the paper network's second layer natively).
void split_row2(const float* src, int w, int left, int n, float* even, float* odd) {
  using simd::kLanes;
  for (int q = 0; q < n; q += kLanes) {
    const int base = 2 * q - left, valid = std::min(kLanes, n - q);
    const simd::Vec a = row_vector(src, w, base), b = row_vector(src, w, base + kLanes);
    simd::store_first(even + q, simd::even_lanes(a, b), valid);
    simd::store_first(odd + q, simd::odd_lanes(a, b), valid);
  }
}

// One zero-padded row split into its sw column phases: phase p's n floats at out + p *
// phase_floats, its q-th being row[sw q + p], where row[k] = src[k - left] inside [0, w), else 0.
// For split_phases and the tap form's input side.
void split_row(const float* src, int w, int left, int sw, int n, float* out, size_t phase_floats) {
  if (sw == 2) return split_row2(src, w, left, n, out, out + phase_floats);
  for (int p = 0; p < sw; ++p)
    gather_phase(src, w, sw, p - left, n, out + size_t(p) * phase_floats);
}

// Rows (or columns) of a stride phase of an input `size` long, zero-padded by `pad` in all, that
// a kernel of `kernel` taps at `stride` reads into `out` outputs: room for the padded input and
// for the last output's taps.
int phase_extent(int size, int pad, int stride, int out, int kernel) {
  return std::max((size + pad + stride - 1) / stride, out + (kernel - 1) / stride);
}

// The zero-padded image x (channels of `in`) split into its stride phases: plane (c, pi, pj) of
// `out`, hq x wq floats at ((c * sh + pi) * sw + pj) * hq * wq, holds x_pad[c, sh * yq + pi,
// sw * xq + pj], zero wherever that falls outside the image.
void split_phases(const float* x, Shape in, Padding pad, int sh, int sw, int hq, int wq,
                  float* out) {
  // The image's rows in order, each into its row of every column phase: read as one stream (by
  // phase plane, every other row of the image was a stream the prefetchers missed: the layer's
  // input comes from the L3 cache, and a fifth of a stride-2 layer's forward pass went there).
  for (int c = 0; c < in.c; ++c)
    for (int yq = 0; yq < hq; ++yq)
      for (int pi = 0; pi < sh; ++pi) {
        const int iy = sh * yq + pi - pad.top;
        float* first = out + (size_t((c * sh + pi) * sw) * hq + yq) * wq;  // its row of phase 0
        const size_t phase_floats = size_t(hq) * wq;
        if (iy < 0 || iy >= in.h) {
          for (int pj = 0; pj < sw; ++pj)
            std::memset(first + size_t(pj) * phase_floats, 0, sizeof(float) * size_t(wq));
          continue;
        }
        split_row(x + (size_t(c) * in.h + iy) * in.w, in.w, pad.left, sw, wq, first, phase_floats);
      }
}

// The inverse for a gradient: dx[c, y, x] (channels of `in`) = phase plane (pi, pj) of channel c
// at row (y + pad.top) / sh, column (x + pad.left) / sw, where pi = (y + pad.top) % sh and
// pj = (x + pad.left) % sw; in `p` planes lie phase_floats apart by phase (pi * sw + pj),
// channel_floats apart by channel, and their rows row_floats apart.
void merge_phases(const float* p, size_t phase_floats, size_t channel_floats, size_t row_floats,
                  Shape in, Padding pad, int sh, int sw, float* dx) {
  for (int c = 0; c < in.c; ++c)
    for (int y = 0; y < in.h; ++y) {
      const int yp = y + pad.top, pi = yp % sh;
      const float* src = p + size_t(pi * sw) * phase_floats + size_t(c) * channel_floats +
                         size_t(yp / sh) * row_floats;
      float* row = dx + (size_t(c) * in.h + y) * in.w;
      if (sw == 1) {
        copy_row(src + pad.left, in.w, row);
        continue;
      }
      if (sw == 2) {
        // From the first x in phase 0, pairs (phase 0, phase 1) of the same xq, a vector of
        // each at a time.
        const int x0 = pad.left % 2;
        if (x0 == 1) row[0] = src[phase_floats + size_t(pad.left / 2)];
        const float* s0 = src + (x0 + pad.left) / 2;
        const float* s1 = s0 + phase_floats;
        constexpr int L = simd::kLanes;
        int m = 0;
        for (; x0 + 2 * (m + L) <= in.w; m += L) {
          simd::Vec lo, hi;
          simd::interleave(simd::load(s0 + m), simd::load(s1 + m), &lo, &hi);
          simd::store(row + x0 + 2 * m, lo);
          simd::store(row + x0 + 2 * m + L, hi);
        }
        if (const int rest = in.w - x0 - 2 * m; rest > 0) {
          // the row's end under masks: (rest + 1) / 2 values of phase 0, rest / 2 of phase 1
          simd::Vec lo, hi;
          simd::interleave(simd::load_first(s0 + m, (rest + 1) / 2),
                           simd::load_first(s1 + m, rest / 2), &lo, &hi);
          simd::store_first(row + x0 + 2 * m, lo, std::min(rest, L));
          if (rest > L) simd::store_first(row + x0 + 2 * m + L, hi, rest - L);
        }
        continue;
      }
      for (int x = 0; x < in.w; ++x) {
        const int xp = x + pad.left;
        row[x] = src[size_t(xp % sw) * phase_floats + size_t(xp / sw)];
      }
    }
}

// A strided convolution as GEMMs over shifted rows, like Shifted, with the zero-padded input split
// into its stride phases: plane (c, pi, pj) holds x_pad[c, sh * yq + pi, sw * xq + pj], so row
// (c, i, j) of the im2col matrix, at output column q = oy * wq + ox, is plane (c, i % sh, j % sw)
// read from offset (i / sh) * wq + j / sw. The GEMM's B is read in place (no im2col) in the same
// order of sums as the packed GEMM over im2col, so the forward pass is the im2col form's to the
// bit; the columns ox >= out_w are computed and dropped.
class PhasedForward final : public ImageConv {
 public:
  PhasedForward(const LayerSpec& s, const std::vector<float>& w)
      : in_(s.in), out_(s.out), pad_(s.pad), sh_(s.stride_h), sw_(s.stride_w),
        hq_(phase_extent(s.in.h, s.pad.top + s.pad.bottom, sh_, s.out.h, s.kernel_h)),
        wq_(phase_extent(s.in.w, s.pad.left + s.pad.right, sw_, s.out.w, s.kernel_w)),
        k_(s.in.c * s.kernel_h * s.kernel_w) {
    a_.resize(packed_a_floats(out_.c, k_));
    pack_a(w.data(), k_, false, out_.c, k_, a_.data());
    for (int c = 0; c < in_.c; ++c)
      for (int i = 0; i < s.kernel_h; ++i)
        for (int j = 0; j < s.kernel_w; ++j)
          offsets_.push_back(((c * sh_ + i % sh_) * sw_ + j % sw_) * hq_ * wq_ + (i / sh_) * wq_ + j / sw_);
    padded_ = std::max(planes(), size_t(*std::max_element(offsets_.begin(), offsets_.end())) +
                                     packed_b_floats(1, cols()));
    rows_ = row_tiles_fit(out_.w, wq_);
  }

  // Wasted columns per output row (computed and dropped), for choosing this form.
  int waste() const { return wq_ - out_.w; }

  size_t image_scratch_floats() const override {
    return padded_ + (rows_ ? 0 : size_t(out_.c) * cols());
  }

  void run_image(const float* x, float* y, const float* bias, float* scratch) const override {
    float* xp = scratch;
    split_phases(x, in_, pad_, sh_, sw_, hq_, wq_, xp);
    std::memset(xp + planes(), 0, sizeof(float) * (padded_ - planes()));
    shifted_product(out_.c, out_.h, out_.w, wq_, k_, a_.data(), xp, offsets_.data(), bias, rows_,
                    scratch + padded_, y);
  }

 private:
  size_t planes() const { return size_t(in_.c) * sh_ * sw_ * hq_ * wq_; }
  int cols() const { return out_.h * wq_; }

  Shape in_, out_;
  Padding pad_;
  int sh_, sw_, hq_, wq_, k_;
  size_t padded_ = 0;
  bool rows_ = false;  // output rows straight into y (row_tiles_fit)
  std::vector<float> a_;
  std::vector<int> offsets_;
};

// The gradient of a strided convolution by stride phases, no col2im: the entries of dx in phase
// (pi, pj) of the padded input, x_pad[c, sh * yq + pi, sw * xq + pj], are the stride-1 convolution
// of dy with the taps (i, j) = (pi + sh * a, pj + sw * b) alone, flipped and with the channels
// swapped: P[c, yq, xq] = sum_{o, a, b} W[o, c, pi + sh a, pj + sw b] dy[o, yq - a, xq - b]. Each
// phase is one GEMM over shifted rows of dy, zero-padded once for all phases (ha - 1 rows above
// and wb - 1 columns to the left, ha and wb the most taps of a phase), and the phases are then
// interleaved into dx. A phase no tap falls on (a kernel smaller than its stride) is zero.
class PhasedBackward final : public ImageConv {
 public:
  PhasedBackward(const LayerSpec& s, const std::vector<float>& w)
      : in_(s.in), out_(s.out), pad_(s.pad), sh_(s.stride_h), sw_(s.stride_w),
        ha_((s.kernel_h + sh_ - 1) / sh_), wb_((s.kernel_w + sw_ - 1) / sw_),
        ry_((pad_.top + in_.h - 1) / sh_ + 1), rx_((pad_.left + in_.w - 1) / sw_ + 1),
        hd_(std::max(out_.h, ry_) + ha_ - 1), wd_(std::max(out_.w, rx_) + wb_ - 1) {
    const int kh = s.kernel_h, kw = s.kernel_w, oc = out_.c, ic = in_.c;
    size_t most = 0;
    for (int pi = 0; pi < sh_; ++pi)
      for (int pj = 0; pj < sw_; ++pj) {
        Phase ph;
        ph.a = pi < kh ? (kh - pi + sh_ - 1) / sh_ : 0;
        ph.b = pj < kw ? (kw - pj + sw_ - 1) / sw_ : 0;
        ph.k = oc * ph.a * ph.b;
        if (ph.k > 0) {
          // Row (o, a, b) of the GEMM's B is dy padded from row a + ha - ph.a and column
          // b + wb - ph.b; its A for row c is the tap flipped, W[o, c, pi + sh (ph.a - 1 - a),
          // pj + sw (ph.b - 1 - b)].
          std::vector<float> rows(size_t(ic) * ph.k);
          for (int o = 0; o < oc; ++o)
            for (int a = 0; a < ph.a; ++a)
              for (int b = 0; b < ph.b; ++b) {
                const int p = (o * ph.a + a) * ph.b + b;
                ph.offsets.push_back((o * hd_ + a + ha_ - ph.a) * wd_ + b + wb_ - ph.b);
                const int i = pi + sh_ * (ph.a - 1 - a), j = pj + sw_ * (ph.b - 1 - b);
                for (int c = 0; c < ic; ++c)
                  rows[size_t(c) * ph.k + p] = w[((size_t(o) * ic + c) * kh + i) * kw + j];
              }
          ph.packed.resize(packed_a_floats(ic, ph.k));
          pack_a(rows.data(), ph.k, false, ic, ph.k, ph.packed.data());
          most = std::max(most, size_t(ph.offsets.back()));
        }
        phases_.push_back(std::move(ph));
      }
    padded_ = std::max(size_t(oc) * hd_ * wd_, most + packed_b_floats(1, cols()));
  }

  int waste() const { return wd_ - rx_; }
  int columns() const { return rx_; }
  int gemm_columns() const { return cols(); }

  // The padded dy, then every phase's C x cols() results.
  size_t image_scratch_floats() const override {
    return padded_ + phases_.size() * size_t(in_.c) * cols();
  }

  void run_image(const float* dy, float* dx, const float*, float* scratch) const override {
    float* dp = scratch;
    float* p = scratch + padded_;
    const Padding pad{ha_ - 1, wb_ - 1, hd_ - out_.h - (ha_ - 1), wd_ - out_.w - (wb_ - 1)};
    pad_planes(dy, out_.c, out_.h, out_.w, pad, hd_, wd_, dp);
    const size_t planes = size_t(out_.c) * hd_ * wd_;
    std::memset(dp + planes, 0, sizeof(float) * (padded_ - planes));
    const int n = cols();
    const size_t phase_floats = size_t(in_.c) * n;
    for (size_t f = 0; f < phases_.size(); ++f) {
      const Phase& ph = phases_[f];
      float* out = p + f * phase_floats;
      if (ph.k == 0)
        std::memset(out, 0, sizeof(float) * phase_floats);
      else
        multiply_shifted(in_.c, n, ph.k, ph.packed.data(), dp, ph.offsets.data(), out, n);
    }
    // dx[c, y, x] = P_(pi, pj)[c, yq, xq] with y + pad.top = sh yq + pi, x + pad.left = sw xq + pj.
    merge_phases(p, phase_floats, size_t(n), size_t(wd_), in_, pad_, sh_, sw_, dx);
  }

 private:
  struct Phase {
    int a = 0, b = 0, k = 0;    // taps down and across; the GEMM's depth out_c * a * b
    std::vector<float> packed;  // [in_c, k]
    std::vector<int> offsets;   // row (o, a', b') of dy padded
  };
  // Output columns of a phase: ry rows of wd (the columns xq >= rx are dropped).
  int cols() const { return ry_ * wd_; }

  Shape in_, out_;
  Padding pad_;
  int sh_, sw_;
  int ha_, wb_;  // the most taps of a phase, down and across
  int ry_, rx_;  // rows and columns of a phase plane that dx needs
  int hd_, wd_;  // dy padded
  size_t padded_ = 0;
  std::vector<Phase> phases_;
};

std::atomic<Conv3x3Form> g_conv3x3_form{Conv3x3Form::kAuto};
std::atomic<bool> g_conv_taps{true};
std::atomic<ConvTapRows> g_conv_tap_rows{ConvTapRows::kAuto};
std::atomic<ConvStridedForm> g_conv_strided_form{ConvStridedForm::kAuto};

// Below this many input channels (the depth of its 16 GEMMs) Winograd's transforms cost more
// than the multiply-adds they save, whatever the form asked for.
constexpr int kWinogradMinDepth = 8;
// The automatic form takes it where both the input and the output channels (the GEMMs' depth
// and rows) are at least this many. In wasm, one layer alone, F(4x4, 3x3) against the direct
// form: the U-Net's 8 -> 24 over 24x96 1.37x faster, its 12 -> 12 over 48x192 1.43x, the
// Fashion-MNIST model's 8 -> 16 over 16x16 1.06x; with 6, 4, 2 or 1 channels on either side
// (the U-Net's head: 12 -> 6 and 12 -> 2 gradients, 12 -> 1 and 24 -> 4 forward) the direct form
// stays faster (bench/README.md).
constexpr int kWinogradAutoMinChannels = 8;

// Whether a 3x3 stride-2 convolution (forward: depth = input channels, rows = output channels;
// dx the other way round) takes the stride-2 Winograd form where the AVX-512 rule (below) does not
// decide: the form asked for, or in 4-lane builds the automatic one.
bool use_winograd(int depth, int rows) {
  if (depth < kWinogradMinDepth) return false;
  const Conv3x3Form f = g_conv3x3_form.load();
  if (f == Conv3x3Form::kWinograd || f == Conv3x3Form::kWinograd4) return true;
  return f == Conv3x3Form::kAuto && winograd_by_default() &&
         std::min(depth, rows) >= kWinogradAutoMinChannels;
}
// With AVX-512 the automatic form of a stride-2 layer is direct, but for dx where both sides
// have at least this many channels it takes the stride-2 Winograd form; so on every AVX-512 core,
// also one that halves a 512-bit multiply-add (where stride-1 layers may take Winograd's forms,
// stride1_form). One layer alone, the two forms alternated call by call: the paper
// network's 64 -> 128 dx (64 rows, 128 deep) and the shipped U-Net's 48 -> 96 took 0.79-0.81x the
// time at 4 and 8 images, 0.88x at 2 and the same at 1 (1.01x, 0.99x); their 32 -> 64 and 24 ->
// 48 dx 1.06-1.16x, and every forward pass 1.16-1.25x at 1 image. Since kPlaneSkew and the GEMM's
// quad tiles the 64 -> 128 forward pass alone runs 0.99-1.02x at 1 image and 0.87-0.95x at 2 to
// 8, but the step with it 1.012x at 1 and 0.993x at 8, so forward stays direct (bench/README.md).
// On a Zen 4 core the 4-lane rule for stride 2 as well measured no better (the paper network's
// step 0.99x at 1 and 8 images, the shipped U-Net's 0.99x at 4 and 1.07x at 1), nor did the
// forward pass by Winograd from 48 channels (the paper network 0.956x at 8 but 0.99-1.054x at 1).
// A form is fixed when the layer is built, whatever a call's batch, so that an image's result
// does not depend on the images beside it.
constexpr int kStride2DxNativeMinChannels = 48;
// Whether a 3x3 stride-2 convolution takes the stride-2 Winograd form forward (depth: input
// channels, rows: output channels) and for dx (depth: output channels, rows: input channels).
bool use_stride2_winograd_forward(int depth, int rows) {
  if (simd::kLanes == 16 && g_conv3x3_form.load() == Conv3x3Form::kAuto) return false;
  return use_winograd(depth, rows);
}
bool use_stride2_winograd_dx(int depth, int rows) {
  if (simd::kLanes == 16 && g_conv3x3_form.load() == Conv3x3Form::kAuto)
    return std::min(depth, rows) >= kStride2DxNativeMinChannels;
  return use_winograd(depth, rows);
}
// The automatic form takes F(4x4, 3x3) rather than F(2x2, 3x3) for planes of at least this many
// 4x4 blocks (its GEMMs' columns per image): in wasm the shipped U-Net ran 8-12% faster with it on
// its 24x96 and 12x48 layers (144 and 36 blocks) and lost that gain with it on the 6x24 ones too
// (12 blocks: a GEMM tile and a half); the Fashion-MNIST model's 16 -> 16 over 16x16 (16 blocks)
// ran 1.76x faster with it, its 32 -> 32 over 8x8 (4 blocks) 1.38x slower (bench/README.md).
constexpr int kWinograd4AutoMinBlocks = 16;
// On an AVX-512 core that halves a 512-bit multiply-add (Zen 4), where a GEMM tile is 32 columns,
// Winograd's forms need larger planes than in wasm: F(4x4, 3x3) on planes of at least this many
// 4x4 blocks, else F(2x2, 3x3) from this many channels, else the direct form. One layer alone,
// forward and backward, the three forms alternated (a throwaway harness, batch 8; bench/README.md,
// "A Zen 4 core"): F(4x4, 3x3) 0.53-0.85x the direct form's time with 24 or more channels on
// planes of 36 or more blocks, but 1.19-3.1x on 16 blocks (16x16, the Fashion-MNIST model's);
// F(2x2, 3x3) 0.57-0.86x with 64 or 96 channels (96 -> 96 over 6x24, 64 -> 64 over 8x8), 0.93-1.35x
// with 24 to 32. With 8 to 16 channels on large planes (the U-Net's 12 -> 12 over 48x192, 8 -> 24
// over 24x96) F(4x4, 3x3) took 1.2-1.4x alone, yet the U-Net's step with those two direct ran
// 1.005-1.031x the time of the step with them by Winograd: 8 channels, as in wasm.
constexpr int kHalvedWinograd4MinBlocks = 32;
constexpr int kHalvedWinogradMinChannels = 48;
// The form of a 3x3 stride-1 convolution (depth: the channels its GEMMs sum over, rows: the
// others) into an h x w plane: the one asked for (Winograd's only from kWinogradMinDepth), or
// with kAuto the one this build and core measured faster (winograd_by_default).
Conv3x3Form stride1_form(int depth, int rows, int h, int w) {
  if (depth < kWinogradMinDepth) return Conv3x3Form::kDirect;
  const Conv3x3Form f = g_conv3x3_form.load();
  if (f != Conv3x3Form::kAuto) return f;
  if (!winograd_by_default()) return Conv3x3Form::kDirect;
  const int channels = std::min(depth, rows), blocks4 = ((h + 3) / 4) * ((w + 3) / 4);
  if (channels < kWinogradAutoMinChannels) return Conv3x3Form::kDirect;
  if (simd::kLanes == 4)
    return blocks4 >= kWinograd4AutoMinBlocks ? Conv3x3Form::kWinograd4 : Conv3x3Form::kWinograd;
  if (blocks4 >= kHalvedWinograd4MinBlocks) return Conv3x3Form::kWinograd4;
  return channels >= kHalvedWinogradMinChannels ? Conv3x3Form::kWinograd : Conv3x3Form::kDirect;
}
// The fewest channels (the depth of its GEMMs) for which a strided convolution goes by taps
// rather than im2col.
constexpr int kTapMinDepth = 16;
// ... and the largest output plane: on larger ones im2col's single deep GEMM per chunk was faster.
constexpr int kTapMaxStridedPlane = 64;
// The least rows (input channels) and columns per image of the GEMMs of a strided layer's dx by
// stride phases: the paper network's 1 -> 32 first layer and its 64 -> 128 third (150 columns)
// ran faster by col2im over a chunk of images, its 32 -> 64 second (588 columns) by phases.
constexpr int kPhaseMinRows = 8;
constexpr int kPhaseMinColumns = 256;
// V and M of a chunk of block rows: about 1 MB.
constexpr size_t kWinogradChunkFloats = size_t(1) << 18;

// Block rows per chunk of a Winograd form whose block rows hold tw blocks (GEMM columns) and
// per_row floats of transform planes: as many as kWinogradChunkFloats holds, rounded down to
// whole GEMM tiles of columns where that leaves at least one tile, else up to one tile where that
// at most doubles the chunk (natively the paper network's 64 -> 128 gradient, 7 block rows of 12
// blocks: 2.6 tiles of 32 columns; 8 rows, 3 tiles, took 0.77-0.90x the time). The block rows of a
// batch follow one another, image after image, so a chunk may span images: a plane of few blocks
// (the paper network's third layer, 3 x 12 blocks of 2x2) then still fills whole tiles.
int winograd_chunk_rows(size_t per_row, int tw) {
  int rows = int(std::clamp<size_t>(kWinogradChunkFloats / per_row, 1, size_t(1) << 20));
  const int whole = kGemmNR / std::gcd(tw, kGemmNR);  // rows per whole number of tiles
  if (rows >= whole) return rows - rows % whole;
  return 2 * rows >= whole ? whole : rows;
}
// How many images a chunk of `rows` consecutive block rows of a batch (th rows an image) can
// touch: the images whose padded input (or dx) a Winograd form keeps at once, each in one of as
// many slots (image b in slot b % slots), so that its scratch does not grow with the batch and
// what a chunk reads was written just before.
int images_in_flight(int rows, int th) { return (rows + th - 2) / th + 1; }

// The block rows of n images (th an image) in chunks of `rows`, in order: begin(img) for each
// image as the first chunk that touches it comes up, chunk(r0, r1) for rows [r0, r1), then
// end(img) for each image whose last row that chunk did.
template <class Begin, class Chunk, class End>
void for_each_chunk(int n, int th, int rows, Begin begin, Chunk chunk, End end) {
  int begun = 0, ended = 0;
  for (int r0 = 0; r0 < n * th; r0 += rows) {
    const int r1 = std::min(n * th, r0 + rows);
    for (; begun <= (r1 - 1) / th; ++begun) begin(begun);
    chunk(r0, r1);
    for (; ended < n && (ended + 1) * th <= r1; ++ended) end(ended);
  }
}

// A forward call's images in a Winograd form: image b's padded (or phase-split) input in slot
// b % slots of xp, `padded` floats a slot (images_in_flight), its output at y + b * stride.
struct WinogradImages {
  const float* xp;
  int slots;
  size_t padded;
  float* y;
  size_t stride;
  const float* in(int img) const { return xp + size_t(img % slots) * padded; }
  float* out(int img) const { return y + size_t(img) * stride; }
};

// A Winograd form's transform plane holds a layer's channels (or a chunk's blocks of one point)
// as rows of ld floats, ld a whole number of GEMM tiles, so a plane spans a multiple of 4 KB
// wherever the channels are a multiple of 32 or so, and plane after plane would start in the same
// set of the L1 cache. The transforms store (or load) a vector at one offset in each of 16 to 36
// planes in turn: more lines in one set than its 12 ways (natively), which then evicted one
// another. A cache line of slack after each plane puts each in a set of its own: natively, at 8
// images, the paper network's 64 -> 128 layer by the stride-2 form took about 0.9x the time
// forward and 0.94x for its gradient, its 32 -> 64 forward 0.85x (the same bits; in wasm no
// change measured, bench/README.md).
constexpr size_t kPlaneSkew = 16;

// What Winograd's stride-1 forms share (F(2x2, 3x3) and F(4x4, 3x3) below): blocks of `block` x
// `block` outputs, th x tw of them, a vector of tw at a time (groups); the zero-padded input
// (hp x wp, with the slack the loads of the last vector of blocks need); `points` transform planes
// V_xi [in, blocks] and M_xi [out_c, blocks] for a few block rows at a time (chunk_rows, so that
// V and M stay in the L2 cache between the transforms and the GEMMs: kWinogradChunkFloats), each
// GEMM reading V's rows in place; U_xi [out_c, in] packed once, at construction. The block rows of
// a batch of images follow one another (row R is image R / th's block row R % th), so a chunk's
// GEMMs may span images.
class WinogradForm : public PlaneConv {
 public:
  // The padded planes of the images in flight, block + 2 rows of B^T d, V, M (with a vector of
  // slack) and `block` output rows.
  size_t scratch_floats(int n) const override {
    return size_t(std::min(n, slots_)) * padded() + size_t(block_ + 2) * wp_ +
           size_t(points_) * v_plane() + size_t(points_) * m_plane() + simd::kLanes +
           size_t(block_) * out_row();
  }

  void run(const float* x, size_t x_stride, float* y, size_t y_stride, int n, const float* bias,
           float* scratch) const override {
    const WinogradImages batch{scratch, std::min(n, slots_), padded(), y, y_stride};
    float* rows = scratch + size_t(batch.slots) * padded();
    float* v = rows + size_t(block_ + 2) * wp_;
    float* m = v + size_t(points_) * v_plane();
    float* out = m + size_t(points_) * m_plane() + simd::kLanes;
    // The zero-padded inputs: pad.top rows above, at least pad.bottom below, as many as the
    // last (partial) block needs.
    for_each_chunk(
        n, th_, chunk_rows_,
        [&](int img) {
          pad_planes(x + size_t(img) * x_stride, in_, in_h_, in_w_, pad_, hp_, wp_,
                     scratch + size_t(img % batch.slots) * padded());
        },
        [&](int r0, int r1) { chunk(batch, r0, r1, rows, v, m, out, bias); }, [](int) {});
  }

 protected:
  // A 3x3 kernel: (block + 2)^2 points in the transform domain.
  WinogradForm(int block, int in, int in_h, int in_w, Padding pad, int out_c)
      : block_(block),
        points_((block + 2) * (block + 2)),
        in_(in),
        in_h_(in_h),
        in_w_(in_w),
        out_c_(out_c),
        pad_(pad),
        out_h_(in_h + pad.top + pad.bottom - 2),
        out_w_(in_w + pad.left + pad.right - 2),
        th_((out_h_ + block - 1) / block),
        tw_((out_w_ + block - 1) / block),
        groups_((tw_ + simd::kLanes - 1) / simd::kLanes),
        hp_(block * th_ + 2),
        wp_(block * groups_ * simd::kLanes + 4),
        chunk_rows_(winograd_chunk_rows(size_t(points_) * size_t(in + out_c) * tw_, tw_)),
        slots_(images_in_flight(chunk_rows_, th_)),
        ld_(int(packed_b_floats(1, chunk_rows_ * tw_))),
        a_floats_(packed_a_floats(out_c, in)),
        u_(size_t(points_) * a_floats_) {
    for (int c = 0; c < in; ++c) offsets_.push_back(c * ld_);
  }

  // U_xi[o, c] = (G g G^T)[xi] for g = W[o, c] (3x3) and the N x 3 kernel transform G (N =
  // block + 2), the products summed in double; xi = N i + j for row i and column j of the N x N
  // domain. Packed.
  template <int N>
  void set_kernels(const double (&G)[N][3], const std::vector<float>& w) {
    std::vector<float> one(size_t(out_c_) * in_);
    for (int xi = 0; xi < N * N; ++xi) {
      const int i = xi / N, j = xi % N;
      for (int o = 0; o < out_c_; ++o)
        for (int c = 0; c < in_; ++c) {
          const float* g = w.data() + (size_t(o) * in_ + c) * 9;
          double sum = 0;
          for (int a = 0; a < 3; ++a)
            for (int b = 0; b < 3; ++b) sum += G[i][a] * double(g[3 * a + b]) * G[j][b];
          one[size_t(o) * in_ + c] = float(sum);
        }
      pack_a(one.data(), in_, false, out_c_, in_, u_.data() + size_t(xi) * a_floats_);
    }
  }
  // M_xi = U_xi V_xi for the n blocks of a chunk, the bias at point `bias_point`.
  void multiply(int n, const float* v, float* m, const float* bias, int bias_point) const {
    for (int xi = 0; xi < points_; ++xi)
      multiply_shifted(out_c_, n, in_, u_.data() + size_t(xi) * a_floats_,
                       v + size_t(xi) * v_plane(), offsets_.data(), m + size_t(xi) * m_plane(),
                       ld_, xi == bias_point ? bias : nullptr);
  }
  int out_row() const { return block_ * groups_ * simd::kLanes; }
  size_t v_plane() const { return size_t(in_) * ld_ + kPlaneSkew; }     // V_xi's start to V_xi+1's
  size_t m_plane() const { return size_t(out_c_) * ld_ + kPlaneSkew; }  // M_xi's to M_xi+1's
  size_t padded() const { return size_t(in_) * hp_ * wp_; }  // an image's padded planes

  // Block rows [r0, r1) of the batch: their V, the GEMMs, their outputs.
  virtual void chunk(const WinogradImages& batch, int r0, int r1, float* rows, float* v, float* m,
                     float* out, const float* bias) const = 0;

  int block_, points_, in_, in_h_, in_w_, out_c_;
  Padding pad_;
  int out_h_, out_w_, th_, tw_, groups_, hp_, wp_;
  int chunk_rows_;  // block rows per chunk (winograd_chunk_rows)
  int slots_;       // images in flight (images_in_flight)
  int ld_;          // floats per row (channel) of a transform plane: a chunk's blocks, whole tiles
  size_t a_floats_;
  std::vector<float> u_;
  std::vector<int> offsets_;
};

// Winograd's F(2x2, 3x3) (Lavin & Gray 2016) for a 3x3, stride-1 convolution: each 2x2 block of
// outputs is A^T [(G g G^T) . (B^T d B)] A, d the 4x4 block of the padded input under it, so the
// sum over input channels becomes 16 GEMMs U_xi [out_c, in] x V_xi [in, tiles], one per point xi
// of the 4x4 transform domain, in the runtime's packed kernel reading V's rows in place. U is
// transformed (in double) and packed once, at construction; the bias enters through xi = (1, 1),
// which adds to all four outputs of a block. The transforms run on whole vectors of blocks, a
// few rows of blocks at a time (WinogradForm).
// Results differ from the direct sums by rounding only (test_layers checks 1e-5 relative).
class Winograd final : public WinogradForm {
 public:
  Winograd(int in, int in_h, int in_w, Padding pad, int out_c, const std::vector<float>& w)
      : WinogradForm(2, in, in_h, in_w, pad, out_c) {
    static constexpr double G[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
    set_kernels(G, w);
  }

 private:
  // Block rows [r0, r1) of the batch: their V, the 16 GEMMs, their outputs.
  void chunk(const WinogradImages& batch, int r0, int r1, float* rows, float* v, float* m,
             float* out, const float* bias) const override {
    using simd::Vec;
    constexpr int L = simd::kLanes;
    // V_xi[c, block] = (B^T d B)[xi]: rows first (B^T d, whole padded rows at once), then the
    // columns of L blocks at a time from stride-2 loads.
    float* a[4] = {rows, rows + wp_, rows + 2 * size_t(wp_), rows + 3 * size_t(wp_)};
    for (int c = 0; c < in_; ++c)
      for (int br = r0; br < r1; ++br) {
        const int img = br / th_, ty = br - img * th_;
        const float* d = batch.in(img) + (size_t(c) * hp_ + 2 * size_t(ty)) * wp_;
        const float *d0 = d, *d1 = d + wp_, *d2 = d + 2 * size_t(wp_), *d3 = d + 3 * size_t(wp_);
        for (int i = 0; i < wp_; ++i) {
          a[0][i] = d0[i] - d2[i];
          a[1][i] = d1[i] + d2[i];
          a[2][i] = d2[i] - d1[i];
          a[3][i] = d1[i] - d3[i];
        }
        for (int g = 0; g < groups_; ++g) {
          const int tx = g * L, valid = std::min(L, tw_ - tx);
          float* vc = v + size_t(c) * ld_ + size_t(br - r0) * tw_ + tx;
          for (int k = 0; k < 4; ++k) {
            const float* p = a[k] + 2 * tx;
            const Vec e0 = simd::even_lanes(simd::load(p), simd::load(p + L));
            const Vec e1 = simd::even_lanes(simd::load(p + 1), simd::load(p + 1 + L));
            const Vec e2 = simd::even_lanes(simd::load(p + 2), simd::load(p + 2 + L));
            const Vec e3 = simd::even_lanes(simd::load(p + 3), simd::load(p + 3 + L));
            const Vec col[4] = {e0 - e2, e1 + e2, e2 - e1, e1 - e3};
            for (int l = 0; l < 4; ++l)
              simd::store_first(vc + size_t(4 * k + l) * v_plane(), col[l], valid);
          }
        }
      }
    // M_xi = U_xi V_xi (+ the bias at xi = 5).
    multiply((r1 - r0) * tw_, v, m, bias, 5);
    // y = A^T M A, A^T = [1 1 1 0; 0 1 -1 -1], L blocks at a time, two output rows per block row.
    float* out0 = out;
    float* out1 = out + out_row();
    for (int o = 0; o < out_c_; ++o)
      for (int br = r0; br < r1; ++br) {
        const int img = br / th_, ty = br - img * th_;
        const float* mo = m + size_t(o) * ld_ + size_t(br - r0) * tw_;
        for (int g = 0; g < groups_; ++g) {
          const int tx = g * L;
          Vec q[16];
          for (int xi = 0; xi < 16; ++xi) q[xi] = simd::load(mo + size_t(xi) * m_plane() + tx);
          Vec s0[4], s1[4];
          for (int l = 0; l < 4; ++l) {
            s0[l] = q[l] + q[4 + l] + q[8 + l];
            s1[l] = q[4 + l] - q[8 + l] - q[12 + l];
          }
          Vec lo, hi;
          simd::interleave(s0[0] + s0[1] + s0[2], s0[1] - s0[2] - s0[3], &lo, &hi);
          simd::store(out0 + 2 * tx, lo);
          simd::store(out0 + 2 * tx + L, hi);
          simd::interleave(s1[0] + s1[1] + s1[2], s1[1] - s1[2] - s1[3], &lo, &hi);
          simd::store(out1 + 2 * tx, lo);
          simd::store(out1 + 2 * tx + L, hi);
        }
        float* yo = batch.out(img) + (size_t(o) * out_h_ + 2 * size_t(ty)) * out_w_;
        std::memcpy(yo, out0, sizeof(float) * size_t(out_w_));
        if (2 * ty + 1 < out_h_) std::memcpy(yo + out_w_, out1, sizeof(float) * size_t(out_w_));
      }
  }
};

// Winograd's F(4x4, 3x3) (Lavin & Gray 2016): the same scheme as F(2x2, 3x3) above with 4x4
// blocks of outputs from 6x6 blocks of the padded input, 36 products per block and pair of
// channels instead of 144 (2.25 per output instead of 4), at the price of larger transforms
// whose coefficients round more. The points are 0, 1, -1, 1/2, -2 and infinity, which round
// less than the usual 0, +-1, +-2 (Barabasz et al. 2020: in a float32 simulation of a
// 32-channel sum the worst error was 1.0e-5 of 1 + |y| against 2.5e-5):
//   B^T = [1 -3/2 -2 3/2 1 0; 0 -1 1/2 5/2 1 0; 0 1 -5/2 1/2 1 0; 0 -2 -1 2 1 0;
//          0 1/2 -1 -1/2 1 0; 0 1 -3/2 -2 3/2 1]
//   G   = [1 0 0; 1/3 1/3 1/3; -1/3 1/3 -1/3; -16/15 -8/15 -4/15; 1/15 -2/15 4/15; 0 0 1]
//   A^T = [1 1 1 1 1 0; 0 1 -1 1/2 -2 0; 0 1 1 1/4 4 0; 0 1 -1 1/8 -8 1]
// The bias enters at xi = (1, 1), whose column of A^T is all ones.
namespace winograd4 {
// B^T d for six values (one column of a block, or one row), shared terms first.
template <class T>
inline void input_transform(const T (&d)[6], T (&r)[6]) {
  const T p = d[3] - d[1], q = d[4] - d[2];
  r[0] = d[0] + d[4] - 2.0f * d[2] + 1.5f * p;
  r[1] = d[4] - d[1] + 0.5f * d[2] + 2.5f * d[3];
  r[2] = d[4] + d[1] - 2.5f * d[2] + 0.5f * d[3];
  r[3] = q + 2.0f * p;
  r[4] = q - 0.5f * p;
  r[5] = d[5] + d[1] - 2.0f * d[3] + 1.5f * q;
}
// A^T m for six values.
template <class T>
inline void output_transform(const T (&m)[6], T (&y)[4]) {
  const T a = m[1] + m[2], b = m[1] - m[2];
  y[0] = m[0] + a + m[3] + m[4];
  y[1] = b + 0.5f * m[3] - 2.0f * m[4];
  y[2] = a + 0.25f * m[3] + 4.0f * m[4];
  y[3] = b + 0.125f * m[3] - 8.0f * m[4] + m[5];
}

#if EBM_SIMD_LANES == 4 && defined(__clang__)
// The 4x4 transpose of (a, b, c, d) into t: t[k] lane l = row l's lane k.
inline void transpose4(simd::Vec a, simd::Vec b, simd::Vec c, simd::Vec d, simd::Vec (&t)[4]) {
  using simd::Vec;
  const Vec ab0 = __builtin_shufflevector(a, b, 0, 4, 1, 5),
            ab1 = __builtin_shufflevector(a, b, 2, 6, 3, 7);
  const Vec cd0 = __builtin_shufflevector(c, d, 0, 4, 1, 5),
            cd1 = __builtin_shufflevector(c, d, 2, 6, 3, 7);
  t[0] = __builtin_shufflevector(ab0, cd0, 0, 1, 4, 5);
  t[1] = __builtin_shufflevector(ab0, cd0, 2, 3, 6, 7);
  t[2] = __builtin_shufflevector(ab1, cd1, 0, 1, 4, 5);
  t[3] = __builtin_shufflevector(ab1, cd1, 2, 3, 6, 7);
}
#endif

// c[k] lane l = p[4 l + k], k = 0..5: the six columns of L blocks, four apart. Reads p up to
// p[4 L + 3].
inline void gather_blocks(const float* p, simd::Vec (&c)[6]) {
#if EBM_SIMD_LANES == 4 && defined(__clang__)
  simd::Vec t[4];
  transpose4(simd::load(p), simd::load(p + 4), simd::load(p + 8), simd::load(p + 12), t);
  const simd::Vec next = simd::load(p + 16);
  for (int k = 0; k < 4; ++k) c[k] = t[k];
  c[4] = __builtin_shufflevector(t[0], next, 1, 2, 3, 4);
  c[5] = __builtin_shufflevector(t[1], next, 1, 2, 3, 5);
#else
  for (int k = 0; k < 6; ++k)
    for (int l = 0; l < simd::kLanes; ++l) c[k][l] = p[4 * l + k];
#endif
}

// p[4 l + k] = y[k] lane l, k = 0..3: L blocks' four columns back into one row.
inline void scatter_blocks(const simd::Vec (&y)[4], float* p) {
#if EBM_SIMD_LANES == 4 && defined(__clang__)
  simd::Vec t[4];
  transpose4(y[0], y[1], y[2], y[3], t);
  for (int l = 0; l < 4; ++l) simd::store(p + 4 * l, t[l]);
#else
  for (int k = 0; k < 4; ++k)
    for (int l = 0; l < simd::kLanes; ++l) p[4 * l + k] = y[k][l];
#endif
}
}  // namespace winograd4

// F(4x4, 3x3) laid out as F(2x2, 3x3) above (WinogradForm): 36 GEMMs U_xi [out_c, in] x V_xi
// [in, blocks]; the rows of B^T d over whole padded rows, their columns L blocks at a time from
// loads four floats apart.
class Winograd4 final : public WinogradForm {
 public:
  Winograd4(int in, int in_h, int in_w, Padding pad, int out_c, const std::vector<float>& w)
      : WinogradForm(4, in, in_h, in_w, pad, out_c) {
    // The kernel transform for the points 0, 1, -1, 1/2, -2 and infinity (see the note above).
    static constexpr double G[6][3] = {{1, 0, 0},
                                       {1.0 / 3, 1.0 / 3, 1.0 / 3},
                                       {-1.0 / 3, 1.0 / 3, -1.0 / 3},
                                       {-16.0 / 15, -8.0 / 15, -4.0 / 15},
                                       {1.0 / 15, -2.0 / 15, 4.0 / 15},
                                       {0, 0, 1}};
    set_kernels(G, w);
  }

 private:
  // Block rows [r0, r1) of the batch: their V, the 36 GEMMs, their outputs.
  void chunk(const WinogradImages& batch, int r0, int r1, float* rows, float* v, float* m,
             float* out, const float* bias) const override {
    using simd::Vec;
    constexpr int L = simd::kLanes;
    // V_xi[c, block] = (B^T d B)[xi]: the six rows of B^T d over whole padded rows, L columns
    // at a time (the row's last vector under a mask), then each row's columns L blocks at a time.
    for (int c = 0; c < in_; ++c)
      for (int br = r0; br < r1; ++br) {
        const int img = br / th_, ty = br - img * th_;
        const float* d = batch.in(img) + (size_t(c) * hp_ + 4 * size_t(ty)) * wp_;
        for (int i = 0; i < wp_; i += L) {
          const int valid = std::min(L, wp_ - i);
          Vec col[6], r[6];
          for (int k = 0; k < 6; ++k) col[k] = simd::load_first(d + size_t(k) * wp_ + i, valid);
          winograd4::input_transform(col, r);
          for (int k = 0; k < 6; ++k) simd::store_first(rows + size_t(k) * wp_ + i, r[k], valid);
        }
        for (int g = 0; g < groups_; ++g) {
          const int tx = g * L, valid = std::min(L, tw_ - tx);
          float* vc = v + size_t(c) * ld_ + size_t(br - r0) * tw_ + tx;
          for (int k = 0; k < 6; ++k) {
            Vec cols[6], r[6];
            winograd4::gather_blocks(rows + size_t(k) * wp_ + 4 * tx, cols);
            winograd4::input_transform(cols, r);
            for (int l = 0; l < 6; ++l)
              simd::store_first(vc + size_t(6 * k + l) * v_plane(), r[l], valid);
          }
        }
      }
    // M_xi = U_xi V_xi (+ the bias at xi = (1, 1)).
    multiply((r1 - r0) * tw_, v, m, bias, 7);
    // y = A^T M A, L blocks at a time, four output rows per block row.
    const int row = out_row();
    for (int o = 0; o < out_c_; ++o)
      for (int br = r0; br < r1; ++br) {
        const int img = br / th_, ty = br - img * th_;
        const float* mo = m + size_t(o) * ld_ + size_t(br - r0) * tw_;
        for (int g = 0; g < groups_; ++g) {
          const int tx = g * L;
          Vec s[4][6];  // A^T M: output row r, column point l
          for (int l = 0; l < 6; ++l) {
            Vec q[6], t[4];
            for (int k = 0; k < 6; ++k)
              q[k] = simd::load(mo + size_t(6 * k + l) * m_plane() + tx);
            winograd4::output_transform(q, t);
            for (int r = 0; r < 4; ++r) s[r][l] = t[r];
          }
          for (int r = 0; r < 4; ++r) {
            Vec t[4];
            winograd4::output_transform(s[r], t);
            winograd4::scatter_blocks(t, out + size_t(r) * row + 4 * tx);
          }
        }
        for (int r = 0; r < 4 && 4 * ty + r < out_h_; ++r)
          std::memcpy(batch.out(img) + (size_t(o) * out_h_ + 4 * size_t(ty) + r) * out_w_,
                      out + size_t(r) * row, sizeof(float) * size_t(out_w_));
      }
  }
};

// Winograd's minimal filtering for a 3x3 convolution of stride 2. Along one axis, the outputs
// y[2t] and y[2t + 1] of y[o] = w0 x[2o] + w1 x[2o + 1] + w2 x[2o + 2] (x zero-padded) read the
// even stride phase e[k] = x[2k] at k = 2t, 2t + 1, 2t + 2 and the odd one d[k] = x[2k + 1] at 2t
// and 2t + 1: a 2-tap convolution of e by (w0, w2), which F(2, 2) computes in 3 products, and a
// 1-tap one of d by w1, so 5 products for 2 outputs where the direct sums take 6:
//   y[2t]     = (e0 - e1) w0 + e1 (w0 + w2)                + d0 w1
//   y[2t + 1] =                e1 (w0 + w2) + (e2 - e1) w2         + d1 w1
// (e0, e1, e2 = e[2t], e[2t + 1], e[2t + 2]; d0, d1 = d[2t], d[2t + 1]). The five points fall in
// three groups by the outputs they feed: {e0 - e1, d0} the first, {e1} both, {e2 - e1, d1} the
// second. Over a 2x2 block that is 25 products per pair of channels instead of 36, and since the
// products of one pair of groups (one of each axis) add before the output transform, each pair
// is one GEMM with its points stacked along the depth: 9 GEMMs whose depths add up to 25 times
// the input channels, then the output transform of F(2x2, 3x3)'s shape ([1 1 0; 0 1 1] each way),
// the bias entering at the middle pair, which feeds all four outputs. Every coefficient is 0 or
// +-1. The gradient (Stride2WinogradBackward) runs the transposed algorithm.
namespace stride2 {
constexpr int kPoints = 5;  // per axis, in group order: e0 - e1, d0 | e1 | e2 - e1, d1
constexpr int kGroupFirst[4] = {0, 2, 3, 5};
// The taps (w0, w1, w2) each point multiplies.
constexpr int kTaps[kPoints][3] = {{1, 0, 0}, {0, 1, 0}, {1, 0, 1}, {0, 0, 1}, {0, 1, 0}};

// What both directions share: 2x2 blocks of outputs (th x tw of them, a vector of tw at a time),
// the phase planes (hq x wq, as split_phases lays them out), the 25 transform planes (a, b)
// ordered so that each pair of groups holds consecutive planes, and the transformed kernel.
struct Geometry {
  explicit Geometry(const LayerSpec& s)
      : in(s.in),
        out(s.out),
        pad(s.pad),
        th((s.out.h + 1) / 2),
        tw((s.out.w + 1) / 2),
        groups((tw + simd::kLanes - 1) / simd::kLanes),
        hq(2 * th + 1),
        wq(2 * groups * simd::kLanes + 2),
        chunk_rows(winograd_chunk_rows((25 * size_t(s.in.c) + 9 * size_t(s.out.c)) * tw, tw)),
        slots(images_in_flight(chunk_rows, th)),
        ld(int(packed_b_floats(1, chunk_rows * tw))) {
    int p = 0;
    for (int ga = 0; ga < 3; ++ga)
      for (int gb = 0; gb < 3; ++gb) {
        pair_first[3 * ga + gb] = p;
        for (int a = kGroupFirst[ga]; a < kGroupFirst[ga + 1]; ++a)
          for (int b = kGroupFirst[gb]; b < kGroupFirst[gb + 1]; ++b) {
            plane[a][b] = p;
            point[p][0] = a;
            point[p++][1] = b;
          }
      }
    pair_first[9] = p;
    for (int pr = 0; pr < 9; ++pr)
      for (int q = pair_first[pr]; q <= pair_first[pr + 1]; ++q)
        point_offset[q] =
            size_t(q) * in.c * ld + kPlaneSkew * size_t(pr + (q == pair_first[pr + 1]));
  }

  // Each pair of groups' GEMM operand packed into a[pair]: [out.c, members * in.c] (row o, U of
  // each member plane over the input channels in turn: the forward pass's), or its transpose
  // [members * in.c, out.c] (the gradient's).
  void pack_pairs(const std::vector<float>& w, bool transposed, std::vector<float> (&a)[9]) const {
    const std::vector<float> u = transformed_kernel(w);
    for (int pr = 0; pr < 9; ++pr) {
      const int k = members(pr) * in.c;
      a[pr].resize(transposed ? packed_a_floats(k, out.c) : packed_a_floats(out.c, k));
      if (transposed)
        pack_a(pair_kernel(u, pr).data(), k, true, k, out.c, a[pr].data());
      else
        pack_a(pair_kernel(u, pr).data(), k, false, out.c, k, a[pr].data());
    }
  }

  int members(int pair) const { return pair_first[pair + 1] - pair_first[pair]; }
  // The transform planes' starts, kPlaneSkew apart beyond their rows: V (read by the GEMMs
  // through row offsets) and the 9 planes of M and Z (one GEMM each) plane by plane; the
  // gradient's 25 points are the rows of one GEMM per pair, so there pair by pair.
  size_t v_plane() const { return size_t(in.c) * ld + kPlaneSkew; }
  size_t m_plane() const { return size_t(out.c) * ld + kPlaneSkew; }
  size_t point_plane(int q) const { return point_offset[q]; }
  size_t phase_plane() const { return size_t(hq) * wq; }
  size_t phases() const { return 4 * size_t(in.c) * phase_plane(); }  // an image's phase planes

  Shape in, out;
  Padding pad;
  int th, tw;      // blocks down and across
  int groups;      // vectors of blocks across
  int hq, wq;      // a phase plane: rows 2 ty .. 2 ty + 2 of a block row, and vector slack
  int chunk_rows;  // block rows per chunk, so that the transform planes stay in the L2 cache
                   // (winograd_chunk_rows: a batch's block rows follow one another)
  int slots;       // images in flight (images_in_flight): image b's phase planes in slot b % slots
  int ld;          // floats per row (channel) of a transform plane: a chunk's blocks, whole tiles
  int plane[kPoints][kPoints] = {};
  int point[25][2] = {};
  int pair_first[10] = {};
  size_t point_offset[26] = {};  // point_plane(q): q < 25, and the end of the last

 private:
  // U_(a,b)[o, c] = sum_ij taps_a[i] taps_b[j] W[o, c, i, j] (at most four terms, summed in
  // double) as [25][out.c][in.c].
  std::vector<float> transformed_kernel(const std::vector<float>& w) const {
    std::vector<float> u(size_t(25) * out.c * in.c);
    for (int q = 0; q < 25; ++q)
      for (int o = 0; o < out.c; ++o)
        for (int c = 0; c < in.c; ++c) {
          const float* g = w.data() + (size_t(o) * in.c + c) * 9;
          double sum = 0;
          for (int i = 0; i < 3; ++i)
            for (int j = 0; j < 3; ++j)
              if (kTaps[point[q][0]][i] && kTaps[point[q][1]][j]) sum += double(g[3 * i + j]);
          u[(size_t(q) * out.c + o) * in.c + c] = float(sum);
        }
    return u;
  }

  // The GEMM operand of a pair of groups, [out.c][members * in.c], unpacked.
  std::vector<float> pair_kernel(const std::vector<float>& u, int pair) const {
    const int k = members(pair) * in.c;
    std::vector<float> rows(size_t(out.c) * k);
    for (int m = 0; m < members(pair); ++m)
      for (int o = 0; o < out.c; ++o)
        for (int c = 0; c < in.c; ++c)
          rows[size_t(o) * k + size_t(m) * in.c + c] =
              u[(size_t(pair_first[pair] + m) * out.c + o) * in.c + c];
    return rows;
  }
};
}  // namespace stride2

// The forward pass: y = bias + W * x by the 9 GEMMs above.
class Stride2Winograd final : public PlaneConv {
 public:
  Stride2Winograd(const LayerSpec& s, const std::vector<float>& w) : g_(s) {
    g_.pack_pairs(w, false, a_);
    // Depth row (m, c) of a pair reads V's plane of member m, channel c.
    for (int pr = 0; pr < 9; ++pr)
      for (int q = g_.pair_first[pr]; q < g_.pair_first[pr + 1]; ++q)
        for (int c = 0; c < g_.in.c; ++c)
          offsets_[pr].push_back(int(q * g_.v_plane() + size_t(c) * g_.ld));
  }

  // The phase planes of the images in flight, 4 transformed rows, V (25 planes), M (9) with a
  // vector of slack, 2 output rows.
  size_t scratch_floats(int n) const override {
    return size_t(std::min(n, g_.slots)) * g_.phases() + 4 * size_t(g_.wq) +
           25 * g_.v_plane() + 9 * g_.m_plane() + simd::kLanes +
           4 * size_t(g_.groups) * simd::kLanes;
  }

  void run(const float* x, size_t x_stride, float* y, size_t y_stride, int n, const float* bias,
           float* scratch) const override {
    const WinogradImages batch{scratch, std::min(n, g_.slots), g_.phases(), y, y_stride};
    float* rows = scratch + size_t(batch.slots) * g_.phases();
    float* v = rows + 4 * size_t(g_.wq);
    float* m = v + 25 * g_.v_plane();
    float* out = m + 9 * g_.m_plane() + simd::kLanes;
    for_each_chunk(
        n, g_.th, g_.chunk_rows,
        [&](int img) {
          split_phases(x + size_t(img) * x_stride, g_.in, g_.pad, 2, 2, g_.hq, g_.wq,
                       scratch + size_t(img % batch.slots) * g_.phases());
        },
        [&](int row0, int row1) { chunk(batch, row0, row1, rows, v, m, out, bias); }, [](int) {});
  }

 private:
  // Block rows [row0, row1) of the batch (row r: image r / th, its block row r % th).
  void chunk(const WinogradImages& batch, int row0, int row1, float* rows, float* v, float* m,
             float* out, const float* bias) const {
    using simd::Vec;
    constexpr int L = simd::kLanes;
    const int ic = g_.in.c, oc = g_.out.c, wq = g_.wq, ld = g_.ld;
    // V_(a,b)[c, block]: point a down (whole phase rows at once), then point b across, a vector
    // of blocks at a time from stride-2 loads.
    for (int c = 0; c < ic; ++c)
      for (int br = row0; br < row1; ++br) {
        const int img = br / g_.th, ty = br - img * g_.th;
        const float* r[kPoints][2];  // point a down, for the even and the odd phase across
        for (int pj = 0; pj < 2; ++pj) {
          const float* e = batch.in(img) + ((size_t(c) * 2) * 2 + pj) * g_.phase_plane() +
                           2 * size_t(ty) * wq;
          const float* d = e + 2 * g_.phase_plane();
          float* t0 = rows + size_t(2 * pj) * wq;
          float* t3 = t0 + wq;
          for (int i = 0; i < wq; ++i) {
            t0[i] = e[i] - e[wq + i];
            t3[i] = e[2 * wq + i] - e[wq + i];
          }
          r[0][pj] = t0;
          r[1][pj] = d;
          r[2][pj] = e + wq;
          r[3][pj] = t3;
          r[4][pj] = d + wq;
        }
        for (int gr = 0; gr < g_.groups; ++gr) {
          const int tx = gr * L, valid = std::min(L, g_.tw - tx);
          float* dst = v + size_t(c) * ld + size_t(br - row0) * g_.tw + tx;
          for (int a = 0; a < kPoints; ++a) {
            const float* p0 = r[a][0] + 2 * tx;
            const float* p1 = r[a][1] + 2 * tx;
            const Vec e0 = simd::even_lanes(simd::load(p0), simd::load(p0 + L));
            const Vec e1 = simd::even_lanes(simd::load(p0 + 1), simd::load(p0 + 1 + L));
            const Vec e2 = simd::even_lanes(simd::load(p0 + 2), simd::load(p0 + 2 + L));
            const Vec d0 = simd::even_lanes(simd::load(p1), simd::load(p1 + L));
            const Vec d1 = simd::even_lanes(simd::load(p1 + 1), simd::load(p1 + 1 + L));
            const Vec col[kPoints] = {e0 - e1, d0, e1, e2 - e1, d1};
            for (int b = 0; b < kPoints; ++b)
              simd::store_first(dst + size_t(g_.plane[a][b]) * g_.v_plane(), col[b], valid);
          }
        }
      }
    // M_pair = U_pair V_pair, the bias at the middle pair.
    const int n = (row1 - row0) * g_.tw;
    for (int pr = 0; pr < 9; ++pr)
      multiply_shifted(oc, n, g_.members(pr) * ic, a_[pr].data(), v, offsets_[pr].data(),
                       m + size_t(pr) * g_.m_plane(), ld, pr == 4 ? bias : nullptr);
    // y = A^T M A with A^T = [1 1 0; 0 1 1], two output rows per block row.
    float* out0 = out;
    float* out1 = out + 2 * size_t(g_.groups) * L;
    for (int o = 0; o < oc; ++o)
      for (int br = row0; br < row1; ++br) {
        const int img = br / g_.th, ty = br - img * g_.th;
        const float* mo = m + size_t(o) * ld + size_t(br - row0) * g_.tw;
        for (int gr = 0; gr < g_.groups; ++gr) {
          const int tx = gr * L;
          Vec q[9];
          for (int pr = 0; pr < 9; ++pr) q[pr] = simd::load(mo + size_t(pr) * g_.m_plane() + tx);
          Vec s0[3], s1[3];
          for (int gb = 0; gb < 3; ++gb) {
            s0[gb] = q[gb] + q[3 + gb];
            s1[gb] = q[3 + gb] + q[6 + gb];
          }
          Vec lo, hi;
          simd::interleave(s0[0] + s0[1], s0[1] + s0[2], &lo, &hi);
          simd::store(out0 + 2 * tx, lo);
          simd::store(out0 + 2 * tx + L, hi);
          simd::interleave(s1[0] + s1[1], s1[1] + s1[2], &lo, &hi);
          simd::store(out1 + 2 * tx, lo);
          simd::store(out1 + 2 * tx + L, hi);
        }
        float* yo = batch.out(img) + (size_t(o) * g_.out.h + 2 * size_t(ty)) * g_.out.w;
        std::memcpy(yo, out0, sizeof(float) * size_t(g_.out.w));
        if (2 * ty + 1 < g_.out.h)
          std::memcpy(yo + g_.out.w, out1, sizeof(float) * size_t(g_.out.w));
      }
  }

  static constexpr int kPoints = stride2::kPoints;
  stride2::Geometry g_;
  std::vector<float> a_[9];  // per pair: [out_c, members * in_c], packed
  std::vector<int> offsets_[9];
};

// The gradient, dx = W^T * dy, by the transpose of the forward algorithm: per 2x2 block of dy,
// Z = A dy A^T (the 9 pairs of groups: dy[2t], dy[2t] + dy[2t + 1], dy[2t + 1] each way), 9 GEMMs
// U_pair^T Z_pair giving the 25 points' values for every input channel, and those scattered back
// onto the phase planes by B (along an axis, point e0 - e1 adds to e[2t] and subtracts from
// e[2t + 1], e1 adds to e[2t + 1], e2 - e1 adds to e[2t + 2] and subtracts from e[2t + 1], d0 and
// d1 add to d[2t] and d[2t + 1]; blocks overlap on e[2t + 2]), then interleaved into dx.
class Stride2WinogradBackward final : public PlaneConv {
 public:
  Stride2WinogradBackward(const LayerSpec& s, const std::vector<float>& w) : g_(s) {
    g_.pack_pairs(w, true, a_);  // the forward pass's operands transposed
    for (int o = 0; o < g_.out.c; ++o) offsets_.push_back(o * g_.ld);
  }

  // The phase planes of dx of the images in flight, two rows of dy, Z (9 planes) and the points
  // (25).
  size_t scratch_floats(int n) const override {
    return size_t(std::min(n, g_.slots)) * g_.phases() + 2 * size_t(row_floats()) +
           9 * g_.m_plane() + g_.point_plane(25);
  }

  void run(const float* dy, size_t dy_stride, float* dx, size_t dx_stride, int n, const float*,
           float* scratch) const override {
    const int slots = std::min(n, g_.slots);
    float* q = scratch;
    float* rows = q + size_t(slots) * g_.phases();
    float* z = rows + 2 * size_t(row_floats());
    float* pts = z + 9 * g_.m_plane();
    std::memset(rows, 0, sizeof(float) * 2 * size_t(row_floats()));
    // An image's slot is zeroed when a chunk first reaches it, and merged into dx once a chunk
    // has done its last block row.
    for_each_chunk(
        n, g_.th, g_.chunk_rows,
        [&](int img) {
          std::memset(q + size_t(img % slots) * g_.phases(), 0, sizeof(float) * g_.phases());
        },
        [&](int row0, int row1) { chunk(dy, dy_stride, slots, row0, row1, rows, z, pts, q); },
        [&](int img) {
          merge_phases(q + size_t(img % slots) * g_.phases(), g_.phase_plane(),
                       4 * g_.phase_plane(), size_t(g_.wq), g_.in, g_.pad, 2, 2,
                       dx + size_t(img) * dx_stride);
        });
  }

 private:
  // A row of dy and the zeros the last vector of blocks reads past it.
  int row_floats() const { return 2 * g_.groups * simd::kLanes + simd::kLanes; }

  // Block rows [row0, row1) of the batch (row r: image r / th, its block row r % th).
  void chunk(const float* dy, size_t dy_stride, int slots, int row0, int row1, float* rows,
             float* z, float* pts, float* q) const {
    using simd::Vec;
    constexpr int L = simd::kLanes;
    const int ic = g_.in.c, oc = g_.out.c, ld = g_.ld, wo = g_.out.w;
    const size_t zp = g_.m_plane();
    float* r0 = rows;
    float* r1 = rows + row_floats();
    for (int o = 0; o < oc; ++o)
      for (int br = row0; br < row1; ++br) {
        const int img = br / g_.th, ty = br - img * g_.th;
        const float* d =
            dy + size_t(img) * dy_stride + (size_t(o) * g_.out.h + 2 * size_t(ty)) * wo;
        std::memcpy(r0, d, sizeof(float) * size_t(wo));
        if (2 * ty + 1 < g_.out.h)
          std::memcpy(r1, d + wo, sizeof(float) * size_t(wo));
        else
          std::memset(r1, 0, sizeof(float) * size_t(wo));
        float* dst = z + size_t(o) * ld + size_t(br - row0) * g_.tw;
        for (int gr = 0; gr < g_.groups; ++gr) {
          const int tx = gr * L, valid = std::min(L, g_.tw - tx);
          Vec c[2][3];
          const float* src[2] = {r0 + 2 * tx, r1 + 2 * tx};
          for (int k = 0; k < 2; ++k) {
            const Vec e = simd::even_lanes(simd::load(src[k]), simd::load(src[k] + L));
            const Vec od = simd::even_lanes(simd::load(src[k] + 1), simd::load(src[k] + 1 + L));
            c[k][0] = e;
            c[k][1] = e + od;
            c[k][2] = od;
          }
          for (int gb = 0; gb < 3; ++gb) {
            simd::store_first(dst + size_t(gb) * zp + tx, c[0][gb], valid);
            simd::store_first(dst + size_t(3 + gb) * zp + tx, c[0][gb] + c[1][gb], valid);
            simd::store_first(dst + size_t(6 + gb) * zp + tx, c[1][gb], valid);
          }
        }
      }
    // The points: rows (member, c) of each pair = U_pair^T Z_pair.
    const int n = (row1 - row0) * g_.tw;
    for (int pr = 0; pr < 9; ++pr)
      multiply_shifted(g_.members(pr) * ic, n, oc, a_[pr].data(), z + size_t(pr) * zp,
                       offsets_.data(), pts + g_.point_plane(g_.pair_first[pr]), ld);
    // Scattered back by B down (onto phase rows 2ty .. 2ty + 2 of the even phase, 2ty and
    // 2ty + 1 of the odd one), then across; the lanes past the last block add zeros.
    const size_t plane = g_.phase_plane();
    for (int c = 0; c < ic; ++c)
      for (int br = row0; br < row1; ++br)
        for (int gr = 0; gr < g_.groups; ++gr) {
          const int img = br / g_.th, ty = br - img * g_.th;
          const int tx = gr * L, valid = std::min(L, g_.tw - tx);
          const float* src = pts + size_t(c) * ld + size_t(br - row0) * g_.tw + tx;
          Vec p[kPoints][kPoints];
          for (int a = 0; a < kPoints; ++a)
            for (int b = 0; b < kPoints; ++b)
              p[a][b] = simd::load_first(src + g_.point_plane(g_.plane[a][b]), valid);
          // (phase down, its row, the values across): down, B takes e0 - e1 to rows 2ty and
          // 2ty + 1, e1 to 2ty + 1, e2 - e1 to 2ty + 1 and 2ty + 2, d0 and d1 to the odd rows.
          for (int k = 0; k < kPoints; ++k) {
            Vec x[kPoints];
            for (int b = 0; b < kPoints; ++b)
              x[b] = k == 0   ? p[0][b]
                     : k == 1 ? p[2][b] - p[0][b] - p[3][b]
                     : k == 2 ? p[3][b]
                     : k == 3 ? p[1][b]
                              : p[4][b];
            const int pi = k < 3 ? 0 : 1, yq = 2 * ty + (k < 3 ? k : k - 3);
            float* even = q + size_t(img % slots) * g_.phases() +
                          ((size_t(c) * 2 + pi) * 2) * plane + size_t(yq) * g_.wq + 2 * tx;
            float* odd = even + plane;
            Vec lo, hi;
            simd::interleave(x[0], x[2] - x[0] - x[3], &lo, &hi);
            simd::store(even, simd::load(even) + lo);
            simd::store(even + L, simd::load(even + L) + hi);
            simd::interleave_zeros(x[3], &lo, &hi);
            simd::store(even + 2, simd::load(even + 2) + lo);
            simd::store(even + 2 + L, simd::load(even + 2 + L) + hi);
            simd::interleave(x[1], x[4], &lo, &hi);
            simd::store(odd, simd::load(odd) + lo);
            simd::store(odd + L, simd::load(odd + L) + hi);
          }
        }
  }

  static constexpr int kPoints = stride2::kPoints;
  stride2::Geometry g_;
  std::vector<float> a_[9];   // per pair: [members * in_c, out_c], packed
  std::vector<int> offsets_;  // row o of a Z plane
};

// A convolution by its taps, where the shifted form does not apply: stride 1 with padding that
// form would mostly compute and drop (a kernel as wide as the plane, such as the U-Net's 3x13
// bottleneck over 3x12 planes), and strided layers deep enough for a GEMM per tap. For each
// kernel position (i, j) and output row, one GEMM W_ij [out_c, in] x (the input row under it,
// only the columns where the tap meets the image), added to that output row's columns: no
// im2col, no col2im, and the taps that fall on padding are never computed. A chunk of images is
// interleaved, (c, y, x, image), so each GEMM is as wide as the columns times the images; the
// input side splits each row into its stride_w phases, x = stride_w * x' + phase, so that a tap's
// columns are contiguous whatever the stride. The gradient runs the same taps the other way:
// dx rows += W_ij^T x dy rows. Every element sums its taps in one fixed order, so an image's
// result does not depend on the others in its chunk.
class TapConv {
 public:
  TapConv(const LayerSpec& s, const std::vector<float>& w)
      : in_(s.in),
        out_(s.out),
        sx_(s.stride_w),
        rows_(tap_rows()),
        wq_((s.in.w + sx_ - 1) / sx_),
        in_plane_(s.in.h * sx_ * wq_),
        out_plane_(s.out.h * s.out.w),
        chunk_(int(std::max<size_t>(
            1, kTapChunkFloats / (size_t(s.in.c) * in_plane_ + size_t(s.out.c) * out_plane_)))) {
    const int kh = s.kernel_h, kw = s.kernel_w, ic = s.in.c, oc = s.out.c, sy = s.stride_h;
    const size_t a_floats = packed_a_floats(oc, ic), at_floats = packed_a_floats(ic, oc);
    std::vector<float> one(size_t(oc) * ic);
    for (int i = 0; i < kh; ++i)
      for (int j = 0; j < kw; ++j) {
        // The tap's runs: output row oy reads input row sy * oy - pad.top + i, and column ox
        // reads sx * ox + off, off = j - pad.left, for the columns [lo, hi) where that lies
        // inside the image; in the phase-split row those inputs are contiguous.
        const int first = int(runs_.size()), off = j - s.pad.left;
        const int lo = std::max(0, ceil_div(-off, sx_)),
                  hi = std::min(s.out.w, ceil_div(s.in.w - off, sx_));
        const int phase = ((off % sx_) + sx_) % sx_;
        for (int oy = 0; oy < s.out.h && lo < hi; ++oy) {
          const int iy = sy * oy - s.pad.top + i;
          if (iy < 0 || iy >= s.in.h) continue;
          runs_.push_back({int(fwd_.size() / a_floats), oy * s.out.w + lo,
                           (iy * sx_ + phase) * wq_ + (sx_ * lo + off - phase) / sx_, hi - lo});
        }
        if (int(runs_.size()) == first) continue;  // a tap that only ever meets padding
        for (int o = 0; o < oc; ++o)
          for (int c = 0; c < ic; ++c)
            one[size_t(o) * ic + c] = w[((size_t(o) * ic + c) * kh + i) * kw + j];
        fwd_.resize(fwd_.size() + a_floats);
        pack_a(one.data(), ic, false, oc, ic, fwd_.data() + fwd_.size() - a_floats);
        bwd_.resize(bwd_.size() + at_floats);
        pack_a(one.data(), ic, true, ic, oc, bwd_.data() + bwd_.size() - at_floats);
        if (rows_ == ConvTapRows::kChannels) continue;
        // With the pixels as rows: W_ij^T [in, out_c] and W_ij [out_c, in] as the B operand.
        const size_t b_floats = packed_b_floats(ic, oc), bt_floats = packed_b_floats(oc, ic);
        fwd_b_.resize(fwd_b_.size() + b_floats);
        bwd_b_.resize(bwd_b_.size() + bt_floats);
        std::vector<float> column(static_cast<size_t>(oc));
        for (int c = 0; c < ic; ++c) {
          for (int o = 0; o < oc; ++o) column[size_t(o)] = one[size_t(o) * ic + c];
          pack_b_row(column.data(), c, ic, oc, fwd_b_.data() + fwd_b_.size() - b_floats);
        }
        float* bwd_b = bwd_b_.data() + bwd_b_.size() - bt_floats;
        for (int o = 0; o < oc; ++o) pack_b_row(one.data() + size_t(o) * ic, o, oc, ic, bwd_b);
      }
  }

  // Both interleaved chunks, each followed by the slack the last GEMM's whole tiles read, and nb
  // input planes; with the pixels as rows, one run's packed rows too.
  size_t scratch_floats(int n) const {
    const int nb = std::min(n, chunk_);
    const size_t sides = (size_t(in_.c) * in_plane_ + size_t(out_.c) * out_plane_) * size_t(nb) +
                         2 * size_t(kGemmNR) + size_t(nb) * in_plane_;  // and to_side's temp
    if (rows_ == ConvTapRows::kChannels) return sides;
    return sides + packed_a_floats(out_.w * nb, std::max(in_.c, out_.c));
  }

  // y [n, out] = bias + W * x [n, in].
  void forward(const float* x, float* y, int n, const float* bias, float* scratch) const {
    run(x, y, n, bias, scratch, true);
  }
  // dx [n, in] = W^T * dy [n, out].
  void backward(const float* dy, float* dx, int n, float* scratch) const {
    run(dy, dx, n, nullptr, scratch, false);
  }

 private:
  // Enough images per chunk for wide GEMMs, their interleaved planes within about 1 MB.
  static constexpr size_t kTapChunkFloats = size_t(1) << 18;
  // What packing one float of the pixels-as-rows form's A costs, in multiply-adds of a register
  // tile (pixel_rows). Natively, on the paper network's fourth layer and the U-Net's bottleneck
  // at batches 1 to 8, the rule took the faster form or one within 7% of it (bench/README.md).
  static constexpr size_t kPackCost = 2 * kGemmLanes;

  struct Run {
    int tap;        // which packed W_ij
    int out_pixel;  // first output pixel (oy * out_w + ox), in its plane
    int in_pixel;   // first input pixel under it, in the phase-split plane
    int len;        // pixels in the row
  };

  static int ceil_div(int a, int b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }

  // The rows asked for (set_conv_tap_rows). kAuto weighs the pixels as rows only where a GEMM
  // tile is wider than 8 columns (AVX, AVX-512): with 8 (wasm, SSE, NEON), one image of a 12-wide
  // plane fills 12 of 16 columns, and in wasm the pixels as rows gained 2% of a direct call of
  // the shipped model and nothing a walk showed, for about 9 MB more packed weights in each of
  // the page's workers (bench/README.md).
  static ConvTapRows tap_rows() {
    const ConvTapRows asked = g_conv_tap_rows.load();
    return asked == ConvTapRows::kAuto && kGemmNR <= 8 ? ConvTapRows::kChannels : asked;
  }

  // Calls move(i, c, q, b) for every entry of images [b0, b0 + nb): i its index in [n, C, H, W],
  // c its channel, q its pixel in the chunk's plane and b its image in the chunk; `phased`: the
  // input side, its rows split into phases (q = (y * sx + phase) * wq + x / sx).
  // kChannelsLast: the same entries with the channel innermost, for a side laid out [plane, nb, C]
  // (the pixels as rows), which is then read in order: its 128 channels of a pixel were 128
  // cache lines apart the other way round.
  // Out of line: inlined into run_chunk beside the vector copies, GCC kept its indices in vector
  // registers, and a chunk of 28 images' gradient took 1.45x the time.
  template <bool kChannelsLast = false, class Move>
  __attribute__((noinline)) void each_entry(int b0, int nb, bool phased, Move move) const {
    const Shape& sh = phased ? in_ : out_;
    const int sx = phased ? sx_ : 1, wq = phased ? wq_ : sh.w;
    const size_t plane = size_t(sh.h) * sh.w;
    for (int b = 0; b < nb; ++b) {
      if constexpr (kChannelsLast) {
        for (int y = 0; y < sh.h; ++y)
          for (int phase = 0; phase < sx && phase < sh.w; ++phase) {
            size_t q = (size_t(y) * sx + size_t(phase)) * wq;
            for (int x = phase; x < sh.w; x += sx, ++q) {
              const size_t first = size_t(b0 + b) * sh.c * plane + size_t(y) * sh.w + size_t(x);
              for (int c = 0; c < sh.c; ++c) move(first + size_t(c) * plane, c, q, b);
            }
          }
        continue;
      }
      for (int c = 0; c < sh.c; ++c)
        for (int y = 0; y < sh.h; ++y) {
          const size_t first = ((size_t(b0 + b) * sh.c + size_t(c)) * sh.h + size_t(y)) * sh.w;
          for (int phase = 0; phase < sx && phase < sh.w; ++phase) {
            size_t q = (size_t(y) * sx + size_t(phase)) * wq;
            for (int x = phase; x < sh.w; x += sx, ++q) move(first + size_t(x), c, q, b);
          }
        }
    }
  }

  // Calls f(std::integral_constant<int, nb>) where nb is 1, 2, 4 or 8 (and says whether it did).
  template <class F>
  static bool with_rows(int nb, F f) {
    switch (nb) {
      case 1:
        f(std::integral_constant<int, 1>{});
        return true;
      case 2:
        f(std::integral_constant<int, 2>{});
        return true;
      case 4:
        f(std::integral_constant<int, 4>{});
        return true;
      case 8:
        f(std::integral_constant<int, 8>{});
        return true;
      default:
        return false;
    }
  }

  // Images [b0, b0 + nb) of `images` ([n, C, H, W]; the input side if `phased`) into a side laid
  // out [C, plane, nb] (read_at in run_chunk). For 1, 2, 4 or 8 images a channel at a time: the nb
  // planes (on the input side with a stride across above 1, first split into phases in `temp`)
  // transposed a vector of columns at a time (simd::interleave_rows); any other count entry by
  // entry through each_entry's move(i, c, q, b). Entry by entry, the copies in and out were about
  // 3% of the paper network's step at batch 8 by `perf`; this way 1.5% (bench/README.md).
  template <class Move>
  void to_side(const float* images, int b0, int nb, bool phased, float* side, float* temp,
               Move move) const {
    const Shape& sh = phased ? in_ : out_;
    const size_t len = size_t(sh.size()), plane = phased ? size_t(in_plane_) : size_t(out_plane_);
    const bool done = with_rows(nb, [&](auto rows) {
      constexpr int N = decltype(rows)::value;
      for (int c = 0; c < sh.c; ++c) {
        float* to = side + size_t(c) * plane * N;
        if (!phased || sx_ == 1) {
          simd::interleave_rows<N>(images + size_t(b0) * len + size_t(c) * plane, len, plane, to);
          continue;
        }
        // Split into phases first (one image's split plane is its side's already).
        for (int b = 0; b < N; ++b)
          split_plane(images + (size_t(b0 + b) * sh.c + c) * sh.h * sh.w,
                      N == 1 ? to : temp + size_t(b) * plane);
        if (N > 1) simd::interleave_rows<N>(temp, plane, plane, to);
      }
    });
    if (done) return;
    // Phase-split rows wider than the image keep zeros in their extra entries.
    if (phased && sx_ * wq_ != in_.w) std::memset(side, 0, sizeof(float) * plane * sh.c * nb);
    each_entry(b0, nb, phased, move);
  }
  // The way back, for a side laid out [C, plane, nb] (with kChannelsLast, [plane, nb, C], entry by
  // entry).
  template <bool kChannelsLast, class Move>
  void from_side(const float* side, int b0, int nb, bool phased, float* images, float* temp,
                 Move move) const {
    const Shape& sh = phased ? in_ : out_;
    const size_t len = size_t(sh.size()), plane = phased ? size_t(in_plane_) : size_t(out_plane_);
    if (!kChannelsLast && with_rows(nb, [&](auto rows) {
          constexpr int N = decltype(rows)::value;
          for (int c = 0; c < sh.c; ++c) {
            const float* from = side + size_t(c) * plane * N;
            float* to = images + size_t(b0) * len + size_t(c) * plane;
            if (!phased || sx_ == 1) {
              simd::deinterleave_rows<N>(from, plane, to, len);
              continue;
            }
            if (N > 1) simd::deinterleave_rows<N>(from, plane, temp, plane);
            for (int b = 0; b < N; ++b)
              merge_phases((N == 1 ? from : temp) + size_t(b) * plane, size_t(wq_), plane,
                           size_t(sx_) * wq_, Shape{1, sh.h, sh.w}, Padding{}, 1, sx_,
                           images + (size_t(b0 + b) * sh.c + c) * sh.h * sh.w);
          }
        }))
      return;
    each_entry<kChannelsLast>(b0, nb, phased, move);
  }
  // One input plane (in_.h x in_.w) with its rows split into phases as the input side lays them
  // out: row y's phase p at (y * sx + p) * wq, zeros past the image.
  void split_plane(const float* x, float* out) const {
    for (int y = 0; y < in_.h; ++y)
      split_row(x + size_t(y) * in_.w, in_.w, 0, sx_, wq_, out + size_t(y) * sx_ * wq_,
                size_t(wq_));
  }

  // Whether a chunk of nb images takes the pixels as its GEMMs' rows: where the register tiles
  // of the channels-as-rows form would compute more padding (a run's pixels times nb rounded up
  // to whole kGemmNR columns: on the paper network's 3x12 planes, 12 of every 32 columns for one
  // image natively) than the pixels-as-rows form does with its rows packed per call.
  bool pixel_rows(int nb, int channels) const {
    if (rows_ != ConvTapRows::kAuto) return rows_ == ConvTapRows::kPixels;
    auto up = [](size_t v, size_t to) { return (v + to - 1) / to * to; };
    size_t by_channels = 0, by_pixels = 0;
    for (const Run& r : runs_) {
      const size_t cols = size_t(r.len) * size_t(nb);
      by_channels += up(size_t(channels), kGemmMR) * up(cols, kGemmNR);
      by_pixels += up(cols, kGemmMR) * up(size_t(channels), kGemmNR) + kPackCost * cols;
    }
    return by_pixels < by_channels;
  }

  void run(const float* src, float* dst, int n, const float* bias, float* scratch,
           bool forward) const {
    for (int b0 = 0; b0 < n; b0 += chunk_) {
      const int nb = std::min(chunk_, n - b0);
      if (pixel_rows(nb, forward ? out_.c : in_.c))
        run_chunk<true>(src, dst, b0, nb, bias, scratch, forward);
      else
        run_chunk<false>(src, dst, b0, nb, bias, scratch, forward);
    }
  }

  // One chunk of images, each tap's GEMM with the channels or (kPixels) the pixels as its rows.
  // The side the GEMMs read is [C, plane, nb], its channels ld apart (with the pixels as rows a
  // run's pixels are then the packed A's rows, read transposed); the side they write is laid out
  // the same with the channels as rows, as [plane, nb, C] with the pixels as rows (a run's pixels
  // its rows: C^T = B^T A^T). The same products in the same order either way (a multiply-add's
  // two factors swap), so the same bits.
  template <bool kPixels>
  void run_chunk(const float* src, float* dst, int b0, int nb, const float* bias, float* scratch,
                 bool forward) const {
    const size_t in_ld = size_t(in_plane_) * nb, out_ld = size_t(out_plane_) * nb;
    const size_t in_floats = size_t(in_.c) * in_ld, out_floats = size_t(out_.c) * out_ld;
    float* xs = scratch;                   // input side
    float* ys = xs + in_floats + kGemmNR;  // output side
    float* temp = ys + out_floats + kGemmNR;        // nb input planes (to_side, from_side)
    float* packed = temp + size_t(in_plane_) * nb;  // with the pixels as rows: a run's packed A
    // The slack the channels-as-rows GEMMs' last whole tiles read past a side.
    std::memset(xs + in_floats, 0, sizeof(float) * kGemmNR);
    std::memset(ys + out_floats, 0, sizeof(float) * kGemmNR);
    auto read_at = [nb](size_t ld, int c, size_t q, int b) {
      return size_t(c) * ld + q * size_t(nb) + size_t(b);
    };
    auto written_at = [nb, read_at](size_t ld, int channels, int c, size_t q, int b) {
      return kPixels ? (q * size_t(nb) + size_t(b)) * size_t(channels) + size_t(c)
                     : read_at(ld, c, q, b);
    };
    if (forward) {
      to_side(src, b0, nb, true, xs, temp,
              [&](size_t i, int c, size_t q, int b) { xs[read_at(in_ld, c, q, b)] = src[i]; });
      if constexpr (kPixels) {
        for (size_t q = 0; q < out_ld; ++q)
          for (int o = 0; o < out_.c; ++o) ys[q * out_.c + size_t(o)] = bias ? bias[o] : 0.0f;
        pixel_products(xs, in_ld, in_.c, fwd_b_, ys, out_.c, nb, true, packed);
      } else {
        for (int o = 0; o < out_.c; ++o)
          std::fill(ys + size_t(o) * out_ld, ys + size_t(o + 1) * out_ld, bias ? bias[o] : 0.0f);
        channel_products(xs, in_ld, in_.c, fwd_, ys, out_ld, out_.c, nb, true);
      }
      from_side<kPixels>(ys, b0, nb, false, dst, temp, [&](size_t i, int c, size_t q, int b) {
        dst[i] = ys[written_at(out_ld, out_.c, c, q, b)];
      });
    } else {
      to_side(src, b0, nb, false, ys, temp,
              [&](size_t i, int c, size_t q, int b) { ys[read_at(out_ld, c, q, b)] = src[i]; });
      std::memset(xs, 0, sizeof(float) * in_floats);
      if constexpr (kPixels)
        pixel_products(ys, out_ld, out_.c, bwd_b_, xs, in_.c, nb, false, packed);
      else
        channel_products(ys, out_ld, out_.c, bwd_, xs, in_ld, in_.c, nb, false);
      from_side<kPixels>(xs, b0, nb, true, dst, temp, [&](size_t i, int c, size_t q, int b) {
        dst[i] = xs[written_at(in_ld, in_.c, c, q, b)];
      });
    }
  }

  // With the channels as rows: the written side (`rows` channels, to_ld apart) += each run's tap
  // weights, packed as A, x the read side's pixels of the run (`k` channels, ld apart, read in
  // place); forward, the read side is the input.
  void channel_products(const float* from, size_t ld, int k, const std::vector<float>& weights,
                        float* to, size_t to_ld, int rows, int nb, bool forward) const {
    const size_t a_floats = packed_a_floats(rows, k);
    for (const Run& r : runs_) {
      const int read = forward ? r.in_pixel : r.out_pixel;
      const int written = forward ? r.out_pixel : r.in_pixel;
      multiply_strided(rows, r.len * nb, k, weights.data() + size_t(r.tap) * a_floats,
                       from + size_t(read) * nb, int(ld), to + size_t(written) * nb, int(to_ld),
                       nullptr, true);
    }
  }

  // With the pixels as rows: the written side (rows of `cols` channels) += each run's pixels of
  // the read side (`k` channels, ld apart; packed into `packed` as A) x its tap's weights packed
  // as B; forward, the read side is the input.
  void pixel_products(const float* from, size_t ld, int k, const std::vector<float>& weights,
                      float* to, int cols, int nb, bool forward, float* packed) const {
    const size_t b_floats = packed_b_floats(k, cols);
    for (const Run& r : runs_) {
      const int read = forward ? r.in_pixel : r.out_pixel;
      const int written = forward ? r.out_pixel : r.in_pixel;
      pack_a(from + size_t(read) * nb, int(ld), true, r.len * nb, k, packed);
      multiply_packed(r.len * nb, cols, k, packed, weights.data() + size_t(r.tap) * b_floats,
                      to + size_t(written) * nb * size_t(cols), cols, nullptr, true);
    }
  }

  Shape in_, out_;
  int sx_;                    // stride_w
  ConvTapRows rows_;          // which side the GEMMs' rows come from (set_conv_tap_rows)
  int wq_;                    // phase-split columns per phase
  int in_plane_, out_plane_;  // floats per channel of one image on each side
  int chunk_;
  std::vector<Run> runs_;
  std::vector<float> fwd_, bwd_;  // per tap: W_ij packed as [out_c, in], W_ij^T as [in, out_c]
  std::vector<float> fwd_b_, bwd_b_;  // per tap, as B: W_ij^T [in, out_c], W_ij [out_c, in]
};

class Conv2d final : public Layer {
 public:
  Conv2d(const LayerSpec& s, const Model& m)
      : Layer(s), k_(s.in.c * s.kernel_h * s.kernel_w), p_(s.out.h * s.out.w) {
    const std::vector<float>& w = m.tensor(s.tensor("weight")->name).data;
    if (s.bias) bias_ = m.tensor(s.tensor("bias")->name).data;
    const size_t depth = size_t(std::max(k_, s.out.c));
    chunk_ = int(std::max<size_t>(1, kChunkFloats / (depth * size_t(p_))));
    const bool strided = s.stride_h > 1 || s.stride_w > 1;
    if (!shiftable(s) && by_taps(s)) {
      taps_ = std::make_unique<TapConv>(s, w);
    } else if (!shiftable(s)) {
      // im2col, each direction unless it goes by stride phases
      const ConvStridedForm form = g_conv_strided_form.load();
      if (strided && form != ConvStridedForm::kIm2col) phased(s, w, form == ConvStridedForm::kPhases);
      if (!forward_plane_) {
        forward_a_.resize(packed_a_floats(s.out.c, k_));
        pack_a(w.data(), k_, false, s.out.c, k_, forward_a_.data());
      }
      if (!backward_plane_) {
        backward_a_.resize(packed_a_floats(k_, s.out.c));
        pack_a(w.data(), k_, true, k_, s.out.c, backward_a_.data());
      }
    } else {
      const int kh = s.kernel_h, kw = s.kernel_w, ic = s.in.c, oc = s.out.c;
      forward_plane_ = stride1_plane(ic, s.in.h, s.in.w, s.pad, kh, kw, oc, w);
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
      backward_plane_ = stride1_plane(oc, s.out.h, s.out.w, back, kh, kw, ic, w_t);
    }
  }

  // Packed operand, GEMM output and one im2col row, for one chunk (the plane forms: what theirs
  // need for n images, forward or backward).
  size_t scratch_floats(int n) const override {
    if (taps_) return taps_->scratch_floats(n);
    size_t floats = 0;
    if (forward_plane_) floats = forward_plane_->scratch_floats(n);
    if (backward_plane_) floats = std::max(floats, backward_plane_->scratch_floats(n));
    if (forward_plane_ && backward_plane_) return floats;
    const int cols = std::min(n, chunk_) * p_;
    const int depth = std::max(k_, spec().out.c);
    return std::max(floats, packed_b_floats(depth, cols) + size_t(depth) * size_t(cols) +
                                std::max(size_t(spec().out.w), col2im_floats()));
  }

  void forward(const float* x, float* y, int n, float* scratch) const override {
    const LayerSpec& s = spec();
    const float* bias = bias_.empty() ? nullptr : bias_.data();
    if (taps_) return taps_->forward(x, y, n, bias, scratch);
    if (forward_plane_)
      return forward_plane_->run(x, size_t(s.in.size()), y, size_t(s.out.size()), n, bias, scratch);
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

  bool backward_reads_input() const override { return false; }
  bool backward_reads_output() const override { return false; }
  void backward_input(const float*, const float*, const float* dy, float* dx, int n,
                      float* scratch) const override {
    const LayerSpec& s = spec();
    const int oc = s.out.c;
    if (taps_) return taps_->backward(dy, dx, n, scratch);
    if (backward_plane_)
      return backward_plane_->run(dy, size_t(s.out.size()), dx, size_t(s.in.size()), n, nullptr,
                                  scratch);
    if (p_ % kGemmNR == 0) {
      // Every image's dy is a whole number of column tiles: the GEMM reads it in place, one image
      // at a time (the same sums as over packed panels, without the packing).
      float* phases = scratch + size_t(k_) * p_;
      for (int b = 0; b < n; ++b) {
        multiply_strided(k_, p_, oc, backward_a_.data(), dy + size_t(b) * s.out.size(), p_,
                         scratch, p_);
        col2im(scratch, p_, phases, dx + size_t(b) * s.in.size());
      }
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
      float* phases = dcol + size_t(k_) * cols;
      for (int b = 0; b < nb; ++b)
        col2im(dcol + size_t(b) * p_, cols, phases, dx + size_t(b0 + b) * s.in.size());
    }
  }

 private:
  // One direction of a shiftable stride-1 layer: `in` channels of in_h x in_w, padded by `pad`,
  // into out_c channels by the kh x kw kernel w; Winograd's F(4x4, 3x3) or F(2x2, 3x3) for a 3x3
  // kernel where stride1_form says so, else the direct GEMM over shifted rows.
  static std::unique_ptr<PlaneConv> stride1_plane(int in, int in_h, int in_w, Padding pad, int kh,
                                                  int kw, int out_c, const std::vector<float>& w) {
    if (kh == 3 && kw == 3) {
      const int out_h = in_h + pad.top + pad.bottom - 2, out_w = in_w + pad.left + pad.right - 2;
      switch (stride1_form(in, out_c, out_h, out_w)) {
        case Conv3x3Form::kWinograd4:
          return std::make_unique<Winograd4>(in, in_h, in_w, pad, out_c, w);
        case Conv3x3Form::kWinograd:
          return std::make_unique<Winograd>(in, in_h, in_w, pad, out_c, w);
        default:
          break;
      }
    }
    return std::make_unique<Shifted>(in, in_h, in_w, pad, kh, kw, out_c, w);
  }

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

  // A strided layer by stride phases in each direction where they widen a row by at most a
  // quarter; dx only where its GEMMs have kPhaseMinRows rows (input channels) and kPhaseMinColumns
  // columns: narrower ones lost to col2im over a chunk of images (bench/README.md). `always`:
  // both directions whatever the shape (ConvStridedForm::kPhases).
  // A 3x3 kernel of stride 2 takes the stride-2 Winograd form forward where
  // use_stride2_winograd_forward says so, dx where use_stride2_winograd_dx does (not with
  // `always`, which asks for the phases themselves).
  void phased(const LayerSpec& s, const std::vector<float>& w, bool always) {
    const bool winograd =
        !always && s.kernel_h == 3 && s.kernel_w == 3 && s.stride_h == 2 && s.stride_w == 2;
    if (winograd && use_stride2_winograd_forward(s.in.c, s.out.c)) {
      forward_plane_ = std::make_unique<Stride2Winograd>(s, w);
    } else {
      auto fwd = std::make_unique<PhasedForward>(s, w);
      if (always || 4 * fwd->waste() <= s.out.w) forward_plane_ = std::move(fwd);
    }
    if (winograd && use_stride2_winograd_dx(s.out.c, s.in.c)) {
      backward_plane_ = std::make_unique<Stride2WinogradBackward>(s, w);
      return;
    }
    if (!always && s.in.c < kPhaseMinRows) return;
    auto bwd = std::make_unique<PhasedBackward>(s, w);
    if (always || (4 * bwd->waste() <= bwd->columns() && bwd->gemm_columns() >= kPhaseMinColumns))
      backward_plane_ = std::move(bwd);
  }

  // Stride 1 where the shifted form does not apply, and strided layers into small planes whose
  // GEMM per tap is deep enough (kTapMinDepth channels in and out), unless set_conv_taps(false).
  static bool by_taps(const LayerSpec& s) {
    if (!g_conv_taps.load()) return false;
    if (s.stride_h == 1 && s.stride_w == 1) return true;
    return s.in.c >= kTapMinDepth && s.out.c >= kTapMinDepth &&
           s.out.h * s.out.w <= kTapMaxStridedPlane;
  }

  // Copies len floats to columns [col, col + len) of row p of packed panels (depth k, n columns;
  // the padding after column n - 1 is zeroed when the copy reaches it).
  static void write_packed(float* packed, int k, int p, int col, int n, const float* src, int len) {
    int t = 0;
    while (t < len) {
      const int c = col + t, panel = c / kGemmNR, lane = c % kGemmNR;
      const int piece = std::min(kGemmNR - lane, len - t);
      float* dst = packed + size_t(panel) * kGemmNR * k + size_t(p) * kGemmNR + lane;
      copy_row(src + t, piece, dst);
      t += piece;
      if (c + piece == n)
        for (int j = lane + piece; j < kGemmNR; ++j) dst[j - lane] = 0.0f;
    }
  }

  // Row kk = (c, i, j) of one image's im2col matrix, written to packed columns [col, col + P):
  // value[oy * Wo + ox] = x[c, iy, ix] with iy = oy * sh - pad_top + i, ix = ox * sw - pad_left + j,
  // zero outside the image. `row` holds Wo floats.
  void im2col_row(const float* x, int kk, int col, int n, float* packed, float* row) const {
    const LayerSpec& s = spec();
    const int j = kk % s.kernel_w, i = (kk / s.kernel_w) % s.kernel_h, c = kk / (s.kernel_w * s.kernel_h);
    const int wo = s.out.w;
    for (int oy = 0; oy < s.out.h; ++oy) {
      const int iy = oy * s.stride_h - s.pad.top + i;
      if (iy < 0 || iy >= s.in.h)
        std::memset(row, 0, sizeof(float) * size_t(wo));
      else
        gather_phase(x + (size_t(c) * s.in.h + iy) * s.in.w, s.in.w, s.stride_w, j - s.pad.left, wo, row);
      write_packed(packed, k_, kk, col + oy * wo, n, row, wo);
    }
  }

  // col2im's scratch: the stride phases of dx padded, as PhasedForward lays them out (phase
  // (pi, pj) of channel c holds x_pad[c, sh yq + pi, sw xq + pj] for yq < hq, xq < wq).
  int col2im_hq() const {
    const LayerSpec& s = spec();
    return phase_extent(s.in.h, s.pad.top + s.pad.bottom, s.stride_h, s.out.h, s.kernel_h);
  }
  int col2im_wq() const {
    const LayerSpec& s = spec();
    return phase_extent(s.in.w, s.pad.left + s.pad.right, s.stride_w, s.out.w, s.kernel_w);
  }
  size_t col2im_floats() const {
    const LayerSpec& s = spec();
    return size_t(s.stride_h) * s.stride_w * s.in.c * col2im_hq() * col2im_wq();
  }

  // dx (one image) = the im2col rows of dcol (row stride ld) scattered back and summed: row
  // (c, i, j) of dcol lands on one stride phase of the padded dx, from row i / sh and column
  // j / sw of it on, where its rows are added a vector at a time (into `phases`, col2im_floats());
  // the phases are then interleaved into dx. Each entry sums its terms in the order of the rows,
  // as a scatter straight into dx would (which took twice as long at stride 2: every other lane
  // added a zero, and the rows' ends went a float at a time).
  void col2im(const float* dcol, int ld, float* phases, float* dx) const {
    const LayerSpec& s = spec();
    const int sh = s.stride_h, sw = s.stride_w, kh = s.kernel_h, kw = s.kernel_w, wo = s.out.w;
    const int wq = col2im_wq();
    const size_t channel = size_t(col2im_hq()) * wq, phase = size_t(s.in.c) * channel;
    std::memset(phases, 0, sizeof(float) * col2im_floats());
    for (int kk = 0; kk < k_; ++kk) {
      const int j = kk % kw, i = (kk / kw) % kh, c = kk / (kw * kh);
      float* plane = phases + size_t((i % sh) * sw + j % sw) * phase + size_t(c) * channel +
                     size_t(i / sh) * wq + size_t(j / sw);
      const float* row = dcol + size_t(kk) * ld;
      for (int oy = 0; oy < s.out.h; ++oy) add_row(row + size_t(oy) * wo, wo, plane + size_t(oy) * wq);
    }
    merge_phases(phases, phase, channel, size_t(wq), s.in, s.pad, sh, sw, dx);
  }

  int k_, p_, chunk_;
  std::vector<float> forward_a_, backward_a_, bias_;
  // Stride-1 layers (shiftable): one image at a time, shifted or Winograd; strided ones by stride
  // phases, either direction or both (phased), the other by im2col.
  std::unique_ptr<PlaneConv> forward_plane_, backward_plane_;
  // Layers by taps (by_taps): a chunk of images at a time.
  std::unique_ptr<TapConv> taps_;
};

}  // namespace

void set_conv3x3_form(Conv3x3Form form) { g_conv3x3_form.store(form); }
Conv3x3Form conv3x3_form() { return g_conv3x3_form.load(); }
bool winograd_by_default() { return simd::kLanes == 4 || halves_wide_multiply_adds(); }
void set_conv_row_tiles(bool on) { g_conv_row_tiles.store(on); }
bool conv_row_tiles() { return g_conv_row_tiles.load(); }
void set_conv_taps(bool on) { g_conv_taps.store(on); }
bool conv_taps() { return g_conv_taps.load(); }
void set_conv_tap_rows(ConvTapRows rows) { g_conv_tap_rows.store(rows); }
ConvTapRows conv_tap_rows() { return g_conv_tap_rows.load(); }
void set_conv_strided_form(ConvStridedForm form) { g_conv_strided_form.store(form); }
ConvStridedForm conv_strided_form() { return g_conv_strided_form.load(); }

std::unique_ptr<Layer> make_conv2d(const LayerSpec& spec, const Model& m) {
  return std::make_unique<Conv2d>(spec, m);
}

}  // namespace ebm
