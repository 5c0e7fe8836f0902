// The runtime's JavaScript API (embind), built only under Emscripten. Bytes and images live in the
// wasm heap: JavaScript copies a model file into memory it got from _malloc and passes the
// address, so the module needs no filesystem. No call throws into JavaScript: each one that can
// fail returns an error message ("" on success), because a C++ exception reaching JavaScript
// carries no readable message.
//
//   const m = new Module.Model(ptr, size);      m.error() -> "" or why the file was refused
//   m.describe()                                 -> JSON text: kind, input, sampler, card, ...
//   m.energy(xPtr, n, ePtr)                      -> ""; x: [n, C, H, W] floats, e: [n]
//   m.energyAndGrad(xPtr, n, ePtr, gPtr)         -> ""; g: dE/dx, same shape as x
//   m.energyAt(xPtr, n, ePtr, sigma), m.energyAndGradAt(xPtr, n, ePtr, gPtr, sigma): the same at
//                                                   a noise level (noise-conditional models)
//   const s = new Module.Sampler(m, '{"steps":60}', seed);   s.error()
//   s.startUniform(count, firstChain) / s.startFrom(ptr, count, firstChain) (the chains' states as
//       given: under the noise-level forms, states of the first level; drawings: startVariation)
//   s.startBlend(aPtr, bPtr, tPtr, count, firstChain, strength) -> ""; the noise-level forms
//       restart each blend part way (strength: the share of the walk redone, as startVariation)
//   s.setGuide(classifier, target, scale, sigmaGuide, onDenoised) -> ""; guided sampling (below)
//   s.clearGuide(), s.guided()
//   s.run(every, callback, maxSteps) -> steps done (-1: see s.error()); the loop runs in wasm and
//       calls callback(step, total, images, energies, sigma, level, levels, denoised) before the
//       first step, every `every` steps and after the last (denoised: the noise-level forms'
//       denoised estimates once a step is done, else null; SamplerProgress); images, energies and
//       denoised are Float32Array views into the heap, valid only
//       during the call; returning false stops.
//   s.requestStop(), s.stepsDone(), s.finished(), s.count()
//   Module.fillNormals(seed, stream, n, outPtr): the sampler's noise (Pcg32), for tests.
//   Module.setGemmDepthSteps(n) -> "": the GEMM's depth loop, 0 the default (two steps an
//       iteration in a browser, one in node), 1 or 2 (ebm/kernels.h; the same bits), for tests
//       and benchmarks.
#include <emscripten/bind.h>
#include <emscripten/val.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ebm/error.h"
#include "ebm/kernels.h"
#include "ebm/metrics.h"
#include "ebm/model.h"
#include "ebm/network.h"
#include "ebm/rng.h"
#include "ebm/sampler.h"

namespace {

using emscripten::val;

// JavaScript numbers carry integers exactly up to 2^53; seeds and chain indices must fit.
bool to_index(double v, uint64_t* out, std::string* error, const char* what) {
  if (!(v >= 0 && v <= 9007199254740991.0) || std::floor(v) != v) {
    *error = std::string(what) + " must be an integer from 0 to 2^53 - 1";
    return false;
  }
  *out = uint64_t(v);
  return true;
}

template <typename F>
std::string guarded(F&& body) {
  try {
    body();
    return "";
  } catch (const std::exception& e) {
    return e.what();
  }
}

class WasmModel {
 public:
  WasmModel(uintptr_t bytes, size_t size) {
    error_ = guarded([&] {
      const ebm::Model model = ebm::parse_model(reinterpret_cast<const uint8_t*>(bytes), size);
      description_ = model.describe();
      description_["input_size"] = model.image_shape().size();
      net_ = std::make_unique<ebm::Network>(model);
    });
  }

  std::string error() const { return error_; }
  std::string describe() const { return description_.dump(); }
  int input_size() const { return net_ ? int(net_->input_size()) : 0; }

