// Writes a model with random weights for a preset: for CLI and cross-language tests.
//   make_test_model PRESET.json OUT.safetensors [seed] [f16|f32]
#include <cstdlib>
#include <iostream>

#include "ebm/model.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: make_test_model PRESET.json OUT.safetensors [seed] [f16|f32]\n";
    return 2;
  }
  try {
    const ebm::Preset p = ebm::load_preset(argv[1]);
    ebm::Model m = ebm::random_model(p.arch, argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 1);
    m.sampler = ebm::parse_sampler_params(p.sampler);
    m.card = {{"name", "random " + p.name}, {"description", "random weights, for tests"}};
    const bool f32 = argc > 4 && std::string(argv[4]) == "f32";
    ebm::save_model(argv[2], m, f32 ? ebm::DType::kF32 : ebm::DType::kF16);
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "make_test_model: " << e.what() << "\n";
    return 1;
  }
}
