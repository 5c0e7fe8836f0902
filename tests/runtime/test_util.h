// Helpers shared by the runtime tests: models from layer JSON, random inputs, file writing.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "../expect_error.h"
#include "../process_temp.h"
#include "ebm/architecture.h"
#include "ebm/model.h"
#include "ebm/rng.h"
#include "ebm/safetensors.h"

namespace ebm::test {

inline Architecture arch_of(Shape input, const nlohmann::json& layers) {
  return resolve_architecture(input, layers);
}

inline std::vector<float> random_inputs(size_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  Pcg32 rng(seed, 99);
  std::vector<float> v(n);
  for (float& x : v) x = lo + (hi - lo) * rng.uniform();
  return v;
}

inline std::vector<double> to_double(const std::vector<float>& v) {
  return std::vector<double>(v.begin(), v.end());
}

// E(x) = sum_i [swish(u_i) + swish(-u_i)] = sum_i u_i tanh(u_i / 2), u = a (x - t): a bowl whose
// only minimum (E = 0) is the image t (d = h * w pixels); quadratic (u^2 / 2) near it, growing
// like |u| far away. Built from the runtime's own layers: dense(+-a I, -+a t) -> swish ->
// dense(ones).
// Checks grad[k] against the central difference (f(x + h e_k, i) - f(x - h e_k, i)) / 2h, h = 1e-5,
// for every pixel k of images of d pixels (i = k / d, the image pixel k belongs to), to 2e-4
// relative; reports the first five mismatches prefixed by `what`. Returns the largest
// |finite difference|, for callers that check the gradient is not too flat to test anything.
inline double expect_central_differences(const std::vector<float>& grad, const std::vector<double>& x,
                                         size_t d,
                                         const std::function<double(const std::vector<double>&, int)>& f,
                                         const std::string& what = "dE/dx") {
  const double h = 1e-5;
  int shown = 0;
  double largest = 0;
  for (size_t k = 0; k < x.size(); ++k) {
    std::vector<double> xp = x, xm = x;
    xp[k] += h;
    xm[k] -= h;
    const int img = int(k / d);
    const double fd = (f(xp, img) - f(xm, img)) / (2 * h);
    largest = std::max(largest, std::abs(fd));
    if (std::abs(grad[k] - fd) > 2e-4 * std::max(1.0, std::abs(fd)) && shown++ < 5)
      ADD_FAILURE() << what << "[" << k << "] = " << grad[k] << ", finite difference " << fd;
  }
  return largest;
}

inline Model bowl_model(const std::vector<float>& t, int h, int w, float a) {
  const int d = h * w;
  const nlohmann::json layers = nlohmann::json::parse(
      R"([{"type":"flatten"},{"type":"dense","out_features":)" + std::to_string(2 * d) +
      R"(},{"type":"swish"},{"type":"dense","out_features":1,"bias":false}])");
  Model m = random_model(resolve_architecture({1, h, w}, layers), 1);
  for (Tensor& tensor : m.tensors) {
    std::fill(tensor.data.begin(), tensor.data.end(), 0.0f);
    if (tensor.name == "layers.1.weight")
      for (int i = 0; i < d; ++i) {
        tensor.data[size_t(i) * d + size_t(i)] = a;            // row i: +a x_i
        tensor.data[size_t(i + d) * d + size_t(i)] = -a;       // row d+i: -a x_i
      }
    if (tensor.name == "layers.1.bias")
      for (int i = 0; i < d; ++i) {
        tensor.data[size_t(i)] = -a * t[size_t(i)];
        tensor.data[size_t(i + d)] = a * t[size_t(i)];
      }
    if (tensor.name == "layers.3.weight") std::fill(tensor.data.begin(), tensor.data.end(), 1.0f);
  }
  return m;
}

// A path in this test process's own temp folder (see process_temp.h).
inline std::string temp_path(const std::string& name) {
  return (process_dir() / name).string();
}

// Serialises a header object plus raw data into a safetensors file image, for building broken
// files by hand: header_text is used verbatim, then padded (or not) as asked.
inline std::vector<uint8_t> raw_safetensors(const std::string& header_text,
                                            const std::vector<uint8_t>& data,
                                            uint64_t declared_length = UINT64_MAX) {
  const uint64_t n = declared_length == UINT64_MAX ? header_text.size() : declared_length;
  std::vector<uint8_t> out;
  for (int i = 0; i < 8; ++i) out.push_back(uint8_t(n >> (8 * i)));
  out.insert(out.end(), header_text.begin(), header_text.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

inline std::vector<uint8_t> f32_bytes(const std::vector<float>& v) {
  std::vector<uint8_t> out(v.size() * 4);
  std::memcpy(out.data(), v.data(), out.size());
  return out;
}

// A noise-conditional denoiser energy (architecture.h) with random weights around the given
// layers, which read the image plus a noise plane (image channels + 1) and output the image.
inline Model random_denoiser_model(Shape image, const nlohmann::json& layers, uint64_t seed,
                                   float sigma_data = 0.6f) {
  EnergyForm f;
  f.denoiser = true;
  f.sigma_data = sigma_data;
  Model m = random_model(resolve_architecture(layers_input(image, f), layers), seed);
  m.energy = f;
  Tensor mean;
  mean.name = kEnergyMeanTensor;
  mean.shape = {image.c, image.h, image.w};
  mean.data = random_inputs(size_t(image.size()), seed + 7);
  m.tensors.insert(m.tensors.begin(), std::move(mean));
  return m;
}

}  // namespace ebm::test
