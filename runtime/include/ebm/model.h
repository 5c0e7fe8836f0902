// A model file: a safetensors file whose "__metadata__" describes the network (SPEC section 3).
//   ebm.format   "1"
//   ebm.kind     "energy" (one output: low for real images) or "classifier" (N logits)
//   ebm.labels   JSON array of N class names (classifiers)
//   ebm.input    {"channels":C,"height":H,"width":W}
//   ebm.layers   the explicit layer list (see architecture.h)
//   ebm.sampler  default sampler settings (see sampler_params.h)
//   ebm.card     free-form JSON object: name, description, dataset, training summary, license
//   ebm.energy   format "2" and "3": how the energy is built from the layers (EnergyForm below)
//   ebm.autoguide  format "3" only: a weaker denoiser energy carried beside the model, for the
//                samplers' autoguidance (sampler_params.h): {"layers": [...], "energy": {...},
//                "card": {...}} over the same input, its tensors named "autoguide.<name>"
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ebm/architecture.h"
#include "ebm/safetensors.h"
#include "ebm/sampler_params.h"

namespace ebm {

inline constexpr const char* kModelFormatVersion = "1";
// Noise-conditional energies (a denoiser's layer list plus "ebm.energy") need format "2"; every
// other model is still written, and read, as format "1".
inline constexpr const char* kModelFormatDenoiser = "2";
// A denoiser that carries a weaker one for autoguidance ("ebm.autoguide") is format "3".
inline constexpr const char* kModelFormatAutoguided = "3";
// The tensors of the weaker network are stored under this prefix.
inline constexpr const char* kAutoguidePrefix = "autoguide.";

enum class ModelKind { kEnergy, kClassifier };
const char* model_kind_name(ModelKind k);

// A denoiser's mean image, shaped [C, H, W] like the image, is this tensor of the model.
inline constexpr const char* kEnergyMeanTensor = "energy.mean";

struct Model {
  ModelKind kind = ModelKind::kEnergy;
  EnergyForm energy;
  std::vector<std::string> labels;  // classifiers: one per output
  Architecture arch;
  SamplerParams sampler;
  nlohmann::json card = nlohmann::json::object();
  std::vector<Tensor> tensors;  // exactly the tensors the layers use, in file order
  // A weaker denoiser energy over the same images, or null (format 1 and 2 files): what the
  // samplers' autoguidance pushes away from. Its own tensors are named without the prefix.
  std::shared_ptr<const Model> autoguide;

  const Tensor& tensor(const std::string& name) const;  // throws if absent
  // The images the model reads: arch.input, less the noise plane of a denoiser.
  Shape image_shape() const;
  // A summary for listings: kind, input, labels, parameter count, sampler and card.
  nlohmann::json describe() const;
};

// Parses and validates everything before anything is used: the safetensors container (see
// safetensors.h), the metadata, and that the tensors are exactly those the layers need, with
// the right shapes. Throws ebm::Error with a message naming the problem.
Model parse_model(const uint8_t* bytes, size_t size);
Model load_model(const std::string& path);  // errors are prefixed with the path

// Checks a model built in memory (by the trainer or a test) as parse_model would.
void validate_model(const Model& m);

// F16 by default (half the size; the runtime widens to F32 on load), F32 on request.
std::vector<uint8_t> serialize_model(const Model& m, DType dtype = DType::kF16);
void save_model(const std::string& path, const Model& m, DType dtype = DType::kF16);

// A model with every tensor of `arch` filled from a seeded uniform(-a, a) with a = 1/sqrt(fan_in)
// (batch-norm and affine parameters random around the identity, variances positive): for tests,
// benchmarks and placeholders.
Model random_model(const Architecture& arch, uint64_t seed, ModelKind kind = ModelKind::kEnergy);

// Folds every batchnorm or affine layer that follows a conv2d or dense layer into that layer's
// weight and bias (y = s * (W x + b) + t), turns any other batchnorm into an affine layer, and
// renames tensors to layers.<i>.<role>. The result computes the same function with fewer layers;
// the trainer's export and the runtime's loader both use it.
Model fold_normalization(const Model& m);

}  // namespace ebm
