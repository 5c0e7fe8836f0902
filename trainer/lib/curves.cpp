#include "curves.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "ebm/error.h"

namespace ebm::train {

namespace {

constexpr Rgb kWhite{255, 255, 255}, kAxis{60, 60, 60}, kGrid{225, 225, 225}, kText{20, 20, 20};
constexpr Rgb kBlue{31, 119, 180}, kOrange{230, 110, 20}, kGreen{44, 160, 44}, kRed{214, 39, 40},
    kPurple{148, 103, 189}, kGray{110, 110, 110};

Rgb faint(Rgb c) {
  auto f = [](uint8_t v) { return uint8_t(v + (255 - v) * 0.7); };
  return {f(c.r), f(c.g), f(c.b)};
}

// Centred moving average over about 1/40 of the series (no lag, unlike an exponential one),
// skipping non-finite values.
std::vector<double> smooth(const std::vector<double>& y) {
  const long n = long(y.size()), half = std::max(0L, n / 80);
  std::vector<double> out(y.size(), NAN);
  for (long i = 0; i < n; ++i) {
    double sum = 0;
    int count = 0;
    for (long k = std::max(0L, i - half); k <= std::min(n - 1, i + half); ++k)
      if (std::isfinite(y[size_t(k)])) {
        sum += y[size_t(k)];
        ++count;
      }
    if (count > 0) out[size_t(i)] = sum / count;
  }
  return out;
}

double nice_step(double range, int target) {
  const double raw = range / std::max(target, 1);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * mag >= raw) return m * mag;
  return 10 * mag;
}

std::string tick_label(double v, double step) {
  char buf[32];
  if (std::abs(v) < step * 1e-6) v = 0;
  const double a = std::max(std::abs(v), step);
  if (a >= 1e5 || a < 1e-3) {
    // Enough digits that neighbouring ticks differ: the step's exponent relative to the value's.
    const int digits =
        std::clamp(int(std::floor(std::log10(a)) - std::floor(std::log10(step))), 1, 6);
    std::snprintf(buf, sizeof buf, "%.*e", digits, v);
  } else {
    std::snprintf(buf, sizeof buf, "%.*f", std::max(0, int(-std::floor(std::log10(step)))), v);
  }
  return buf;
}

// Value range of the finite values between the 1st and 99th percentiles (one wild step does not
// flatten every other), widened by 8% so lines do not touch the frame.
bool value_range(const std::vector<Series>& ss, double* lo, double* hi) {
  std::vector<double> v;
  for (const Series& s : ss)
    for (double y : s.y)
      if (std::isfinite(y)) v.push_back(y);
  if (v.empty()) return false;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  *lo = v[n / 100];
  *hi = v[n - 1 - n / 100];
  if (*hi - *lo < 1e-12 * std::max(1.0, std::abs(*hi))) {
    const double pad = std::max(std::abs(*hi) * 0.1, 1e-6);
    *lo -= pad;
    *hi += pad;
  }
  const double pad = 0.08 * (*hi - *lo);
  *lo -= pad;
  *hi += pad;
  return true;
}

void draw_panel(Canvas& cv, const Panel& p, int ox, int oy, int w, int h) {
  double xmin = INFINITY, xmax = -INFINITY;
  for (const Series& s : p.series)
    for (double x : s.x) {
      xmin = std::min(xmin, x);
      xmax = std::max(xmax, x);
    }
  double ylo = 0, yhi = 1;
  const bool has_data = std::isfinite(xmin) && value_range(p.series, &ylo, &yhi);

  // Tick labels first: the left margin is as wide as the widest.
  const double ys = nice_step(yhi - ylo, 5);
  std::vector<std::pair<double, std::string>> yticks;
  if (has_data)
    for (double t = std::ceil(ylo / ys) * ys; t <= yhi; t += ys)
      yticks.emplace_back(t, tick_label(t, ys));
  int label_w = Canvas::text_width("0.0", 2);
  for (const auto& t : yticks) label_w = std::max(label_w, Canvas::text_width(t.second, 2));
  const int left = label_w + 20, right = 16, top = 34, bottom = 44;
  const int px0 = ox + left, px1 = ox + w - right, py0 = oy + top, py1 = oy + h - bottom;
  cv.text(ox + 12, oy + 8, p.title, kText, 2);
  cv.fill_rect(px0, py0, px1, py1, {250, 250, 250});
  if (!has_data) {
    cv.text(px0 + 10, (py0 + py1) / 2, "no data yet", kGray, 2);
    return;
  }
  if (xmax <= xmin) xmax = xmin + 1;
  xmax += 0.02 * (xmax - xmin);  // room for the last epoch's validation dot
  auto X = [&](double x) { return px0 + (x - xmin) / (xmax - xmin) * (px1 - px0); };
  auto Y = [&](double y) { return py1 - (y - ylo) / (yhi - ylo) * (py1 - py0); };

  for (const auto& [t, label] : yticks) {
    const double yy = py1 - (t - ylo) / (yhi - ylo) * (py1 - py0);
    cv.line(px0, yy, px1, yy, kGrid, 1.0);
    cv.text(px0 - 8 - Canvas::text_width(label, 2), int(yy) - 7, label, kText, 2);
  }
  const double xs = std::max(1.0, nice_step(xmax - xmin, 5));
  for (double t = std::ceil(xmin / xs) * xs; t <= xmax; t += xs) {
    const double xx = X(t);
    cv.line(xx, py0, xx, py1, kGrid, 1.0);
    const std::string label = tick_label(t, xs);
    cv.text(int(xx) - Canvas::text_width(label, 2) / 2, py1 + 6, label, kText, 2);
  }
  cv.text((px0 + px1) / 2 - Canvas::text_width("step", 2) / 2, py1 + 24, "step", kGray, 2);

  cv.clip(px0, py0, px1, py1);
  for (const Series& s : p.series) {
    const std::vector<double> ys_smooth = s.per_step ? smooth(s.y) : s.y;
    if (s.per_step)
      for (size_t i = 1; i < s.x.size(); ++i)
        cv.line(X(s.x[i - 1]), Y(s.y[i - 1]), X(s.x[i]), Y(s.y[i]), faint(s.color), 1.0);
    for (size_t i = 1; i < s.x.size(); ++i)
      cv.line(X(s.x[i - 1]), Y(ys_smooth[i - 1]), X(s.x[i]), Y(ys_smooth[i]), s.color, 2.2);
    if (!s.per_step)
      for (size_t i = 0; i < s.x.size(); ++i) {
        const double xx = X(s.x[i]), yy = Y(s.y[i]);
        cv.line(xx - 0.01, yy, xx + 0.01, yy, s.color, 7.0);
      }
  }
  cv.clip();
  // Frame and legend.
  cv.line(px0, py0, px0, py1, kAxis, 1.0);
  cv.line(px0, py1, px1, py1, kAxis, 1.0);
  int lx = px0 + 8;
  for (const Series& s : p.series) {
    if (s.x.empty()) continue;
    cv.fill_rect(lx, py0 + 8, lx + 18, py0 + 12, s.color);
    lx = cv.text(lx + 24, py0 + 3, s.label, kText, 2) + 16;
  }
}

Series series(const MetricsTable& t, const std::string& column, const std::string& label, Rgb c,
              bool per_step = true) {
  return {label, t.column("step"), t.column(column), c, per_step};
}

}  // namespace

