// Architectures are data: an input shape plus an ordered list of layers, read from JSON. The same
// parser reads the concise presets in models/presets/ (shapes inferred, "same" padding) and the
// explicit list stored in a model file's "ebm.layers" (every size spelled out).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace ebm {

// Per-sample shape; flat vectors are {features, 1, 1}. Batches are row-major NCHW.
struct Shape {
  int c = 0, h = 1, w = 1;
  int64_t size() const { return int64_t(c) * h * w; }
  bool operator==(const Shape& o) const { return c == o.c && h == o.h && w == o.w; }
  bool operator!=(const Shape& o) const { return !(*this == o); }
  std::string str() const;  // "32x24x96"
};

enum class LayerKind {
  kConv2d,
  kBatchNorm,
  kAffine,
  kSwish,
  kLeakyRelu,
  kAvgPool,
  kFlatten,
  kDense,
  // Graph and resampling layers (U-Net-shaped denoisers):
  kAdd,           // y = x + the output of the layer named by "skip"
  kUpsample,      // nearest-neighbour, by an integer factor: [C, H, W] -> [C, fH, fW]
  kSpaceToDepth,  // PyTorch's pixel_unshuffle: [C, H, W] -> [C f^2, H/f, W/f]
  kDepthToSpace,  // PyTorch's pixel_shuffle: [C f^2, H, W] -> [C, fH, fW]
};
const char* layer_kind_name(LayerKind k);

struct Padding {
  int top = 0, left = 0, bottom = 0, right = 0;
};

// A tensor a layer reads: its role in the layer ("weight"), its name in the file, its shape.
struct TensorRef {
  std::string role;
  std::string name;
  std::vector<int64_t> shape;
};

// A layer list is a small graph: each layer reads the previous layer's output unless "from"
// names an earlier layer's "id" (or "input", the network's input); an add layer also reads the
// layer its "skip" names. References point backwards only, so list order is evaluation order.
constexpr int kNetworkInput = -1;

struct LayerSpec {
  LayerKind kind = LayerKind::kFlatten;
  Shape in, out;
  std::string id;                     // optional name for "from" and "skip" of later layers
  int from = kNetworkInput;           // index of the layer read (kNetworkInput: the input)
  int skip = kNetworkInput;           // add: index of the second operand
  int factor = 2;                     // upsample, space_to_depth, depth_to_space
  int kernel_h = 1, kernel_w = 1;  // conv2d, avgpool
  int stride_h = 1, stride_w = 1;  // conv2d, avgpool
  Padding pad;                     // conv2d, avgpool (avgpool divides by the full window)
  bool bias = true;                // conv2d, dense
  float slope = 0.2f;              // leaky_relu: y = x for x > 0, slope * x otherwise
  float eps = 1e-5f;               // batchnorm: y = (x - mean) / sqrt(var + eps) * weight + bias
  // add: 0, or a noise level: above it the add passes its skip alone, and the layers only its
  // other operand needs are not run (a part of a denoiser energy, such as a full-resolution
  // refinement, that works at the small-noise end only). Denoiser energies only (Network).
  float sigma_max = 0;
  std::vector<TensorRef> tensors;

  // Whether this is an add that passes its skip alone at noise level sigma (sigma_max above).
  bool gated_off(float sigma) const {
    return kind == LayerKind::kAdd && sigma_max > 0 && sigma > sigma_max;
  }

  const TensorRef* tensor(const std::string& role) const;
};

struct Architecture {
  Shape input;
  std::vector<LayerSpec> layers;

  Shape output() const { return layers.empty() ? input : layers.back().out; }
  // True when some layer reads anything but its predecessor (a "from" or an add).
  bool is_graph() const;
  // Every number in every tensor, batch-norm statistics included (4 per channel), which is how
  // Keras counts the paper's Table 1.
  int64_t parameter_count() const;
  // The explicit form written to "ebm.layers".
  nlohmann::json layers_json() const;
  // What one image costs the whole network (see kMaxActivationBytesPerImage).
  int64_t activation_bytes() const;
  int64_t multiply_adds() const;
};

