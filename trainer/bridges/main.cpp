// ebm-bridges: writes the bridge elevation dataset (SPEC section 2) as PNG files, a labels.csv
// with every drawing parameter, and a preview grid with one row per subtype.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <system_error>
#include <thread>

#include "bridges/bridges.h"
#include "ebm/cli.h"
#include "ebm/error.h"
#include "ebm/fileio.h"
#include "ebm/image_io.h"

namespace fs = std::filesystem;
namespace br = ebm::bridges;

namespace {

constexpr int kPreviewCols = 8;

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string part; std::getline(in, part, sep);) out.push_back(part);
  return out;
}

// "192x48" -> {192, 48}.
std::pair<int, int> parse_size(const std::string& spec, const ebm::ArgParser& args) {
  const size_t x = spec.find('x');
  auto number = [&](const std::string& s) {
    if (s.empty() || s.size() > 5 || s.find_first_not_of("0123456789") != std::string::npos)
      args.fail("--size: expected WxH such as 192x48, got '" + spec + "'");
    const int v = std::stoi(s);
    if (v < 16 || v > 4096)
      args.fail("--size: width and height must be 16..4096, got '" + spec + "'");
    return v;
  };
  if (x == std::string::npos) args.fail("--size: expected WxH such as 192x48, got '" + spec + "'");
  return {number(spec.substr(0, x)), number(spec.substr(x + 1))};
}

std::vector<br::Subtype> parse_subtypes(const std::string& spec, const ebm::ArgParser& args) {
  std::vector<br::Subtype> out;
  if (spec.empty()) {
    for (int i = 0; i < br::kSubtypeCount; ++i) out.push_back(br::subtype_at(i));
    return out;
  }
  std::vector<bool> seen(br::kSubtypeCount, false);
  for (const std::string& name : split(spec, ',')) {
    br::Subtype s;
    try {
      s = br::parse_subtype(name);
    } catch (const ebm::Error& e) {
      args.fail(std::string("--subtypes: ") + e.what());
    }
    if (seen[size_t(br::subtype_index(s))]) args.fail("--subtypes: '" + name + "' is listed twice");
    seen[size_t(br::subtype_index(s))] = true;
  }
  // Dataset order, whatever order they were listed in.
  for (int i = 0; i < br::kSubtypeCount; ++i)
    if (seen[size_t(i)]) out.push_back(br::subtype_at(i));
  return out;
}

std::string image_name(uint64_t index) {
  char name[32];
  std::snprintf(name, sizeof name, "%05llu.png", static_cast<unsigned long long>(index));
  return name;
}

std::string csv_number(double v) {
  if (std::isnan(v)) return "";
  char text[32];
  std::snprintf(text, sizeof text, "%.6g", v);
  return text;
}

void make_dirs(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw ebm::Error("cannot create folder '" + dir.string() + "': " + ec.message());
}

// Numbered images in DIR/<subtype>/ that this run will not write (a previous, larger run).
std::vector<fs::path> stale_images(const fs::path& out, int per_subtype,
                                   const std::vector<br::Subtype>& selected) {
  std::vector<fs::path> stale;
  for (int i = 0; i < br::kSubtypeCount; ++i) {
    const br::Subtype s = br::subtype_at(i);
    const bool chosen = std::find(selected.begin(), selected.end(), s) != selected.end();
    std::error_code ec;
    for (fs::directory_iterator it(out / br::subtype_name(s), ec), end; !ec && it != end;
         it.increment(ec)) {
      const std::string name = it->path().filename().string();
      if (name.size() < 9 || name.substr(name.size() - 4) != ".png") continue;
      const std::string stem = name.substr(0, name.size() - 4);
      if (stem.find_first_not_of("0123456789") != std::string::npos) continue;
      if (!chosen || std::stoull(stem) >= uint64_t(per_subtype)) stale.push_back(it->path());
    }
  }
  std::sort(stale.begin(), stale.end());
  return stale;
}

}  // namespace

