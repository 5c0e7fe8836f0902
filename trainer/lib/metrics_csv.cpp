#include "metrics_csv.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <sstream>

#include "ebm/error.h"
#include "ebm/fileio.h"

namespace ebm::train {

namespace {

std::vector<std::string> split_csv(const std::string& line) {
  std::vector<std::string> out;
  std::stringstream in(line);
  for (std::string cell; std::getline(in, cell, ',');) out.push_back(cell);
  if (!line.empty() && line.back() == ',') out.emplace_back();
  return out;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + v[i];
  return s;
}

std::string read_text(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return {};
  std::fclose(f);
  const std::vector<uint8_t> bytes = read_file(path);
  return std::string(bytes.begin(), bytes.end());
}

}  // namespace

int MetricsTable::index(const std::string& name) const {
  for (size_t i = 0; i < columns.size(); ++i)
    if (columns[i] == name) return int(i);
  return -1;
}

std::vector<double> MetricsTable::column(const std::string& name) const {
  const int k = index(name);
  std::vector<double> out;
  if (k < 0) return out;
  out.reserve(rows.size());
  for (const auto& r : rows) out.push_back(r[size_t(k)]);
  return out;
}

std::string format_metric(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.7g", v);
  return buf;
}

MetricsCsv::MetricsCsv(std::string path, std::vector<std::string> columns)
    : path_(std::move(path)), columns_(std::move(columns)) {
  const std::string text = read_text(path_);
  const std::string header = join(columns_);
  if (!text.empty()) {
    const std::string first = text.substr(0, text.find('\n'));
    if (first != header)
      throw Error("metrics file " + path_ + " has columns '" + first + "', expected '" + header +
                  "'");
  }
  file_ = std::fopen(path_.c_str(), "ab");
  if (!file_) throw Error("cannot open " + path_ + " for appending: " + std::strerror(errno));
  if (text.empty()) {
    std::fprintf(file_, "%s\n", header.c_str());
    std::fflush(file_);
  } else if (text.back() != '\n') {
    std::fputc('\n', file_);  // end a torn line so the next row starts cleanly
  }
}

MetricsCsv::~MetricsCsv() {
  if (file_) std::fclose(file_);
}

void MetricsCsv::append(const std::vector<double>& values) {
  if (values.size() != columns_.size())
    throw Error("metrics row has " + std::to_string(values.size()) + " values for " +
                std::to_string(columns_.size()) + " columns");
  std::string line;
  for (size_t i = 0; i < values.size(); ++i) line += (i ? "," : "") + format_metric(values[i]);
  line += '\n';
  if (std::fwrite(line.data(), 1, line.size(), file_) != line.size() || std::fflush(file_) != 0)
    throw Error("cannot write to " + path_ + ": " + std::strerror(errno));
}

MetricsTable read_metrics(const std::string& path) {
  MetricsTable t;
  const std::string text = read_text(path);
  std::stringstream in(text);
  std::string line;
  if (!std::getline(in, line)) return t;
  t.columns = split_csv(line);
  size_t consumed = line.size() + 1;
  while (std::getline(in, line)) {
    consumed += line.size() + 1;
    if (consumed > text.size() && text.back() != '\n') break;  // torn last line
    const std::vector<std::string> cells = split_csv(line);
    if (cells.size() != t.columns.size()) continue;
    std::vector<double> row;
    for (const std::string& c : cells) row.push_back(std::strtod(c.c_str(), nullptr));
    t.rows.push_back(std::move(row));
  }
  return t;
}

void truncate_metrics(const std::string& path, const std::string& column, double max_value) {
  const MetricsTable t = read_metrics(path);
  if (t.columns.empty()) return;
  const int k = t.index(column);
  if (k < 0) throw Error("metrics file " + path + " has no column '" + column + "'");
  std::string out = join(t.columns) + "\n";
  for (const auto& r : t.rows) {
    if (r[size_t(k)] > max_value) continue;
    for (size_t i = 0; i < r.size(); ++i) out += (i ? "," : "") + format_metric(r[i]);
    out += '\n';
  }
  write_file_atomic(path, out);
}

}  // namespace ebm::train