// Limits on what an architecture may ask for; each guards an allocation or a multiplication.
constexpr int kMaxLayers = 256;
constexpr int kMaxSpatial = 4096;               // height or width
constexpr int kMaxChannels = 1 << 16;           // channels or features
constexpr int kMaxKernel = 64;                  // kernel, stride and padding
constexpr int64_t kMaxActivation = 1ll << 26;   // floats per sample per layer
// Whole-network caps, so that a model that loads also runs, in the browser too (a wasm page has
// 4 GiB at most and samples several images at once). Activation bytes: the input and every
// layer's output, twice (Network keeps a gradient beside each), as F32. Multiply-adds: one
// forward pass (a Langevin step costs about three). The presets need at most 4.5 MiB and 5.1e7
// (unet), so the caps leave room for networks some 30 times larger.
constexpr int64_t kMaxActivationBytesPerImage = 128ll << 20;
constexpr int64_t kMaxMultiplyAddsPerImage = 2'000'000'000;

Shape parse_input_shape(const nlohmann::json& j);  // {"channels":1,"height":48,"width":192}
nlohmann::json input_shape_json(const Shape& s);

// Infers every shape from `input`, checks each layer against the limits above and names missing
// tensors "layers.<i>.<role>". Throws ebm::Error naming the layer ("layer 3 (conv2d): ...").
Architecture resolve_architecture(const Shape& input, const nlohmann::json& layers);

// A noise-conditional energy around a denoiser (SPEC 1b). The layer list maps
// v = [c_in (x - mean), and a constant plane log(sigma) / 4 when noise_plane] to F, shaped like
// the image; D = mean + sigma_data F(v) is the denoised image and
//   E(x, sigma) = |x - D|^2 / (2 sigma^2),   c_in = 1 / sqrt(sigma^2 + sigma_data^2)
// so -dE/dx = (D - x) / sigma^2 plus a Jacobian term, trained to be the score of the data
// blurred by N(0, sigma^2) (Salimans & Ho 2021's energy form). D has no skip from x on purpose:
// with Karras et al.'s skip (D = c_skip x + ...), dE/dx shrinks like sigma at small noise and
// the strokes never sharpen (measured: models/README.md).
//
// The same metadata describes a noise-conditional classifier (the guide of a noise-level sampler,
// trained on noised drawings x + sigma z): form "scalar" with "noise_plane": true. Its layers
// read v = [c_in x, the plane log(sigma) / 4] (c_in as above) and output the logits themselves.
struct EnergyForm {
  bool denoiser = false;  // false: the layers output E(x) (or the logits) itself
  float sigma_data = 0.5f;
  bool noise_plane = true;    // a denoiser's: whether its layers also read the noise plane
  bool scalar_noise = false;  // form "scalar" with a noise plane: a noise-conditional classifier
};
// Whether calls need a noise level sigma > 0 (a denoiser, or a scalar form with a noise plane),
// and whether the layers read the noise plane.
bool noise_conditional(const EnergyForm& f);
bool has_noise_plane(const EnergyForm& f);
// The shape the layers read for images of shape `image` (one more channel for a noise plane),
// and back.
Shape layers_input(const Shape& image, const EnergyForm& f);
Shape image_shape(const Architecture& arch, const EnergyForm& f);

nlohmann::json energy_form_json(const EnergyForm& f);
EnergyForm parse_energy_form(const nlohmann::json& j);  // ebm::Error names the bad key

// A named architecture from models/presets/<name>.json (or any path ending in .json).
struct Preset {
  std::string name;
  std::string description;
  Architecture arch;
  nlohmann::json layers;   // the "layers" list as written ("same" padding unresolved): the same
                           // layers on another input (ebm-train --objective multigrid's grids)
  nlohmann::json sampler;  // default sampler settings for models of this preset (may be null)
  nlohmann::json train;    // trainer defaults for this preset (may be null)
  EnergyForm energy;       // "energy" in the preset: a denoiser's form (arch.input then has
                           // the noise plane, "input" in the JSON does not)
};

// The folder holding the presets: $EBM_PRESETS_DIR if set, else the source tree's models/presets.
std::string presets_dir();
std::vector<std::string> list_presets();
Preset load_preset(const std::string& name_or_path);
Preset parse_preset(const nlohmann::json& j, const std::string& origin);

}  // namespace ebm