  std::string energy(uintptr_t x, int n, uintptr_t e) { return energy_at(x, n, e, 0.0f); }
  std::string energy_and_grad(uintptr_t x, int n, uintptr_t e, uintptr_t g) {
    return energy_and_grad_at(x, n, e, g, 0.0f);
  }
  // At noise level sigma (noise-conditional models need it; the others ignore it).
  std::string energy_at(uintptr_t x, int n, uintptr_t e, float sigma) {
    return guarded([&] {
      check_batch(n);
      network().energy(reinterpret_cast<const float*>(x), n, reinterpret_cast<float*>(e), sigma);
    });
  }
  std::string energy_and_grad_at(uintptr_t x, int n, uintptr_t e, uintptr_t g, float sigma) {
    return guarded([&] {
      check_batch(n);
      network().energy_and_input_grad(reinterpret_cast<const float*>(x), n,
                                      reinterpret_cast<float*>(e), reinterpret_cast<float*>(g),
                                      sigma);
    });
  }

  // Classifier models: for each of n images, the subtype and family probabilities (the runtime's
  // family_mix, as ebm-eval computes them), whether two families each carry >= 0.25, and the
  // image's sharpness (mean |x|). Returns a JSON array, or {"error": ...}.
  std::string classify(uintptr_t x, int n) {
    nlohmann::json out = nlohmann::json::array();
    const std::string err = guarded([&] {
      if (n < 1) throw ebm::Error("batch size must be at least 1, got " + std::to_string(n));
      ebm::Network& net = network();
      if (net.kind() != ebm::ModelKind::kClassifier)
        throw ebm::Error("classify needs a classifier; this is an energy model");
      const float* images = reinterpret_cast<const float*>(x);
      const int k = net.outputs();
      std::vector<float> logits(size_t(n) * size_t(k));
      net.logits(images, n, logits.data());
      const std::vector<double> sharp = ebm::sharpness(images, n, net.input_size());
      for (int i = 0; i < n; ++i) {
        const ebm::FamilyMix m =
            ebm::family_mix(logits.data() + size_t(i) * size_t(k), net.labels());
        out.push_back({{"top", net.labels()[size_t(m.top_subtype)]},
                       {"top_prob", m.subtype_probs[size_t(m.top_subtype)]},
                       {"mix", m.describe()},
                       {"families", m.families},
                       {"family_probs", m.family_probs},
                       {"hybrid", m.mixes(0.25)},
                       {"sharpness", sharp[size_t(i)]}});
      }
    });
    if (!err.empty()) return nlohmann::json{{"error", err}}.dump();
    return out.dump();
  }

  ebm::Network& network() {
    if (!net_) throw ebm::Error("the model did not load: " + error_);
    return *net_;
  }

 private:
  void check_batch(int n) {
    if (n < 1) throw ebm::Error("batch size must be at least 1, got " + std::to_string(n));
    if (network().kind() != ebm::ModelKind::kEnergy)
      throw ebm::Error("energies need an energy model; this model is a classifier");
  }

  std::string error_;
  nlohmann::json description_;
  std::unique_ptr<ebm::Network> net_;
};

class WasmSampler {
 public:
  // params_json: settings over the model's own defaults, e.g. {"steps":200,"noise":0.01}.
  WasmSampler(WasmModel& model, const std::string& params_json, double seed) {
    error_ = guarded([&] {
      ebm::Network& net = model.network();
      uint64_t s = 0;
      std::string why;
      if (!to_index(seed, &s, &why, "seed")) throw ebm::Error(why);
      const nlohmann::json overrides =
          params_json.empty() ? nlohmann::json(nullptr) : nlohmann::json::parse(params_json);
      const ebm::SamplerParams p = ebm::parse_sampler_params(overrides, net.sampler());
      sampler_ = std::make_unique<ebm::LangevinSampler>(net, p, s);
      model_input_size_ = net.input_size();
    });
  }

  std::string error() const { return error_; }

  std::string start_uniform(int count, double first_chain) {
    return start(first_chain, [&](uint64_t first) { sampler().start_uniform(count, first); });
  }

  std::string start_from(uintptr_t images, int count, double first_chain) {
    return start(first_chain, [&](uint64_t first) {
      sampler().start_from(reinterpret_cast<const float*>(images), count, first);
    });
  }

  // Chain i starts at (1 - t[i]) * a + t[i] * b; t: `count` floats at t_ptr. Under the
  // noise-level forms each blend is restarted part way (LangevinSampler::start_blend).
  std::string start_blend(uintptr_t a, uintptr_t b, uintptr_t t_ptr, int count,
                          double first_chain, float strength) {
    return start(first_chain, [&](uint64_t first) {
      if (count < 1) throw ebm::Error("blend needs at least one chain");
      const float* t = reinterpret_cast<const float*>(t_ptr);
      sampler().start_blend(reinterpret_cast<const float*>(a), reinterpret_cast<const float*>(b),
                            std::vector<float>(t, t + count), first, strength);
    });
  }

