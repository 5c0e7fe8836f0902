// ebm-import: a TorchScript energy model (or classifier) saved from Python to the runtime's model
// file, checked against TorchScript's own outputs before it is written.
#include <iostream>
#include <string>
#include <vector>

#include "ebm/cli.h"
#include "ebm/error.h"
#include "import.h"

namespace {

// "1x48x192" -> {1, 48, 192}
ebm::Shape parse_shape(const std::string& spec, const ebm::ArgParser& args) {
  const std::vector<std::string> p = ebm::split(spec, 'x');
  ebm::Shape s;
  try {
    if (p.size() != 3) throw std::invalid_argument("");
    s = {std::stoi(p[0]), std::stoi(p[1]), std::stoi(p[2])};
  } catch (const std::exception&) {
    args.fail("--input: expected CxHxW such as 1x48x192, got '" + spec + "'");
  }
  if (s.c < 1 || s.h < 1 || s.w < 1 || s.h > 4096 || s.w > 4096 || s.c > 64)
    args.fail("--input: sizes out of range in '" + spec + "'");
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> av(argv, argv + argc);
  static char flag[] = "--model";
  if (argc > 1 && argv[1][0] != '-') av.insert(av.begin() + 1, flag);
  return ebm::run_main("ebm-import", [&]() -> int {
    std::string model, out, input, kind = "energy", labels, name, description, license;
    bool f32 = false, score = false;
    ebm::ArgParser args("ebm-import",
                        "Converts a TorchScript model saved from Python (torch.jit.script or "
                        "torch.jit.trace of an nn.Sequential of Conv2d, ZeroPad2d, BatchNorm2d, "
                        "SiLU, LeakyReLU, ReLU, AvgPool2d, Flatten, Linear) to the runtime's model "
                        "file, after checking that both give the same outputs on random images. "
                        "Usage: ebm-import MODEL.pt --input CxHxW --out FILE.safetensors");
    args.option("model", "FILE", "the TorchScript file (torch.jit.save)", &model, true);
    args.option("out", "FILE", "the model file to write", &out, true);
    args.option("input", "CxHxW", "input shape the model expects, e.g. 1x48x192", &input, true);
    args.option("kind", "NAME", "energy (one output, low = real) or classifier", &kind);
    args.option("labels", "A,B,...", "classifier: the class names, one per output", &labels);
    args.flag("score",
              "the model outputs a score (high = real, as the book's Keras code): store "
              "its negation as the energy",
              &score);
    args.flag("f32", "store F32 weights (default F16)", &f32);
    args.option("name", "NAME", "model name for the card", &name);
    args.option("description", "TEXT", "description for the card", &description);
    args.option("license", "NAME", "license for the card", &license);
    args.example("ebm-import energy.pt --input 1x48x192 --out energy.safetensors");
    args.example(
        "ebm-import cls.pt --input 1x48x192 --kind classifier --labels arch,beam --out "
        "c.safetensors");
    args.parse(int(av.size()), av.data());

    ebm::train::ImportOptions opt;
    opt.input = parse_shape(input, args);
    if (kind == "classifier") {
      opt.kind = ebm::ModelKind::kClassifier;
      opt.labels = ebm::split(labels, ',');
      if (opt.labels.empty()) args.fail("--kind classifier needs --labels A,B,...");
    } else if (kind != "energy") {
      args.fail("--kind: expected energy or classifier, got '" + kind + "'");
    }
    opt.score = score;
    ebm::train::ImportResult r = ebm::train::import_torchscript(model, opt);
    r.model.card = {{"name", name.empty() ? model : name},
                    {"description",
                     description.empty() ? "Imported from TorchScript by ebm-import" : description},
                    {"license", license.empty() ? "unspecified" : license},
                    {"source", model}};
    ebm::save_model(out, ebm::fold_normalization(r.model),
                    f32 ? ebm::DType::kF32 : ebm::DType::kF16);
    for (const std::string& l : r.layers) std::cerr << "  " << l << "\n";
    std::cerr << "ebm-import: wrote " << out << " (outputs agree to a max relative error of "
              << r.max_error << ")\n";
    return 0;
  });
}
