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
    case LayerKind::kAdd: return make_add(spec);
    case LayerKind::kUpsample: return make_upsample(spec);
    case LayerKind::kSpaceToDepth: return make_space_to_depth(spec);
    case LayerKind::kDepthToSpace: return make_depth_to_space(spec);
  }
  return nullptr;
}

}  // namespace ebm
