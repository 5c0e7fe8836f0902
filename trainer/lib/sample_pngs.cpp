#include "sample_pngs.h"

#include <algorithm>
#include <cmath>

#include "ebm/error.h"
#include "ebm/network.h"
#include "ebm/sampler.h"
#include "plot.h"

namespace ebm::train {

int grid_columns(int n, const Shape& s) {
  // cols * w ~ rows * h with rows = n / cols  =>  cols ~ sqrt(n * h / w)
  const double c = std::sqrt(double(n) * s.h / std::max(s.w, 1));
  return std::clamp(int(std::lround(c)), 1, std::max(n, 1));
}

int grid_scale(const Shape& s) {
  return std::max(1, int(std::lround(std::sqrt(24000.0 / (double(s.h) * s.w)))));
}

Image captioned_grid(const float* images, int n, const Shape& s, int cols,
                     const std::string& caption, const std::vector<std::string>& tile_labels) {
  if (n < 1) throw Error("captioned_grid needs at least one image");
  cols = std::clamp(cols, 1, n);
  const int rows = (n + cols - 1) / cols;
  const int scale = grid_scale(s);
  const int tw = s.w * scale, th = s.h * scale, pad = 6;
  const int label_scale = tw >= 120 ? 2 : 1;
  const int label_h = tile_labels.empty() ? 0 : Canvas::text_height(label_scale) + 4;
  const int top = Canvas::text_height(2) + 12;
  const int width = std::max(pad + cols * (tw + pad), Canvas::text_width(caption, 2) + 2 * pad);
  Canvas cv(width, top + rows * (th + label_h + pad) + pad, {96, 96, 96});
  cv.text(pad, 6, caption, {255, 255, 255}, 2);
  for (int i = 0; i < n; ++i) {
    const int x = pad + (i % cols) * (tw + pad), y = top + (i / cols) * (th + label_h + pad);
    // Channel 0 only: the bridge data and every preset are gray.
    const Image tile = unit_to_image(images + size_t(i) * size_t(s.size()), s.w, s.h);
    cv.paste_gray(tile, x, y, scale);
    if (!tile_labels.empty() && size_t(i) < tile_labels.size())
      cv.text(x, y + th + 3, tile_labels[size_t(i)], {255, 255, 255}, label_scale);
  }
  return cv.image();
}

NoiseSamples sample_from_noise(const Model& model, const SamplerParams& params, int count,
                               uint64_t seed, int threads, int snapshots,
                               const std::atomic<bool>* stop) {
  const Network net(model);
  LangevinSampler sampler(net, params, seed, threads);
  sampler.start_uniform(count);
  NoiseSamples out;
  const size_t d = size_t(net.input_size());
  const int every = std::max(1, params.steps / std::max(snapshots, 1));
  sampler.run(every, [&](const SamplerProgress& p) {
    out.snapshot_steps.push_back(p.step);
    out.snapshots.emplace_back(p.images, p.images + d);
    return !(stop && stop->load());
  });
  out.images = sampler.images();
  out.energies = sampler.final_energies();
  return out;
}

}  // namespace ebm::train
