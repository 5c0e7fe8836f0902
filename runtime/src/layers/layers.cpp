#include "ebm/layers.h"

#include "factories.h"

namespace ebm {

std::unique_ptr<Layer> make_layer(const LayerSpec& spec, const Model& m) {
  switch (spec.kind) {
    case LayerKind::kConv2d: return make_conv2d(spec, m);
    case LayerKind::kDense: return make_dense(spec, m);
    case LayerKind::kBatchNorm:
    case LayerKind::kAffine: return make_affine(spec, m);
    case LayerKind::kSwish: return make_swish(spec);
    case LayerKind::kLeakyRelu: return make_leaky_relu(spec);
    case LayerKind::kAvgPool: return make_avgpool(spec);
    case LayerKind::kFlatten: return make_flatten(spec);
  }
  return nullptr;
}

}  // namespace ebm
