// dense: y[n, O] = x[n, I] * W[O, I]^T + b;  dx[n, I] = dy[n, O] * W[O, I]
// The images are the GEMM's rows (A, packed per call: small); W^T and W are packed once at
// construction as the B operand, so a single image costs one pass over W, and a batch reads each
// W panel once per tile of images.
#include <algorithm>

#include "../gemm.h"
#include "factories.h"

namespace ebm {

namespace {

class Dense final : public Layer {
 public:
  Dense(const LayerSpec& s, const Model& m) : Layer(s) {
    const int in = s.in.c, out = s.out.c;
    const std::vector<float>& w = m.tensor(s.tensor("weight")->name).data;
    if (s.bias) bias_ = m.tensor(s.tensor("bias")->name).data;
    // forward B = W^T [I, O] (row i is column i of W); backward B = W [O, I]
    forward_b_.resize(packed_b_floats(in, out));
    std::vector<float> row(static_cast<size_t>(out));
    for (int i = 0; i < in; ++i) {
      for (int o = 0; o < out; ++o) row[size_t(o)] = w[size_t(o) * in + i];
      pack_b_row(row.data(), i, in, out, forward_b_.data());
    }
    backward_b_.resize(packed_b_floats(out, in));
    for (int o = 0; o < out; ++o) pack_b_row(w.data() + size_t(o) * in, o, out, in, backward_b_.data());
  }

  size_t scratch_floats(int n) const override {
    return std::max(packed_a_floats(n, spec().in.c), packed_a_floats(n, spec().out.c));
  }

  void forward(const float* x, float* y, int n, float* scratch) const override {
    const int in = spec().in.c, out = spec().out.c;
    pack_a(x, in, false, n, in, scratch);
    multiply_packed(n, out, in, scratch, forward_b_.data(), y, out);
    if (!bias_.empty())
      for (int b = 0; b < n; ++b)
        for (int o = 0; o < out; ++o) y[size_t(b) * out + o] += bias_[size_t(o)];
  }

  bool backward_reads_input() const override { return false; }
  bool backward_reads_output() const override { return false; }
  void backward_input(const float*, const float*, const float* dy, float* dx, int n,
                      float* scratch) const override {
    const int in = spec().in.c, out = spec().out.c;
    pack_a(dy, out, false, n, out, scratch);
    multiply_packed(n, in, out, scratch, backward_b_.data(), dx, in);
  }

 private:
  std::vector<float> bias_, forward_b_, backward_b_;
};

}  // namespace

std::unique_ptr<Layer> make_dense(const LayerSpec& spec, const Model& m) {
  return std::make_unique<Dense>(spec, m);
}

}  // namespace ebm
