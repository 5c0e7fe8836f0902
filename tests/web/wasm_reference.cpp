// Native reference numbers for the node test of the wasm module (wasm_runtime.test.mjs): the
// same model, inputs and seeds through the native runtime, written as raw little-endian float32
// files plus a JSON description. Nothing here is committed; the test runs this first.
//   wasm_reference MODEL.safetensors OUT_DIR [DENOISER.safetensors [CLASSIFIER.safetensors]]
// With a noise-conditional model also: its energies and gradients at sigma 0.3 (denoiser_*.f32)
// and 4 chains of 6 steps of each noise-level form (denoiser_sample_<form>.f32). With a
// classifier also guided samples (issue 15): the paper form on MODEL toward cable_fan
// (guided_paper.f32) and ddim on the denoiser toward arch:0.5,cable:0.5 on the denoised estimate
// (guided_ddim.f32), 4 chains each.
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ebm/network.h"
#include "ebm/rng.h"
#include "ebm/sampler.h"

namespace {

void write_f32(const std::string& path, const std::vector<float>& v) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(v.data()), std::streamsize(v.size() * sizeof(float)));
  if (!out) throw std::runtime_error("cannot write " + path);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3 || argc > 6) {
    std::cerr << "usage: wasm_reference MODEL.safetensors OUT_DIR [DENOISER.safetensors "
                 "[CLASSIFIER.safetensors [AUTOGUIDED.safetensors]]]\n";
    return 2;
  }
  try {
    const std::string dir = argv[2];
    ebm::Network net = ebm::Network::from_file(argv[1]);
    const int d = int(net.input_size());

    // Energies and input gradients of three images: uniform noise, a smooth ramp, a half-range
    // noise image (so activations are exercised away from the noise regime too).
    const int n = 3;
    std::vector<float> x(size_t(n) * size_t(d));
    ebm::Pcg32 rng(5, 99);
    for (int k = 0; k < d; ++k) {
      x[size_t(k)] = rng.uniform_pm1();
      x[size_t(d + k)] = -1.0f + 2.0f * float(k) / float(d - 1);
      x[size_t(2 * d + k)] = 0.5f * rng.uniform_pm1();
    }
    std::vector<float> e(static_cast<size_t>(n)), g(x.size());
    net.energy_and_input_grad(x.data(), n, e.data(), g.data());
    write_f32(dir + "/inputs.f32", x);
    write_f32(dir + "/energies.f32", e);
    write_f32(dir + "/grads.f32", g);

    // Samples: 4 chains from uniform noise, each sampler form, a fixed seed and few steps.
    nlohmann::json meta = {
        {"count", n}, {"input_size", d}, {"chains", 4}, {"seed", 42}, {"steps", 10}};
    for (const char* form : {"paper", "textbook"}) {
      ebm::SamplerParams p =
          ebm::parse_sampler_params({{"form", form}, {"steps", 10}}, net.sampler());
      ebm::LangevinSampler s(net, p, 42);
      s.start_uniform(4, 0);
      write_f32(dir + "/start_" + form + ".f32", s.images());
      s.run();
      write_f32(dir + "/sample_" + form + ".f32", s.images());
      write_f32(dir + "/sample_energies_" + form + ".f32", s.energies());
    }
    // Smoothed starting noise (start_cell 7: cells that do not divide the image), 3 chains from 5.
    {
      ebm::LangevinSampler s(net, ebm::parse_sampler_params({{"start_cell", 7}}, net.sampler()),
                             42);
      s.start_uniform(3, 5);
      write_f32(dir + "/start_cell7.f32", s.images());
    }
    if (argc >= 4) {
      ebm::Network den = ebm::Network::from_file(argv[3]);
      std::vector<float> ed(static_cast<size_t>(n)), gd(x.size());
      den.energy_and_input_grad(x.data(), n, ed.data(), gd.data(), 0.3f);
      write_f32(dir + "/denoiser_energies.f32", ed);
      write_f32(dir + "/denoiser_grads.f32", gd);
      for (const char* form : {"annealed", "ddim"}) {
        const ebm::SamplerParams p = ebm::parse_sampler_params(
            {{"form", form}, {"steps", 6}, {"levels", 3}, {"eta", 0.5}}, den.sampler());
        ebm::LangevinSampler s(den, p, 42);
        s.start_uniform(4, 0);
        s.run();
        write_f32(dir + "/denoiser_sample_" + std::string(form) + ".f32", s.images());
      }
      meta["denoiser"] = true;
      if (argc >= 5) {
        const ebm::Network cls = ebm::Network::from_file(argv[4]);
        {
          ebm::LangevinSampler s(
              net, ebm::parse_sampler_params({{"form", "paper"}, {"steps", 10}}, net.sampler()), 42);
          s.set_guide(cls, ebm::parse_guide_target("cable_fan", cls.labels()), 3000.0f);
          s.start_uniform(4, 0);
          s.run();
          write_f32(dir + "/guided_paper.f32", s.images());
        }
        {
          const ebm::SamplerParams p = ebm::parse_sampler_params(
              {{"form", "ddim"}, {"steps", 6}, {"eta", 0.5}}, den.sampler());
          ebm::LangevinSampler s(den, p, 42);
          s.set_guide(cls, ebm::parse_guide_target("arch:0.5,cable:0.5", cls.labels()), 30000.0f,
                      80.0f, true);
          s.start_uniform(4, 0);
          s.run();
          write_f32(dir + "/guided_ddim.f32", s.images());
        }
        meta["guide"] = true;
      }
      if (argc == 6) {  // autoguidance: the file's own settings (w 2 up to sigma 5), 6 ddim levels
        const ebm::Network ag = ebm::Network::from_file(argv[5]);
        const ebm::SamplerParams p = ebm::parse_sampler_params({{"form", "ddim"}, {"steps", 6}}, ag.sampler());
        ebm::LangevinSampler s(ag, p, 42);
        s.start_uniform(4, 0);
        s.run();
        write_f32(dir + "/autoguided_sample.f32", s.images());
        meta["autoguided"] = true;
      }
    }
    std::ofstream(dir + "/reference.json") << meta.dump(2) << "\n";
    std::cout << "wrote reference numbers to " << dir << "\n";
    return 0;
  } catch (const std::exception& ex) {
    std::cerr << "wasm_reference: " << ex.what() << "\n";
    return 1;
  }
}
