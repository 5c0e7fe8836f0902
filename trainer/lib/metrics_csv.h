// Metrics of a run as CSV: a header row, then one row of numbers per step (or per epoch),
// appended and flushed one row at a time, so a run killed at any moment leaves every finished row
// readable. Resuming or rolling back truncates the rows past the restored step.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

namespace ebm::train {

struct MetricsTable {
  std::vector<std::string> columns;
  std::vector<std::vector<double>> rows;

  int index(const std::string& column) const;                 // -1 if absent
  std::vector<double> column(const std::string& name) const;  // empty if absent
};

class MetricsCsv {
 public:
  // Opens `path` for appending; writes the header if the file is new or empty. An existing
  // file with a different header is an error naming both.
  MetricsCsv(std::string path, std::vector<std::string> columns);
  ~MetricsCsv();
  MetricsCsv(const MetricsCsv&) = delete;
  MetricsCsv& operator=(const MetricsCsv&) = delete;

  const std::string& path() const { return path_; }
  void append(const std::vector<double>& values);  // one value per column; flushed

 private:
  std::string path_;
  std::vector<std::string> columns_;
  std::FILE* file_ = nullptr;
};

// Reads a metrics CSV; a torn last line (a run killed mid-write) is ignored. A missing file reads
// as an empty table.
MetricsTable read_metrics(const std::string& path);

// Keeps the rows whose `column` value is at most `max_value` (atomically rewritten).
void truncate_metrics(const std::string& path, const std::string& column, double max_value);

// "%.6g" without trailing noise; non-finite values as nan/inf.
std::string format_metric(double v);

}  // namespace ebm::train
