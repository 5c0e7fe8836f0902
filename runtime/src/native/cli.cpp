#include "ebm/cli.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <ctime>
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <unistd.h>

namespace ebm {

namespace {

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string format_number(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

}  // namespace

ArgParser::ArgParser(std::string program, std::string summary)
    : program_(std::move(program)), summary_(std::move(summary)) {}

ArgParser::Opt& ArgParser::add(const std::string& name) {
  opts_.push_back(Opt{});
  opts_.back().name = name;
  return opts_.back();
}

void ArgParser::flag(const std::string& name, const std::string& help, bool* out) {
  Opt& o = add(name);
  o.help = help;
  o.is_flag = true;
  o.set = [out](const std::string&) {
    *out = true;
    return std::string();
  };
}

void ArgParser::option(const std::string& name, const std::string& metavar,
                       const std::string& help, std::string* out, bool required) {
  Opt& o = add(name);
  o.metavar = metavar;
  o.help = help;
  o.required = required;
  o.default_text = out->empty() ? "" : *out;
  o.set = [out](const std::string& v) {
    *out = v;
    return std::string();
  };
}

void ArgParser::option(const std::string& name, const std::string& metavar,
                       const std::string& help, int* out, int min, int max) {
  Opt& o = add(name);
  o.metavar = metavar;
  o.help = help;
  o.default_text = std::to_string(*out);
  o.set = [out, min, max](const std::string& v) {
    char* end = nullptr;
    errno = 0;
    const long long x = std::strtoll(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || errno != 0 || x < min || x > max)
      return "expected an integer from " + std::to_string(min) + " to " + std::to_string(max) +
             ", got '" + v + "'";
    *out = int(x);
    return std::string();
  };
}

void ArgParser::option(const std::string& name, const std::string& metavar,
                       const std::string& help, double* out, double min, double max) {
  Opt& o = add(name);
  o.metavar = metavar;
  o.help = help;
  o.default_text = format_number(*out);
  o.set = [out, min, max](const std::string& v) {
    char* end = nullptr;
    const double x = std::strtod(v.c_str(), &end);
    if (v.empty() || *end != '\0' || !std::isfinite(x) || x < min || x > max)
      return "expected a number from " + format_number(min) + " to " + format_number(max) +
             ", got '" + v + "'";
    *out = x;
    return std::string();
  };
}

void ArgParser::option(const std::string& name, const std::string& metavar,
                       const std::string& help, uint64_t* out) {
  Opt& o = add(name);
  o.metavar = metavar;
  o.help = help;
  o.default_text = std::to_string(*out);
  o.set = [out](const std::string& v) {
    char* end = nullptr;
    errno = 0;
    const unsigned long long x = std::strtoull(v.c_str(), &end, 10);
    if (v.empty() || v[0] == '-' || *end != '\0' || errno != 0)
      return "expected a non-negative integer, got '" + v + "'";
    *out = uint64_t(x);
    return std::string();
  };
}

void ArgParser::example(const std::string& line) { examples_.push_back(line); }
void ArgParser::epilog(const std::string& text) { epilog_ = text; }

std::string ArgParser::help() const {
  std::ostringstream s;
  s << "Usage: " << program_ << " [options]\n\n" << summary_ << "\n\nOptions:\n";
  std::vector<std::string> heads;
  size_t width = 0;
  for (const Opt& o : opts_) {
    heads.push_back("  --" + o.name + (o.metavar.empty() ? "" : " " + o.metavar));
    width = std::max(width, heads.back().size());
  }
  const std::string help_head = "  -h, --help";
  width = std::min<size_t>(std::max(width, help_head.size()) + 2, 34);
  for (size_t i = 0; i < opts_.size(); ++i) {
    const Opt& o = opts_[i];
    s << heads[i];
    if (heads[i].size() + 2 > width)
      s << "\n" << std::string(width, ' ');
    else
      s << std::string(width - heads[i].size(), ' ');
    s << o.help;
    if (o.required)
      s << " (required)";
    else if (!o.is_flag && !o.default_text.empty() &&
             o.help.find("(default:") == std::string::npos)  // the help says it in words
      s << " (default: " << o.default_text << ")";
    s << "\n";
  }
  s << help_head << std::string(width - help_head.size(), ' ') << "show this help and exit\n";
  if (!examples_.empty()) {
    s << "\nExamples:\n";
    for (const std::string& e : examples_) s << "  " << e << "\n";
  }
  if (!epilog_.empty()) s << "\n" << epilog_ << "\n";
  return s.str();
}

void ArgParser::fail(const std::string& message) const {
  std::cerr << program_ << ": " << message << "\nRun '" << program_ << " --help' for usage.\n";
  std::exit(2);
}

void ArgParser::parse(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::cout << help();
      std::exit(0);
    }
    if (arg.rfind("--", 0) != 0) fail("unexpected argument '" + arg + "' (options start with --)");
    std::string name = arg.substr(2), value;
    bool inline_value = false;
    if (const size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      inline_value = true;
    }
    auto it = std::find_if(opts_.begin(), opts_.end(), [&](const Opt& o) { return o.name == name; });
    if (it == opts_.end()) {
      std::string best;
      size_t best_d = 3;
      for (const Opt& o : opts_)
        if (const size_t d = edit_distance(name, o.name); d < best_d) {
          best_d = d;
          best = o.name;
        }
      fail("unknown option '--" + name + "'" + (best.empty() ? "" : " (did you mean --" + best + "?)"));
    }
    if (it->is_flag) {
      if (inline_value) fail("--" + name + " takes no value");
    } else if (!inline_value) {
      if (i + 1 >= argc) fail("--" + name + " needs a value (" + it->metavar + ")");
      value = argv[++i];
    }
    if (it->seen) fail("--" + name + " is given twice");
    it->seen = true;
    if (const std::string err = it->set(value); !err.empty()) fail("--" + name + ": " + err);
  }
  for (const Opt& o : opts_)
    if (o.required && !o.seen) fail("missing --" + o.name + " " + o.metavar);
}

