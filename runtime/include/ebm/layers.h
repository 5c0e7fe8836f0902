// Layers: forward, and backward with respect to the input (the weights are fixed). Every buffer
// is a batch of n samples, row-major NCHW, with the per-sample shapes in the layer's spec.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "ebm/architecture.h"
#include "ebm/model.h"

namespace ebm {

class Layer {
 public:
  explicit Layer(const LayerSpec& spec) : spec_(spec) {}
  virtual ~Layer() = default;
  Layer(const Layer&) = delete;
  Layer& operator=(const Layer&) = delete;

  const LayerSpec& spec() const { return spec_; }

  // x: [n, in], y: [n, out]. `scratch` holds scratch_floats(n) floats.
  virtual void forward(const float* x, float* y, int n, float* scratch) const = 0;
  // Given x and y from forward and dL/dy, writes dL/dx: [n, in]. dx never aliases x, y or dy.
  virtual void backward_input(const float* x, const float* y, const float* dy, float* dx, int n,
                              float* scratch) const = 0;
  // What backward_input reads besides dy: x (the layer's input), y (its output). The network keeps
  // an output through the backward pass only where that pass reads it; any other shares memory
  // once the layers that read it have run (Network). True unless the layer says otherwise.
  virtual bool backward_reads_input() const { return true; }
  virtual bool backward_reads_output() const { return true; }
  virtual size_t scratch_floats(int n) const {
    (void)n;
    return 0;
  }

 private:
  LayerSpec spec_;
};

// Builds the layer `spec` with its tensors taken from `m` (batchnorm becomes a per-channel affine).
std::unique_ptr<Layer> make_layer(const LayerSpec& spec, const Model& m);

}  // namespace ebm
