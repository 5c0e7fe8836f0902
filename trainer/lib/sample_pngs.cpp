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

namespace {
// Each pixel of x [n, c, h, w] repeated over an f x f block.
std::vector<float> upsample(const std::vector<float>& x, int n, const Shape& s, int f) {
  const int W = s.w * f, H = s.h * f;
  std::vector<float> out(size_t(n) * size_t(s.c) * size_t(H) * size_t(W));
  for (int64_t p = 0; p < int64_t(n) * s.c; ++p)
    for (int y = 0; y < H; ++y)
      for (int xx = 0; xx < W; ++xx)
        out[size_t((p * H + y) * W + xx)] = x[size_t((p * s.h + y / f) * s.w + xx / f)];
  return out;
}
}  // namespace

NoiseSamples sample_multigrid(const std::vector<const Network*>& grids,
                              const std::vector<SamplerParams>& params, int count, uint64_t seed,
                              int threads, int snapshots, const std::atomic<bool>* stop,
                              uint64_t first_chain,
                              const std::function<bool(int64_t, int64_t)>& progress) {
  if (grids.empty() || grids.size() != params.size())
    throw Error("multi-grid sampling needs one sampler setting per grid (" +
                std::to_string(grids.size()) + " grids, " + std::to_string(params.size()) +
                " settings)");
  std::vector<Shape> shapes;
  for (size_t k = 0; k < grids.size(); ++k) {
    shapes.push_back(grids[k]->input_shape());
    if (k > 0 && (shapes[k].c != shapes[k - 1].c || shapes[k].h != 2 * shapes[k - 1].h ||
                  shapes[k].w != 2 * shapes[k - 1].w))
      throw Error("multi-grid sampling: grid " + std::to_string(k) + " takes " + shapes[k].str() +
                  " images, not twice the " + shapes[k - 1].str() + " of grid " +
                  std::to_string(k - 1) + " before it (give the grids coarsest first)");
  }
  int64_t total = 0, done = 0;
  for (const SamplerParams& p : params) total += p.steps;
  total *= count;
  const int last = int(grids.size()) - 1;
  NoiseSamples out;
  out.walk = "coarse to fine over " + std::to_string(grids.size()) + " grids, ";
  bool same_steps = true;
  for (const SamplerParams& p : params) same_steps = same_steps && p.steps == params[0].steps;
  if (same_steps) {
    out.walk += std::to_string(params[0].steps) + " steps each";
  } else {
    for (size_t k = 0; k < params.size(); ++k)
      out.walk += (k ? ", " : "") + std::to_string(params[k].steps);
    out.walk += " steps";
  }
  std::vector<float> x;
  bool go_on = true;
  for (int k = 0; k <= last; ++k) {
    LangevinSampler sampler(*grids[size_t(k)], params[size_t(k)],
                            seed + uint64_t(k) * 0x9e3779b97f4a7c15ull, threads);
    if (k == 0) {
      sampler.start_uniform(count, first_chain);
    } else {
      x = upsample(x, count, shapes[size_t(k) - 1], 2);
      sampler.start_from(x.data(), count, first_chain);
    }
    const size_t d = size_t(shapes[size_t(k)].size());
    const int every = std::max(1, params[size_t(k)].steps / std::max(snapshots, 1));
    const int f = 1 << (last - k);
    if (go_on && !(stop && stop->load()))
      sampler.run(1, [&](const SamplerProgress& p) {
        if (p.step % every == 0 || p.step == p.total) {
          const std::vector<float> one(p.images, p.images + d);
          out.snapshot_steps.push_back(p.step);
          out.snapshots.push_back(f == 1 ? one : upsample(one, 1, shapes[size_t(k)], f));
          out.snapshot_names.push_back(std::to_string(shapes[size_t(k)].w) + "x" +
                                       std::to_string(shapes[size_t(k)].h) + ", step " +
                                       std::to_string(p.step));
        }
        if (p.step > 0) done += count;
        if (progress && !progress(done, total)) go_on = false;
        return go_on && !(stop && stop->load());
      });
    x = sampler.images();
    if (k == last) out.energies = sampler.final_energies();
  }
  out.images = std::move(x);
  return out;
}

}  // namespace ebm::train