bool ArgParser::given(const std::string& name) const {
  for (const Opt& o : opts_)
    if (o.name == name) return o.seen;
  return false;
}

int run_main(const char* program, const std::function<int()>& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    std::cerr << program << ": error: " << e.what() << "\n";
    return 1;
  }
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  char buf[32];
  if (seconds < 10) {
    std::snprintf(buf, sizeof buf, "%.1fs", seconds);
    return buf;
  }
  const long s = std::lround(seconds);
  if (s < 3600)
    std::snprintf(buf, sizeof buf, "%ld:%02ld", s / 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  return buf;
}

std::string time_now(const char* format, bool utc) {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  if (utc)
    gmtime_r(&t, &tm);
  else
    localtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, format, &tm);
  return buf;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string part; std::getline(in, part, sep);) out.push_back(part);
  return out;
}

ProgressBar::ProgressBar(std::string label, int64_t total, std::string unit)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_(std::max<int64_t>(total, 1)),
      tty_(::isatty(2) != 0),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_ - std::chrono::seconds(1)) {}

void ProgressBar::update(int64_t done, const std::string& suffix) {
  const auto now = std::chrono::steady_clock::now();
  if (tty_) {
    if (now - last_draw_ < std::chrono::milliseconds(100) && done < total_) return;
  } else {
    const int decile = int(std::min<int64_t>(done * 10 / total_, 10));
    if (decile == last_decile_) return;
    last_decile_ = decile;
  }
  last_draw_ = now;
  draw(done, suffix, false);
}

void ProgressBar::finish(const std::string& suffix) { draw(total_, suffix, true); }

void ProgressBar::draw(int64_t done, const std::string& suffix, bool final) {
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double frac = std::clamp(double(done) / double(total_), 0.0, 1.0);
  const double rate = elapsed > 0 ? double(done) / elapsed : 0.0;
  constexpr int kWidth = 24;
  const int filled = int(frac * kWidth);
  std::string bar = std::string(size_t(filled), '#') + std::string(size_t(kWidth - filled), '.');
  char head[160];
  std::snprintf(head, sizeof head, "%s [%s] %3d%% %lld/%lld %.1f %s/s", label_.c_str(),
                bar.c_str(), int(frac * 100), static_cast<long long>(done),
                static_cast<long long>(total_), rate, unit_.c_str());
  std::string line = head;
  if (final)
    line += " in " + format_duration(elapsed);
  else if (rate > 0)
    line += " ETA " + format_duration(double(total_ - done) / rate);
  if (!suffix.empty()) line += "  " + suffix;
  if (tty_)
    std::fprintf(stderr, "\r\033[K%s%s", line.c_str(), final ? "\n" : "");
  else
    std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);
}

}  // namespace ebm
