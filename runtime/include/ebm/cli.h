// Command-line parsing and progress display shared by every native program, so each one has the
// same --help, the same error style ("<program>: --steps: expected ...") and exit codes
// (0 ok, 1 failure, 2 bad usage).
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace ebm {

class ArgParser {
 public:
  ArgParser(std::string program, std::string summary);

  // Each option writes into `out` when given; the value there beforehand is the default shown in
  // --help. Names are given without the leading "--".
  void flag(const std::string& name, const std::string& help, bool* out);
  void option(const std::string& name, const std::string& metavar, const std::string& help,
              std::string* out, bool required = false);
  void option(const std::string& name, const std::string& metavar, const std::string& help,
              int* out, int min, int max);
  void option(const std::string& name, const std::string& metavar, const std::string& help,
              double* out, double min, double max);
  void option(const std::string& name, const std::string& metavar, const std::string& help,
              uint64_t* out);
  void example(const std::string& line);  // shown under "Examples:" in --help
  void epilog(const std::string& text);   // shown at the end of --help

  // Parses argv. Prints help and exits 0 on --help; prints the error and a hint and exits 2 on a
  // bad argument. After parsing, given(name) tells whether the user set an option.
  void parse(int argc, char** argv);
  bool given(const std::string& name) const;
  std::string help() const;

  // Reports a usage error in the same style and exits 2 (for checks between options).
  [[noreturn]] void fail(const std::string& message) const;

 private:
  struct Opt {
    std::string name, metavar, help, default_text;
    bool is_flag = false, required = false, seen = false;
    std::function<std::string(const std::string&)> set;  // returns an error or ""
  };
  Opt& add(const std::string& name);
  std::string program_, summary_, epilog_;
  std::vector<std::string> examples_;
  std::vector<Opt> opts_;
};

// Runs `body`, turning an exception into "<program>: error: <message>" and exit code 1.
int run_main(const char* program, const std::function<int()>& body);

// A one-line progress bar on stderr: label, bar, percent, count, rate, ETA and a suffix. Redraws
// at most 10 times a second on a terminal; elsewhere (logs, CI) prints a line every 10%.
class ProgressBar {
 public:
  ProgressBar(std::string label, int64_t total, std::string unit = "it");
  void update(int64_t done, const std::string& suffix = "");
  void finish(const std::string& suffix = "");  // final line with the total time

 private:
  void draw(int64_t done, const std::string& suffix, bool final);
  std::string label_, unit_;
  int64_t total_;
  bool tty_;
  int last_decile_ = -1;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

std::string format_duration(double seconds);  // "1:02:03", "2:05", "4.2s"

// The current time through strftime: `utc` or local ("%Y-%m-%d" -> "2026-11-23").
std::string time_now(const char* format, bool utc = true);

// "a,b,,c" -> {"a", "b", "", "c"}; "" -> {}.
std::vector<std::string> split(const std::string& s, char sep);

}  // namespace ebm