  // Variations of one image (input_size floats at image): every chain restarts from it part way
  // down the walk; strength in [0, 1] is the share of the walk redone.
  std::string start_variation(uintptr_t image, int count, float strength, double first_chain) {
    return start(first_chain, [&](uint64_t first) {
      if (count < 1) throw ebm::Error("variations need at least one chain");
      const float* x = reinterpret_cast<const float*>(image);
      const size_t d = size_t(model_input_size_);
      std::vector<float> images;
      images.reserve(size_t(count) * d);
      for (int i = 0; i < count; ++i) images.insert(images.end(), x, x + d);
      sampler().start_variation(images.data(), count, strength, first);
    });
  }

  // Inpainting: from the next start on, the pixels where mask > 0.5 keep image's values (both
  // input_size floats); the chains complete the rest.
  std::string set_keep(uintptr_t image, uintptr_t mask) {
    error_ = guarded([&] {
      const float* x = reinterpret_cast<const float*>(image);
      const float* m = reinterpret_cast<const float*>(mask);
      const size_t d = size_t(model_input_size_);
      sampler().set_keep(std::vector<float>(x, x + d), std::vector<float>(m, m + d));
    });
    return error_;
  }

  // Guided sampling (LangevinSampler::set_guide): from now on every step follows the gradient of
  // E + scale w(sigma) CE(target, softmax(classifier(x))). target: a mix of the classifier's
  // families and/or subtypes ("arch:0.5,suspension:0.5", "cable_fan"; parse_guide_target), or a
  // JSON array of one weight >= 0 per label, normalised to sum to 1. The classifier must take the
  // model's images and stay alive (not deleted) as long as this sampler runs.
  std::string set_guide(WasmModel& classifier, const std::string& target, float scale,
                        float sigma_guide, bool on_denoised) {
    error_ = guarded([&] {
      const ebm::Network& c = classifier.network();
      if (c.kind() != ebm::ModelKind::kClassifier)
        throw ebm::Error("the guide must be a classifier; this model is an energy model");
      std::vector<float> t;
      if (!target.empty() && target.front() == '[')
        t = parse_weights(target, c.labels());
      else
        t = ebm::parse_guide_target(target, c.labels());
      sampler().set_guide(c, std::move(t), scale, sigma_guide, on_denoised);
    });
    return error_;
  }

  void clear_guide() {
    if (sampler_) sampler_->clear_guide();
  }
  bool guided() const { return sampler_ && sampler_->guided(); }

  int run(int every, val callback, int max_steps) {
    int done = -1;
    error_ = guarded([&] {
      ebm::LangevinSampler& s = sampler();
      if (s.count() == 0) throw ebm::Error("the sampler has no chains; call a start method first");
      const size_t d = size_t(s.images().size() / size_t(s.count()));
      const bool has_callback = callback.typeOf().as<std::string>() == "function";
      ebm::LangevinSampler::Callback cb;
      if (has_callback)
        cb = [&](const ebm::SamplerProgress& p) {
          const val images = val(emscripten::typed_memory_view(size_t(p.count) * d, p.images));
          const val energies = val(emscripten::typed_memory_view(size_t(p.count), p.energies));
          const val denoised =
              p.denoised ? val(emscripten::typed_memory_view(size_t(p.count) * d, p.denoised))
                         : val::null();
          const val answer =
              callback(p.step, p.total, images, energies, p.sigma, p.level, p.levels, denoised);
          return !(answer.isFalse());
        };
      done = s.run(every, cb, max_steps);
    });
    return error_.empty() ? done : -1;
  }

  void request_stop() {
    if (sampler_) sampler_->request_stop();
  }
  int steps_done() const { return sampler_ ? sampler_->steps_done() : 0; }
  int total_steps() const { return sampler_ ? sampler_->params().steps : 0; }
  bool finished() const { return sampler_ && sampler_->finished(); }
  int count() const { return sampler_ ? sampler_->count() : 0; }
  std::string params() const {
    return sampler_ ? ebm::sampler_params_json(sampler_->params()).dump() : "{}";
  }

 private:
  ebm::LangevinSampler& sampler() {
    if (!sampler_) throw ebm::Error("the sampler was not created: " + error_);
    return *sampler_;
  }