Image draw_panels(const std::vector<Panel>& panels, int cols, int panel_w, int panel_h) {
  if (panels.empty()) throw Error("nothing to plot");
  const int rows = int(panels.size() + size_t(cols) - 1) / cols;
  Canvas cv(cols * panel_w, rows * panel_h, kWhite);
  for (size_t i = 0; i < panels.size(); ++i)
    draw_panel(cv, panels[i], int(i % size_t(cols)) * panel_w, int(i / size_t(cols)) * panel_h,
               panel_w, panel_h);
  return cv.image();
}

std::vector<Panel> run_panels(Task task, Objective objective, const MetricsTable& st,
                              const MetricsTable& val) {
  if (task == Task::kClassify)
    return {
        {"loss (cross-entropy)",
         {series(st, "loss", "train", kBlue), series(val, "loss", "validation", kOrange, false)}},
        {"accuracy",
         {series(st, "accuracy", "train", kBlue),
          series(val, "accuracy", "validation", kOrange, false)}},
        {"learning rate", {series(st, "lr", "lr", kGray)}},
        {"images per second", {series(st, "images_per_s", "train", kGreen)}}};
  if (objective == Objective::kDenoisingScoreMatching)
    return {{"loss (sigma^2 + floor^2)/sigma_data^2 |sigma dE/dx - z|^2",
             {series(st, "loss", "train", kBlue), series(val, "loss", "validation (EMA)", kOrange, false)}},
            {"learning rate", {series(st, "lr", "lr", kGray)}},
            {"images per second", {series(st, "images_per_s", "train", kGreen)}}};
  // With --kl-weight the loss has Du et al.'s KL term too, and its entropy estimate a panel.
  const bool kl = st.index("kl_entropy") >= 0;
  // Multi-grid: the loss sums the grids' own; each coarser grid's cdiv beside the full one's.
  const bool multigrid = objective == Objective::kMultigrid;
  std::vector<Series> cdiv = {
      series(st, "cdiv", multigrid ? "train, full size" : "train (buffer)", kBlue),
      series(val, "cdiv", "validation (noise)", kOrange, false)};
  const Rgb grid_colours[] = {kPurple, kGreen, kGray};
  int g = 0;
  for (const std::string& c : st.columns)
    if (c.rfind("cdiv_", 0) == 0)
      cdiv.push_back(series(st, c, "train, " + c.substr(5), grid_colours[g++ % 3]));
  std::vector<Panel> panels = {
      {kl          ? "loss = cdiv + reg + W (E(x_K) - mean log d_nn)"
       : multigrid ? "loss = sum over the grids of cdiv + reg"
                   : "loss = cdiv + reg",
       {series(st, "loss", "loss", kBlue)}},
      {"reg = alpha * mean(E_real^2 + E_fake^2)", {series(st, "reg", "reg", kPurple)}},
      {"cdiv = mean E(real) - mean E(fake)", cdiv},
      {"mean energy",
       {series(st, "real", "real", kGreen), series(st, "fake", "fake", kRed),
        series(val, "real", "val real", kBlue, false),
        series(val, "fake", "val noise", kOrange, false)}},
      {"learning rate", {series(st, "lr", "lr", kGray)}},
      {"Langevin image-steps per second", {series(st, "image_steps_per_s", "train", kGreen)}}};
  if (kl)
    panels.push_back({"KL term's entropy: mean log distance to the nearest buffer image",
                      {series(st, "kl_entropy", "log d_nn", kPurple)}});
  return panels;
}

void write_curves_png(const std::string& run_dir, Task task, Objective objective) {
  const MetricsTable st = read_metrics(run_dir + "/metrics.csv");
  const MetricsTable val = read_metrics(run_dir + "/validation.csv");
  write_png(run_dir + "/curves.png", draw_panels(run_panels(task, objective, st, val), 3));
}

}  // namespace ebm::train
