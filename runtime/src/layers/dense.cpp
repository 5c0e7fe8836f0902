// dense: y[n, O] = x[n, I] * W[O, I]^T + b;  dx[n, I] = dy[n, O] * W[O, I]
#include "../gemm.h"
#include "factories.h"

namespace ebm {

namespace {

class Dense final : public Layer {
 public:
  Dense(const LayerSpec& s, const Model& m) : Layer(s) {
    weight_ = m.tensor(s.tensor("weight")->name).data;
    if (s.bias) bias_ = m.tensor(s.tensor("bias")->name).data;
  }

  void forward(const float* x, float* y, int n, float*) const override {
    const int in = spec().in.c, out = spec().out.c;
    if (!bias_.empty())
      for (int b = 0; b < n; ++b)
        for (int o = 0; o < out; ++o) y[size_t(b) * out + o] = bias_[o];
    gemm_nt(n, out, in, x, in, weight_.data(), in, y, out, !bias_.empty());
  }

  void backward_input(const float*, const float*, const float* dy, float* dx, int n,
                      float*) const override {
    const int in = spec().in.c, out = spec().out.c;
    gemm_nn(n, in, out, dy, out, weight_.data(), in, dx, in);
  }

 private:
  std::vector<float> weight_, bias_;
};

}  // namespace

std::unique_ptr<Layer> make_dense(const LayerSpec& spec, const Model& m) {
  return std::make_unique<Dense>(spec, m);
}

}  // namespace ebm
