// One factory per layer file; make_layer (layers.cpp) dispatches on the layer kind.
#pragma once

#include <memory>

#include "ebm/layers.h"

namespace ebm {

std::unique_ptr<Layer> make_conv2d(const LayerSpec& spec, const Model& m);
std::unique_ptr<Layer> make_dense(const LayerSpec& spec, const Model& m);
std::unique_ptr<Layer> make_affine(const LayerSpec& spec, const Model& m);  // affine, batchnorm
std::unique_ptr<Layer> make_swish(const LayerSpec& spec);
std::unique_ptr<Layer> make_leaky_relu(const LayerSpec& spec);
std::unique_ptr<Layer> make_avgpool(const LayerSpec& spec);
std::unique_ptr<Layer> make_flatten(const LayerSpec& spec);
std::unique_ptr<Layer> make_add(const LayerSpec& spec);  // pointwise.cpp, the identity too
// resample.cpp:
std::unique_ptr<Layer> make_upsample(const LayerSpec& spec);
std::unique_ptr<Layer> make_space_to_depth(const LayerSpec& spec);
std::unique_ptr<Layer> make_depth_to_space(const LayerSpec& spec);

}  // namespace ebm
