// libFuzzer target: one raw HTTP request into ebm-serve (the gate's header checks, httplib's
// parser, routing, the static-path resolver, the model and publish handlers) without a socket.
// Whatever the bytes: a response that starts with a status line, and for every error a JSON
// body that parses; never a file from outside the two folders.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "ebm/model.h"
#include "server.h"

namespace {

namespace fs = std::filesystem;

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
}

// A site, a models folder with one small valid model and one broken file, and a secret beside
// them that must never be served.
ebm::HttpServer& server() {
  static std::unique_ptr<ebm::HttpServer> srv = [] {
    const fs::path root =
        fs::temp_directory_path() / ("ebm_fuzz_server_" + std::to_string(::getpid()));
    fs::remove_all(root);
    static const fs::path cleanup = root;
    std::atexit([] {
      std::error_code ec;
      fs::remove_all(cleanup, ec);
    });
    write(root / "web/index.html", "<!doctype html><title>ebm</title>");
    write(root / "web/app.js", "export const x = 1;\n");
    write(root / "secret.txt", "TOP-SECRET-41");
    const nlohmann::json layers = nlohmann::json::parse(
        R"([{"type":"conv2d","out_channels":2,"kernel":3,"stride":2,"padding":"same"},
            {"type":"swish"},{"type":"flatten"},{"type":"dense","out_features":1}])");
    const std::vector<uint8_t> model =
        ebm::serialize_model(ebm::random_model(ebm::resolve_architecture({1, 8, 8}, layers), 1));
    write(root / "models/tiny.safetensors", std::string(model.begin(), model.end()));
    write(root / "models/broken.safetensors", "not a model");
    ebm::ServerOptions opt;
    opt.web_dir = (root / "web").string();
    opt.models_dir = (root / "models").string();
    opt.publish_token = "fuzz-token";
    opt.max_upload_bytes = 1 << 16;
    opt.log = nullptr;
    return std::make_unique<ebm::HttpServer>(opt);
  }();
  return *srv;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string request(reinterpret_cast<const char*>(data), size);
  const std::string response = server().answer(request);
  if (response.empty()) return 0;  // httplib closes without answering (no request line)
  if (response.compare(0, 9, "HTTP/1.1 ") != 0) std::abort();
  // Error messages quote the path, so the secret may come back only if the request held it.
  if (response.find("TOP-SECRET-41") != std::string::npos &&
      request.find("TOP-SECRET-41") == std::string::npos)
    std::abort();
  const int status = std::atoi(response.c_str() + 9);
  const size_t split = response.find("\r\n\r\n");
  if (status >= 400 && split != std::string::npos && split + 4 < response.size() &&
      response.find("multipart/byteranges") == std::string::npos) {
    // Error bodies are JSON, whatever bytes the path held (HEAD answers have no body).
    if (!nlohmann::json::accept(response.substr(split + 4))) std::abort();
  }
  return 0;
}
