#include "ebm/sampler_params.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <string>

#include "ebm/error.h"
#include "ebm/json_util.h"

namespace ebm {

using nlohmann::json;

const char* sampler_form_name(SamplerForm f) {
  switch (f) {
    case SamplerForm::kTextbook: return "textbook";
    case SamplerForm::kAnnealed: return "annealed";
    case SamplerForm::kDdim: return "ddim";
    case SamplerForm::kPaper: break;
  }
  return "paper";
}

SamplerForm parse_sampler_form(const std::string& name) {
  if (name == "paper") return SamplerForm::kPaper;
  if (name == "textbook") return SamplerForm::kTextbook;
  if (name == "annealed") return SamplerForm::kAnnealed;
  if (name == "ddim") return SamplerForm::kDdim;
  throw Error("unknown sampler form '" + name +
              "' (use \"paper\": noise, clipped gradient step, clip; \"textbook\": "
              "x - eps/2 dE/dx + sqrt(eps) N(0,1); \"annealed\": Langevin over falling noise "
              "levels; or \"ddim\": one denoising step per noise level; the last two for "
              "noise-conditional models)");
}

SamplerParams default_sampler_params(SamplerForm f) {
  SamplerParams p;
  p.form = f;
  if (f == SamplerForm::kAnnealed) {
    p.steps = 100;
    p.eps = 5e-5f;
  }
  if (f == SamplerForm::kDdim) p.steps = 50;
  return p;
}

namespace {
float bounded(const json& j, const char* key, double lo, double hi, bool lo_open) {
  const json& v = j[key];
  const double d = v.is_number() ? v.get<double>() : NAN;
  if (!std::isfinite(d) || d > hi || (lo_open ? d <= lo : d < lo))
    throw Error(std::string("sampler \"") + key + "\" must be a number in " + (lo_open ? "(" : "[") +
                std::to_string(lo) + ", " + std::to_string(hi) + "], got " + v.dump());
  return float(d);
}
// An integer setting in [lo, hi]; `lo_note` explains the lowest value in the message.
int bounded_int(const json& j, const char* key, int lo, int hi, const char* lo_note = "") {
  const json& v = j[key];
  if (!v.is_number_integer() || v.get<int64_t>() < lo || v.get<int64_t>() > hi)
    throw Error(std::string("sampler \"") + key + "\" must be an integer from " +
                std::to_string(lo) + lo_note + " to " + std::to_string(hi) + ", got " + v.dump());
  return int(v.get<int64_t>());
}
// The two-piece schedule only where it is on, as autoguidance below.
void add_split(const SamplerParams& p, json* j) {
  if (p.split_sigma == 0) return;
  (*j)["split_sigma"] = json_float(p.split_sigma);
  (*j)["split_levels"] = p.split_levels;
}
// Autoguidance only where it is on, so every other file's JSON stays as it was.
void add_autoguide(const SamplerParams& p, json* j) {
  if (p.autoguide == 1.0f) return;
  (*j)["autoguide"] = json_float(p.autoguide);
  if (p.autoguide_sigma_max != 0) (*j)["autoguide_sigma_max"] = json_float(p.autoguide_sigma_max);
}
}  // namespace

SamplerParams parse_sampler_params(const json& j, SamplerParams p) {
  if (j.is_null()) return p;
  if (!j.is_object()) throw Error("sampler settings must be a JSON object, got " + j.dump());
  // Every setting this parser reads, in the order the refusal lists them.
  static const char* const kKnown[] = {"form",
                                       "steps",
                                       "step_size",
                                       "noise",
                                       "grad_clip",
                                       "eps",
                                       "start_cell",
                                       "levels",
                                       "sigma_max",
                                       "sigma_min",
                                       "eta",
                                       "resample",
                                       "resample_sigma_max",
                                       "rho",
                                       "split_sigma",
                                       "split_levels",
                                       "autoguide",
                                       "autoguide_sigma_max"};
  for (const auto& [key, value] : j.items()) {
    (void)value;
    if (std::find(std::begin(kKnown), std::end(kKnown), key) != std::end(kKnown)) continue;
    std::string known;
    for (const char* k : kKnown) known += (known.empty() ? "" : ", ") + std::string(k);
    throw Error("unknown sampler setting \"" + key + "\" (known: " + known + ")");
  }
  if (j.contains("form")) {
    if (!j["form"].is_string()) throw Error("sampler \"form\" must be a string");
    const SamplerForm f = parse_sampler_form(j["form"].get<std::string>());
    // A change of form starts from that form's defaults (an annealed eps is not a paper one).
    if (f != p.form && (walks_noise_levels(f) || walks_noise_levels(p.form)))
      p = default_sampler_params(f);
    p.form = f;
  }
  if (j.contains("steps")) p.steps = bounded_int(j, "steps", 0, 1000000);
  if (j.contains("start_cell"))
    p.start_cell = bounded_int(j, "start_cell", 1, 4096, " (every pixel its own noise)");
  if (j.contains("step_size")) p.step_size = bounded(j, "step_size", 0, 1e6, true);
  if (j.contains("noise")) p.noise = bounded(j, "noise", 0, 10, false);
  if (j.contains("grad_clip")) p.grad_clip = bounded(j, "grad_clip", 0, 1e6, true);
  if (j.contains("eps")) p.eps = bounded(j, "eps", 0, 10, true);
  if (j.contains("levels")) p.levels = bounded_int(j, "levels", 1, 10000);
  if (j.contains("sigma_max")) p.sigma_max = bounded(j, "sigma_max", 0, 1e4, true);
  if (j.contains("sigma_min")) p.sigma_min = bounded(j, "sigma_min", 0, 1e4, true);
  if (j.contains("eta")) p.eta = bounded(j, "eta", 0, 1, false);
  if (j.contains("resample")) p.resample = bounded_int(j, "resample", 1, 100, " (no resampling)");
  if (j.contains("resample_sigma_max"))
    p.resample_sigma_max = bounded(j, "resample_sigma_max", 0, 1e4, false);
  if (j.contains("rho")) {
    p.rho = bounded(j, "rho", 0, 100, false);
    if (p.rho != 0 && p.rho < 1)
      throw Error("sampler \"rho\" must be 0 (noise levels geometric) or from 1 to 100 (evenly "
                  "spaced in sigma^(1/rho)), got " + j["rho"].dump());
  }
  if (j.contains("split_sigma")) p.split_sigma = bounded(j, "split_sigma", 0, 1e4, false);
  if (j.contains("split_levels")) p.split_levels = bounded_int(j, "split_levels", 0, 10000);
  if (j.contains("autoguide")) p.autoguide = bounded(j, "autoguide", 0, 20, false);
  if (j.contains("autoguide_sigma_max"))
    p.autoguide_sigma_max = bounded(j, "autoguide_sigma_max", 0, 1e4, false);
  if (p.sigma_min > p.sigma_max)
    throw Error("sampler \"sigma_min\" (" + std::to_string(p.sigma_min) +
                ") must not exceed \"sigma_max\" (" + std::to_string(p.sigma_max) + ")");
  check_split(p);
  return p;
}

void check_split(const SamplerParams& p) {
  if (p.split_sigma == 0 || !walks_noise_levels(p.form)) return;
  const auto num = [](float v) { return json(json_float(v)).dump(); };
  if (!(p.split_sigma > p.sigma_min && p.split_sigma < p.sigma_max))
    throw Error("sampler \"split_sigma\" (" + num(p.split_sigma) +
                ") must lie strictly between \"sigma_min\" (" + num(p.sigma_min) +
                ") and \"sigma_max\" (" + num(p.sigma_max) + "), or be 0 for one even schedule");
  const int levels = level_count(p);
  if (p.split_levels < 1 || levels - p.split_levels < 2)
    throw Error("sampler \"split_levels\" (" + std::to_string(p.split_levels) +
                ") must be at least 1 and leave at least 2 of the " + std::to_string(levels) +
                " levels (" + (p.form == SamplerForm::kDdim ? "steps" : "levels") +
                ") for split_sigma and below: use 1 to " + std::to_string(std::max(levels - 2, 1)) +
                ", or more levels");
}

json sampler_params_json(const SamplerParams& p) {
  // The annealed form's own settings only where they apply, so the other forms' JSON (in every
  // format-1 file and listing) stays as it was.
  // A spacing other than geometric is written only when set, for the same reason.
  if (p.form == SamplerForm::kAnnealed) {
    json j = {{"form", sampler_form_name(p.form)}, {"steps", p.steps},
              {"eps", json_float(p.eps)},          {"levels", p.levels},
              {"sigma_max", json_float(p.sigma_max)}, {"sigma_min", json_float(p.sigma_min)}};
    if (p.rho != 0) j["rho"] = json_float(p.rho);
    add_split(p, &j);
    add_autoguide(p, &j);
    return j;
  }
  if (p.form == SamplerForm::kDdim) {
    json j = {{"form", sampler_form_name(p.form)},    {"steps", p.steps},
              {"sigma_max", json_float(p.sigma_max)}, {"sigma_min", json_float(p.sigma_min)},
              {"eta", json_float(p.eta)}};
    if (p.resample != 1) j["resample"] = p.resample;
    if (p.resample != 1 && p.resample_sigma_max != 0)
      j["resample_sigma_max"] = json_float(p.resample_sigma_max);
    if (p.rho != 0) j["rho"] = json_float(p.rho);
    add_split(p, &j);
    add_autoguide(p, &j);
    return j;
  }
  return {{"form", sampler_form_name(p.form)},
          {"steps", p.steps},
          {"step_size", json_float(p.step_size)},
          {"noise", json_float(p.noise)},
          {"grad_clip", json_float(p.grad_clip)},
          {"eps", json_float(p.eps)},
          {"start_cell", p.start_cell}};
}

}  // namespace ebm
