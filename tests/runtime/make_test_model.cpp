// Writes a model with random weights for a preset: for CLI, cross-language and page tests.
//   make_test_model PRESET.json OUT.safetensors [seed] [f16|f32] [LABEL,LABEL,...]
// With labels, a classifier: the preset's last dense layer gets one output per label.
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "ebm/model.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr
        << "usage: make_test_model PRESET.json OUT.safetensors [seed] [f16|f32] [LABEL,...]\n";
    return 2;
  }
  try {
    const ebm::Preset p = ebm::load_preset(argv[1]);
    const uint64_t seed = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 1;
    std::vector<std::string> labels;
    if (argc > 5)
      for (std::string rest = argv[5]; !rest.empty();) {
        const size_t comma = rest.find(',');
        labels.push_back(rest.substr(0, comma));
        rest = comma == std::string::npos ? "" : rest.substr(comma + 1);
      }
    ebm::Architecture arch = p.arch;
    if (!labels.empty()) {
      nlohmann::json layers = arch.layers_json();
      layers.back()["out_features"] = labels.size();
      arch = ebm::resolve_architecture(arch.input, layers);
    }
    ebm::Model m = ebm::random_model(
        arch, seed, labels.empty() ? ebm::ModelKind::kEnergy : ebm::ModelKind::kClassifier);
    if (!labels.empty()) m.labels = labels;
    if (p.energy.denoiser) {
      // A noise-conditional preset: its energy form and a mean image (light, like a drawing).
      m.energy = p.energy;
      const ebm::Shape s = m.image_shape();
      ebm::Tensor mean;
      mean.name = ebm::kEnergyMeanTensor;
      mean.shape = {s.c, s.h, s.w};
      mean.data.assign(size_t(s.size()), 0.7f);
      m.tensors.insert(m.tensors.begin(), std::move(mean));
    }
    m.sampler = ebm::parse_sampler_params(p.sampler);
    m.card = {{"name", std::string(labels.empty() ? "random " : "random classifier ") + p.name},
              {"description", "random weights, for tests"}};
    const bool f32 = argc > 4 && std::string(argv[4]) == "f32";
    ebm::save_model(argv[2], m, f32 ? ebm::DType::kF32 : ebm::DType::kF16);
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "make_test_model: " << e.what() << "\n";
    return 1;
  }
}