  // A JSON array of one weight per label, normalised to sum to 1.
  static std::vector<float> parse_weights(const std::string& text,
                                          const std::vector<std::string>& labels) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(text);
    } catch (const std::exception& e) {
      throw ebm::Error("guide weights '" + text + "' are not a JSON array of numbers: " + e.what());
    }
    if (!j.is_array() || j.size() != labels.size())
      throw ebm::Error("guide weights '" + text + "': give one weight per label, " +
                       std::to_string(labels.size()) + " in all");
    double sum = 0;
    std::vector<double> w;
    for (size_t k = 0; k < j.size(); ++k) {
      if (!j[k].is_number() || !(j[k].get<double>() >= 0) || !std::isfinite(j[k].get<double>()))
        throw ebm::Error("guide weight for " + labels[k] + " must be a number >= 0, got " +
                         j[k].dump());
      w.push_back(j[k].get<double>());
      sum += w.back();
    }
    if (!(sum > 0)) throw ebm::Error("guide weights are all zero; give at least one label a weight > 0");
    std::vector<float> t(w.size());
    for (size_t k = 0; k < w.size(); ++k) t[k] = float(w[k] / sum);
    return t;
  }

  template <typename F>
  std::string start(double first_chain, F&& body) {
    error_ = guarded([&] {
      uint64_t first = 0;
      std::string why;
      if (!to_index(first_chain, &first, &why, "first chain")) throw ebm::Error(why);
      body(first);
    });
    return error_;
  }

  std::string error_;
  std::unique_ptr<ebm::LangevinSampler> sampler_;
  int64_t model_input_size_ = 0;
};

std::string fill_normals(double seed, double stream, int n, uintptr_t out) {
  return guarded([&] {
    uint64_t s = 0, t = 0;
    std::string why;
    if (!to_index(seed, &s, &why, "seed") || !to_index(stream, &t, &why, "stream"))
      throw ebm::Error(why);
    if (n < 0) throw ebm::Error("count must not be negative");
    ebm::Pcg32 rng(s, t);
    rng.fill_normal(reinterpret_cast<float*>(out), size_t(n));
  });
}

std::string set_gemm_depth_steps(int steps) {
  return guarded([&] {
    if (steps < 0 || steps > 2)
      throw ebm::Error("GEMM depth steps must be 0 (the default), 1 or 2, got " +
                       std::to_string(steps));
    ebm::set_gemm_depth_steps(static_cast<ebm::GemmDepthSteps>(steps));
  });
}

}  // namespace

EMSCRIPTEN_BINDINGS(ebm_runtime) {
  using emscripten::class_;
  using emscripten::constructor;
  emscripten::function("fillNormals", &fill_normals);
  emscripten::function("setGemmDepthSteps", &set_gemm_depth_steps);
  emscripten::function("multiplyAddProbe", &ebm::multiply_add_probe);
  emscripten::function("multiplyAddProbeFloats", &ebm::multiply_add_probe_floats);
  class_<WasmModel>("Model")
      .constructor<uintptr_t, size_t>()
      .function("error", &WasmModel::error)
      .function("describe", &WasmModel::describe)
      .function("inputSize", &WasmModel::input_size)
      .function("energy", &WasmModel::energy)
      .function("energyAndGrad", &WasmModel::energy_and_grad)
      .function("energyAt", &WasmModel::energy_at)
      .function("energyAndGradAt", &WasmModel::energy_and_grad_at)
      .function("classify", &WasmModel::classify);
  class_<WasmSampler>("Sampler")
      .constructor<WasmModel&, const std::string&, double>()
      .function("error", &WasmSampler::error)
      .function("startUniform", &WasmSampler::start_uniform)
      .function("startFrom", &WasmSampler::start_from)
      .function("startBlend", &WasmSampler::start_blend)
      .function("startVariation", &WasmSampler::start_variation)
      .function("setKeep", &WasmSampler::set_keep)
      .function("setGuide", &WasmSampler::set_guide)
      .function("clearGuide", &WasmSampler::clear_guide)
      .function("guided", &WasmSampler::guided)
      .function("run", &WasmSampler::run)
      .function("requestStop", &WasmSampler::request_stop)
      .function("stepsDone", &WasmSampler::steps_done)
      .function("totalSteps", &WasmSampler::total_steps)
      .function("finished", &WasmSampler::finished)
      .function("count", &WasmSampler::count)
      .function("params", &WasmSampler::params);
}
