// ebm-export: a training checkpoint to the runtime's model file (safetensors, F16 by default),
// batch norm folded into the convolutions, with a model card.
#include <sys/stat.h>

#include <iostream>
#include <string>
#include <vector>

#include "checkpoint.h"
#include "ebm/cli.h"
#include "ebm/error.h"
#include "ebm/network.h"
#include "export.h"

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
    std::string checkpoint, out;
    bool f32 = false;
    ebm::train::ExportOptions opt;
    ebm::ArgParser args("ebm-export",
                        "Writes the model of a training checkpoint as a model file the runtime "
                        "and the page load: safetensors, F16 unless --f32, batch norm folded into "
                        "the convolutions, with a model card in ebm.card. Usage: ebm-export "
                        "CHECKPOINT --out FILE.safetensors [options]");
    args.option("checkpoint", "FILE|DIR", "checkpoint.pt of a run (or the run folder)", &checkpoint,
                true);
    args.option("out", "FILE", "the model file to write", &out, true);
    args.flag("f32", "store F32 weights (default F16: half the size)", &f32);
    args.option("name", "NAME", "model name for the card (default: the run folder's name)",
                &opt.name);
    args.option("description", "TEXT", "description for the card", &opt.description);
    args.option("license", "NAME", "license for the card, e.g. CC-BY-4.0", &opt.license);
    args.example(
        "ebm-export runs/paper/checkpoint.pt --out models/bridges.safetensors --name bridges");
    args.epilog(
        "The runtime's outputs are compared with LibTorch's on random images before the "
        "file is written (max relative error 1e-4); a checkpoint whose architecture the "
        "runtime cannot run is refused with the reason. Publishing to a server (--publish) "
        "is not available yet: it waits for the server's publish client.");
    args.parse(int(av.size()), av.data());
    if (is_dir(checkpoint)) checkpoint += "/checkpoint.pt";
    opt.source = checkpoint;

    const ebm::train::CheckpointInfo info = ebm::train::read_checkpoint(checkpoint);
    const ebm::Model m = ebm::train::export_checkpoint(info, opt);
    ebm::save_model(out, m, f32 ? ebm::DType::kF32 : ebm::DType::kF16);
    // Read back exactly as the page will, so a file that cannot load is never left unnoticed.
    const ebm::Network check = ebm::Network::from_file(out);
    std::cerr << "ebm-export: wrote " << out << " (" << ebm::model_kind_name(m.kind) << ", input "
              << m.arch.input.str() << ", " << m.arch.parameter_count() << " parameters after "
              << "folding, " << (f32 ? "F32" : "F16") << "; step " << info.counters.step
              << ", epoch " << info.counters.epoch << ")\n";
    (void)check;
    return 0;
  });
}