int main(int argc, char** argv) {
  std::string out, size = "192x48", subtypes_spec;
  int per_subtype = 1200, threads = int(std::max(1u, std::thread::hardware_concurrency()));
  uint64_t seed = 1;
  bool overwrite = false, quiet = false;

  // Subtype names, four to a line.
  std::string names;
  for (int i = 0; i < br::kSubtypeCount; ++i)
    names += std::string(i == 0  ? ""
                         : i % 4 ? ", "
                                 : ",\n  ") +
             br::subtype_name(br::subtype_at(i));
  ebm::ArgParser args(
      "ebm-bridges",
      "Draws the bridge dataset (SPEC section 2): side-view line drawings of symmetric three-span "
      "bridges,\neight subtypes, two per family (spans 80+140+80 m for beams, 67+166+67 m for "
      "the others).\nGrayscale PNGs with dark structure on a light background: white (255) is +1 "
      "and black (0)\nis -1 in model units. Every image has its own proportions, drawn from "
      "(seed, subtype, index),\nso the same seed gives byte-identical files, whatever the subset "
      "or thread count.\n\nWrites DIR/<subtype>/NNNNN.png, DIR/labels.csv (file, subtype, family "
      "and every drawing\nparameter; empty where one does not apply) and DIR/preview.png (one row "
      "per subtype).\n\nSubtypes:\n  " +
          names);
  args.option("out", "DIR", "output folder (created if needed)", &out, true);
  args.option("per-subtype", "N", "images per subtype", &per_subtype, 1, 99999);
  args.option("size", "WxH", "image width and height in pixels (16..4096 each)", &size);
  args.option("seed", "S", "dataset seed", &seed);
  args.option("subtypes", "A,B,...", "only these subtypes (default: all eight)", &subtypes_spec);
  args.option("threads", "T", "drawing threads (output does not depend on it)", &threads, 1, 256);
  args.flag("overwrite",
            "replace a dataset already in DIR (deletes its images this run does not write)",
            &overwrite);
  args.flag("quiet", "no progress bar", &quiet);
  args.example("ebm-bridges --out data/bridges");
  args.example("ebm-bridges --out /tmp/big --size 512x128 --per-subtype 100");
  args.example("ebm-bridges --out /tmp/cables --subtypes cable_harp,cable_fan --seed 7");
  args.parse(argc, argv);
  const auto [width, height] = parse_size(size, args);
  const std::vector<br::Subtype> selected = parse_subtypes(subtypes_spec, args);

  return ebm::run_main("ebm-bridges", [&]() {
    const fs::path root(out);
    if (fs::exists(root) && !fs::is_directory(root))
      throw ebm::Error("--out '" + out + "' exists and is not a folder");
    const std::vector<fs::path> stale = stale_images(root, per_subtype, selected);
    if (!stale.empty() && !overwrite)
      throw ebm::Error("'" + out + "' already holds " + std::to_string(stale.size()) +
                       " numbered images this run would not replace (e.g. '" +
                       stale.front().string() +
                       "'); choose an empty folder or pass --overwrite to delete them");
    for (const br::Subtype s : selected) make_dirs(root / br::subtype_name(s));

    const int n_sub = int(selected.size());
    const int64_t total = int64_t(n_sub) * per_subtype;
    const int preview_cols = std::min(kPreviewCols, per_subtype);
    std::vector<std::string> rows(static_cast<size_t>(total));
    std::vector<float> preview(size_t(n_sub) * preview_cols * size_t(width) * height);

    // Image j of the whole run is subtype j / per_subtype, index j % per_subtype; thread t
    // draws j = t, t + T, ... and only thread 0 redraws the progress bar.
    ebm::ProgressBar bar("drawing", total, "img");
    std::vector<std::string> errors(static_cast<size_t>(threads));
    std::atomic<bool> failed{false};  // the first error stops every thread
    std::atomic<int64_t> done{0};
    auto work = [&](int t) {
      try {
        for (int64_t j = t; j < total && !failed; j += threads) {
          const int si = int(j / per_subtype);
          const uint64_t index = uint64_t(j % per_subtype);
          const br::Subtype s = selected[size_t(si)];
          const br::Drawing d = br::draw_bridge(s, seed, index, width, height);
          const std::string rel = std::string(br::subtype_name(s)) + "/" + image_name(index);
          ebm::write_png((root / rel).string(), d.image);
          std::string row = rel + "," + br::subtype_name(s) + "," + br::family_name(s);
          for (double v : d.params) row += "," + csv_number(v);
          rows[size_t(j)] = row + "\n";
          if (int(index) < preview_cols) {
            const std::vector<float> unit = ebm::image_to_unit(d.image);
            std::copy(unit.begin(), unit.end(),
                      preview.begin() +
                          (int64_t(si) * preview_cols + int64_t(index)) * int64_t(unit.size()));
          }
          const int64_t finished = ++done;
          if (t == 0 && !quiet) bar.update(finished);
        }
      } catch (const std::exception& e) {
        errors[size_t(t)] = e.what();
        failed = true;
      }
    };
    std::vector<std::thread> pool;
    for (int t = 1; t < threads; ++t) pool.emplace_back(work, t);
    work(0);
    for (std::thread& th : pool) th.join();
    for (const std::string& e : errors)
      if (!e.empty()) throw ebm::Error(e);
    if (!quiet) bar.finish();

    std::string csv = "file,subtype,family";
    for (int p = 0; p < br::kParamCount; ++p) csv += std::string(",") + br::param_name(p);
    csv += "\n";
    for (const std::string& row : rows) csv += row;
    ebm::write_file_atomic((root / "labels.csv").string(), csv);
    ebm::write_png(
        (root / "preview.png").string(),
        ebm::make_grid(preview.data(), n_sub * preview_cols, height, width, preview_cols));
    for (const fs::path& p : stale) {
      std::error_code ec;
      if (!fs::remove(p, ec) && ec)
        throw ebm::Error("cannot delete stale image '" + p.string() + "': " + ec.message());
    }
    std::cerr << "wrote " << total << " images (" << n_sub << " subtypes x " << per_subtype << ", "
              << width << "x" << height << ", seed " << seed << ") to " << out
              << (stale.empty() ? ""
                                : "; deleted " + std::to_string(stale.size()) + " stale images")
              << "\n";
    return 0;
  });
}
