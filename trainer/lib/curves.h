// The training curves of a run (the paper's Fig. 4) as one PNG: a panel per quantity, every step
// drawn faintly with an exponential moving average over it, validation points per epoch.
#pragma once

#include <string>
#include <vector>

#include "config.h"
#include "metrics_csv.h"
#include "plot.h"

namespace ebm::train {

struct Series {
  std::string label;
  std::vector<double> x, y;
  Rgb color;
  bool per_step = true;  // faint raw line + moving average; false: points joined by a line
};

struct Panel {
  std::string title;
  std::vector<Series> series;
};

// Panels in a grid of `cols` columns, each panel_w x panel_h pixels, x axis "step".
Image draw_panels(const std::vector<Panel>& panels, int cols, int panel_w = 600, int panel_h = 340);

// The panels for a run's metrics.csv (per step) and validation.csv (per epoch):
//   energy:   loss, reg, cdiv (train and validation vs noise), energies (real, fake, validation
//             real and noise), learning rate, image-steps per second; with the KL term
//             (a kl_entropy column) its entropy estimate too;
//   classify: loss (train and validation), accuracy, learning rate, images per second.
std::vector<Panel> run_panels(Task task, Objective objective, const MetricsTable& steps,
                              const MetricsTable& val);

// Reads <run>/metrics.csv and <run>/validation.csv and writes <run>/curves.png (atomically).
void write_curves_png(const std::string& run_dir, Task task,
                      Objective objective = Objective::kContrastiveDivergence);

}  // namespace ebm::train
