// ebm-publish: validates a model file with the runtime, then uploads it to a running ebm-serve
// or writes it into a models folder, and prints the answer.
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <vector>

#include "ebm/cli.h"
#include "ebm/error.h"
#include "ebm/publish.h"

int main(int argc, char** argv) {
  std::string target, token, name;
  ebm::ArgParser args("ebm-publish",
                      "Publishes a model file (.safetensors): checks it with the runtime, then "
                      "uploads it to an ebm-serve (PUT /api/models/<name>) or copies it into a "
                      "models folder, updating index.json. Prints the server's answer.\n"
                      "Usage: ebm-publish FILE --to TARGET [--token T] [--name N]");
  args.option("to", "URL|DIR", "http://host:port of a running ebm-serve, or a models folder",
              &target, true);
  args.option("token", "T", "publish token of the server (default: $EBM_PUBLISH_TOKEN)", &token);
  args.option("name", "N",
              "name to publish under (default: the file's name without "
              ".safetensors); [A-Za-z0-9._-], at most 64",
              &name);
  args.example("ebm-publish runs/bridges.safetensors --to http://127.0.0.1:8080 --token secret");
  args.example("ebm-publish runs/bridges.safetensors --to models/ --name bridges-v2");

  // One positional argument, the file; the rest go to ArgParser. Every option here takes a value,
  // so the word after "--opt" (without "=") is that option's value, not the file.
  std::string file;
  std::vector<char*> rest{argv[0]};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--", 0) == 0 || a == "-h") {
      rest.push_back(argv[i]);
      if (a.find('=') == std::string::npos && a != "--help" && a != "-h" && i + 1 < argc)
        rest.push_back(argv[++i]);
    } else if (file.empty()) {
      file = a;
    } else {
      args.fail("unexpected second file '" + a + "' (publish one model at a time)");
    }
  }
  args.parse(int(rest.size()), rest.data());
  if (file.empty()) args.fail("no model file given (ebm-publish FILE --to TARGET)");
  if (token.empty())
    if (const char* env = std::getenv("EBM_PUBLISH_TOKEN")) token = env;

  return ebm::run_main("ebm-publish", [&]() {
    const ebm::PublishResult r = ebm::publish_model_file(file, target, token, name);
    std::cout << r.text << (r.text.empty() || r.text.back() != '\n' ? "\n" : "");
    if (!r.ok()) {
      const std::string why = r.body.contains("error") && r.body["error"].is_string()
                                  ? r.body["error"].get<std::string>()
                                  : r.text;
      std::cerr << "ebm-publish: the server refused the model (HTTP " << r.status << "): " << why
                << "\n";
      return 1;
    }
    std::cerr << "ebm-publish: " << (r.status ? "published to " : "wrote into ") << target << "\n";
    return 0;
  });
}
