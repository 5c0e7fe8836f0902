// ebm-export: a training checkpoint to the runtime's model file (safetensors, F16 by default),
// batch norm folded into the convolutions, with a model card; optionally published to a running
// ebm-serve or a models folder. Given a model file instead, it writes that model again with new
// sampler settings, card fields or evaluation figures (reexport_model).
#include <sys/stat.h>

#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "checkpoint.h"
#include "ebm/cli.h"
#include "ebm/fileio.h"
#include "ebm/json_util.h"
#include "ebm/error.h"
#include "ebm/network.h"
#include "export.h"
#ifdef EBM_HAVE_PUBLISH
#include "ebm/publish.h"
#endif

namespace {

bool is_dir(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

}  // namespace

int main(int argc, char** argv) {
  // "ebm-export CHECKPOINT ..." is "ebm-export --checkpoint CHECKPOINT ...".
  std::vector<char*> av(argv, argv + argc);
  static char flag[] = "--checkpoint";
  if (argc > 1 && argv[1][0] != '-') av.insert(av.begin() + 1, flag);
  return ebm::run_main("ebm-export", [&]() -> int {
    std::string checkpoint, out, publish, token, publish_name;
    bool f32 = false;
    ebm::train::ExportOptions opt;
    ebm::ArgParser args("ebm-export",
                        "Writes the model of a training checkpoint as a model file the runtime "
                        "and the page load: safetensors, F16 unless --f32, batch norm folded into "
                        "the convolutions, with a model card in ebm.card; or a model file again, "
                        "with new sampler settings, card fields or evaluation figures. Usage: "
                        "ebm-export CHECKPOINT|MODEL.safetensors --out FILE.safetensors [options]");
    args.option("checkpoint", "FILE|DIR",
                "checkpoint.pt of a run (or the run folder), or a model file (.safetensors) to "
                "write again with the options below (its weights and the rest of its card kept)",
                &checkpoint, true);
    args.option("out", "FILE", "the model file to write", &out, true);
    args.flag("f32", "store F32 weights (default F16: half the size)", &f32);
    args.option("name", "NAME", "model name for the card (default: the run folder's name)",
                &opt.name);
    args.option("description", "TEXT", "description for the card", &opt.description);
    args.option("license", "NAME", "license for the card, e.g. CC-BY-4.0", &opt.license);
    std::string sampler_json, card_json, evaluation, autoguide;
    int grid = -1;
    args.option("grid", "K",
                "of a multi-grid run (ebm-train --objective multigrid), export the network of "
                "coarser grid K (0 = coarsest; -1, the full-resolution one); ebm-eval --grids "
                "takes the coarser files to sample coarse to fine",
                &grid, 0, 64);
    args.option("sampler", "JSON",
                "default sampler settings to ship instead of the training run's, e.g. "
                "'{\"steps\":200}' (keys as in ebm.sampler)",
                &sampler_json);
    args.option("card", "JSON|@FILE",
                "extra model-card fields (a JSON object, or @file holding one), merged over the "
                "generated card",
                &card_json);
    args.option("evaluation", "REPORT[,REPORT]",
                "ebm-eval reports (report.json) of this model to summarise in the card's "
                "evaluation section, as the page shows it: the first report's figures, and the "
                "main ones of each further report (another seed)",
                &evaluation);
    args.option("autoguide", "MODEL|none",
                "carry this weaker denoiser model (a smaller or less trained one of the same "
                "images) in the file for autoguidance: the samplers then follow w E + (1 - w) "
                "E_weak, w the sampler's \"autoguide\" (set it with --sampler); the file becomes "
                "format 3. \"none\" removes one the model carries",
                &autoguide);
#ifdef EBM_HAVE_PUBLISH
    args.option("publish", "URL|DIR",
                "then publish the file to a running ebm-serve (http://host:port) or into a "
                "models folder, as ebm-publish does",
                &publish);
    args.option("token", "T", "publish token of the server (default: $EBM_PUBLISH_TOKEN)", &token);
    args.option("publish-name", "N", "name to publish under (default: the output file's name)",
                &publish_name);
    args.example(
        "ebm-export runs/paper --out bridges.safetensors --publish http://127.0.0.1:8080 --token "
        "T");
    const std::string publish_note;
#else
    const std::string publish_note =
        " Publishing (--publish) is built with the server (EBM_BUILD_SERVER); use ebm-publish.";
#endif
    args.example(
        "ebm-export runs/paper/checkpoint.pt --out models/bridges.safetensors --name bridges");
    args.example(
        "ebm-export models/bridges.safetensors --out models/bridges.safetensors --sampler "
        "'{\"steps\":24,\"sigma_max\":160}'");
    args.example("ebm-export runs/mg --out mg-grid0.safetensors --grid 0");
    args.example(
        "ebm-export models/bridges.safetensors --out models/bridges.safetensors --autoguide "
        "weak.safetensors --sampler '{\"autoguide\":2.5,\"autoguide_sigma_max\":20}'");
    args.epilog(
        "The runtime's outputs are compared with LibTorch's on random images before the file is "
        "written (max relative error 1e-4); a checkpoint whose architecture the runtime cannot run "
        "is refused with the reason." +
        publish_note);
    args.parse(int(av.size()), av.data());
    if (is_dir(checkpoint)) checkpoint += "/checkpoint.pt";
    opt.source = checkpoint;
    if (!sampler_json.empty()) opt.sampler = ebm::parse_json_text(sampler_json, "--sampler");
    if (autoguide == "none")
      opt.drop_autoguide = true;
    else if (!autoguide.empty())
      opt.autoguide = std::make_shared<const ebm::Model>(ebm::load_model(autoguide));
    if (!card_json.empty()) {
      if (card_json[0] == '@') {
        const std::vector<uint8_t> bytes = ebm::read_file(card_json.substr(1), 1 << 20);
        card_json.assign(bytes.begin(), bytes.end());
      }
      opt.card = ebm::parse_json_text(card_json, "--card");
    }
    if (!evaluation.empty()) {
      std::vector<nlohmann::json> reports;
      for (const std::string& path : ebm::split(evaluation, ',')) {
        const std::vector<uint8_t> bytes = ebm::read_file(path, 1 << 24);
        try {
          reports.push_back(ebm::parse_json_text(std::string(bytes.begin(), bytes.end()), path));
        } catch (const ebm::Error& e) {
          throw ebm::Error("--evaluation " + path + ": " + e.what());
        }
      }
      try {
        opt.evaluation = ebm::train::evaluation_card(reports);
      } catch (const ebm::Error& e) {
        throw ebm::Error("--evaluation " + evaluation + ": " + e.what());
      }
    }

    const bool model_file = checkpoint.size() > 12 &&
                            checkpoint.compare(checkpoint.size() - 12, 12, ".safetensors") == 0;
    if (model_file && grid >= 0)
      args.fail("--grid picks a network from a multi-grid run's checkpoint; " + checkpoint +
                " is a model file (export the run folder or its checkpoint.pt)");
    ebm::Model m;
    std::string what;
    if (model_file) {
      // F16 weights widen to F32 exactly and narrow back to the same bits; a file of F32 weights
      // stays F32.
      m = ebm::train::reexport_model(ebm::load_model(checkpoint), opt);
      for (const ebm::Tensor& t : m.tensors) f32 = f32 || t.stored == ebm::DType::kF32;
      what = "written again from " + checkpoint;
    } else {
      const ebm::train::CheckpointInfo info = ebm::train::read_checkpoint(checkpoint, grid);
      m = ebm::train::export_checkpoint(info, opt);
      what = "step " + std::to_string(info.counters.step) + ", epoch " +
             std::to_string(info.counters.epoch);
    }
    ebm::save_model(out, m, f32 ? ebm::DType::kF32 : ebm::DType::kF16);
    // Read back exactly as the page will, so a file that cannot load never goes unnoticed.
    (void)ebm::Network::from_file(out);
    std::cerr << "ebm-export: wrote " << out << " (" << ebm::model_kind_name(m.kind) << ", input "
              << m.image_shape().str() << ", " << m.arch.parameter_count()
              << " parameters after folding, " << (f32 ? "F32" : "F16") << "; " << what << ")\n";

#ifdef EBM_HAVE_PUBLISH
    if (!publish.empty()) {
      if (token.empty())
        if (const char* env = std::getenv("EBM_PUBLISH_TOKEN")) token = env;
      const ebm::PublishResult r = ebm::publish_model_file(out, publish, token, publish_name);
      if (!r.ok()) {
        std::cerr << "ebm-export: " << out << " is written, but " << publish << " refused it (HTTP "
                  << r.status << "): " << r.text << "\n";
        return 1;
      }
      std::cerr << "ebm-export: published to " << publish << ": " << r.text
                << (r.text.empty() || r.text.back() != '\n' ? "\n" : "");
    }
#endif
    return 0;
  });
}
