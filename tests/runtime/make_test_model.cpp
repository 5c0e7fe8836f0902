// Writes a model with random weights for a preset: for CLI, cross-language and page tests.
//   make_test_model PRESET.json OUT.safetensors [seed] [f16|f32] [LABEL,LABEL,...] [autoguide]
// With labels, a classifier: the preset's last dense layer gets one output per label. With
// "autoguide" (labels "" then), a denoiser that carries a second random one of the same preset as
// its weaker network (format 3), sampled with autoguide 2 up to sigma 5 and its levels split at
// sigma 20 (3 above).
#include <cstdlib>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "ebm/model.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr
        << "usage: make_test_model PRESET.json OUT.safetensors [seed] [f16|f32] [LABEL,...] "
           "[autoguide]\n";
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
    // A noise-conditional preset: its energy form and a mean image (light, like a drawing).
    auto add_energy = [&](ebm::Model& model) {
      model.energy = p.energy;
      const ebm::Shape s = model.image_shape();
      ebm::Tensor mean;
      mean.name = ebm::kEnergyMeanTensor;
      mean.shape = {s.c, s.h, s.w};
      mean.data.assign(size_t(s.size()), 0.7f);
      model.tensors.insert(model.tensors.begin(), std::move(mean));
    };
    if (p.energy.denoiser) add_energy(m);
    m.sampler = ebm::parse_sampler_params(p.sampler);
    if (argc > 6) {
      if (std::string(argv[6]) != "autoguide" || !p.energy.denoiser || !labels.empty())
        throw std::runtime_error("the sixth argument is \"autoguide\", for a denoiser preset");
      ebm::Model weak = ebm::random_model(arch, seed + 100);
      add_energy(weak);
      weak.card = {{"name", "random weaker " + p.name}};
      m.autoguide = std::make_shared<const ebm::Model>(std::move(weak));
      m.sampler.autoguide = 2.0f;
      m.sampler.autoguide_sigma_max = 5.0f;
      // And a schedule split as the shipped model's: 3 levels down to sigma 20, the rest below.
      m.sampler.split_sigma = 20.0f;
      m.sampler.split_levels = 3;
    }
    m.card = {{"name", std::string(labels.empty() ? "random " : "random classifier ") + p.name},
              {"description", "random weights, for tests"}};
    // As a run that continued another model writes it (ebm-train --init-from, --freeze-layers).
    if (m.autoguide)
      m.card["training"] = {{"epochs", 3}, {"steps", 30}, {"batch", 8},
                            {"started_from", "runs/earlier/model.safetensors"}, {"frozen_layers", 4}};
    const bool f32 = argc > 4 && std::string(argv[4]) == "f32";
    ebm::save_model(argv[2], m, f32 ? ebm::DType::kF32 : ebm::DType::kF16);
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "make_test_model: " << e.what() << "\n";
    return 1;
  }
}
