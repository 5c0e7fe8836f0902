// The sampler flags every native program shares (ebm-sample, ebm-eval): each one overrides one
// setting of the model's ebm.sampler, with the same name, range and help everywhere.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ebm/cli.h"

namespace ebm {

class SamplerFlags {
 public:
  SamplerFlags() = default;
  SamplerFlags(const SamplerFlags&) = delete;  // the flags point at this object's fields
  SamplerFlags& operator=(const SamplerFlags&) = delete;

  // Adds --steps, --form, --step-size, --noise, --grad-clip, --eps, --levels, --sigma-max,
  // --sigma-min, --eta, --rho, --split-sigma, --split-levels, --resample, --resample-sigma-max,
  // --autoguide, --autoguide-sigma-max and --start-cell to `args`.
  void add_to(ArgParser& args);
  // The settings the user gave, as ebm.sampler JSON keys (for parse_sampler_params over the
  // model's own settings, which validates them).
  nlohmann::json overrides(const ArgParser& args) const;

 private:
  // One flag: ArgParser writes its value into a field here; `value` reads it back as JSON.
  template <class T, class... Bounds>
  void add(ArgParser& args, const char* flag, const char* metavar, const char* help, T* out,
           Bounds... bounds);
  struct Flag {
    std::string name;
    std::function<nlohmann::json()> value;
  };
  std::vector<Flag> flags_;

  std::string form_;
  int steps_ = -1, start_cell_ = 0, levels_ = 0, resample_ = 0, split_levels_ = 0;
  double step_size_ = -1, noise_ = -1, grad_clip_ = -1, eps_ = -1, sigma_max_ = -1,
         sigma_min_ = -1, eta_ = -1, rho_ = -1, autoguide_ = -1, autoguide_sigma_max_ = -1,
         resample_sigma_max_ = -1,
         split_sigma_ = -1;
};

}  // namespace ebm
