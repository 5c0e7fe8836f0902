// libFuzzer target: a model file from untrusted bytes. Whatever the bytes, parse_model either
// refuses them with ebm::Error or returns a model that builds into a Network and runs: energies,
// input gradients and (classifiers) logits for one image, all finite for a finite input, and the
// same for the weaker network a format-3 file carries. A
// Network refusing what the loader accepted, or any crash, is a finding.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "ebm/error.h"
#include "ebm/model.h"
#include "ebm/network.h"

namespace {
// Valid models the loader accepts may cost up to kMaxMultiplyAddsPerImage; running one that
// large would make a single input take seconds, so the fuzzer runs the smaller ones (still
// building the large ones into a Network).
constexpr int64_t kRunMultiplyAdds = 20'000'000;
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ebm::Model model;
  try {
    model = ebm::parse_model(data, size);
  } catch (const ebm::Error&) {
    return 0;  // refused with a message: the expected outcome for most inputs
  }
  ebm::Network net(model);  // no try: the loader's verdict must hold for Network too
  const int64_t weak_adds = model.autoguide ? model.autoguide->arch.multiply_adds() : 0;
  if (model.arch.multiply_adds() + weak_adds > kRunMultiplyAdds) return 0;
  const int64_t n = net.input_size();
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) x[size_t(i)] = float((i * 7919) % 200) / 100.0f - 1.0f;
  if (net.kind() == ebm::ModelKind::kEnergy) {
    const float sigma = net.noise_conditional() ? 0.1f : 0.0f;
    float e = 0;
    std::vector<float> grad(x.size());
    net.energy_and_input_grad(x.data(), 1, &e, grad.data(), sigma);
    // Finite weights and a finite input can still overflow to inf in F32; NaN from an overflow is
    // the model's problem, not memory safety, so only report it.
    if (!std::isfinite(e)) std::fprintf(stderr, "note: non-finite energy %g\n", double(e));
    // A format-3 file's weaker network (autoguidance) runs on the same image.
    if (const ebm::Network* weak = net.autoguide()) {
      ebm::Network::Workspace ws;
      weak->energy_and_input_grad(ws, x.data(), 1, &e, grad.data(), sigma);
    }
  } else {
    std::vector<float> out(size_t(net.outputs()));
    net.logits(x.data(), 1, out.data(), net.noise_conditional() ? 0.1f : 0.0f);
  }
  return 0;
}
